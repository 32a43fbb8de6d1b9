"""Embedded configs (default.yaml, example.yaml), installed as dccd.defaults."""
