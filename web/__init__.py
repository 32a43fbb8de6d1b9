"""Litestar app, SSE and UI, installed as ``dccd.web``."""
