"""Environment overrides: ``DCCD_DATA`` (storage.path), ``DCCD_TOKEN`` (server.token),
``DCCD_<EXCHANGE>_REST_URL``, ``DCCD_<EXCHANGE>_WS_URL`` and ``DCCD_<EXCHANGE>_ARCHIVE_URL``, overlaid on the raw YAML mapping before the schema
check (so a bad value is reported like one from the file, naming the variable)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dccd.config.schema import key_text

_ENV_URL = re.compile(r"DCCD_([A-Z0-9_]+)_(REST|WS|ARCHIVE)_URL")


def env_sources(env: Mapping[str, str]) -> dict[str, str]:
    """Key path -> the env var that set it (errors then name the variable, not just the key)."""
    out: dict[str, str] = {}
    if env.get("DCCD_DATA"):
        out["storage.path"] = "DCCD_DATA"
    if env.get("DCCD_TOKEN"):
        out["server.token"] = "DCCD_TOKEN"
    for key, value in env.items():
        if (m := _ENV_URL.fullmatch(key)) and value:
            name = m.group(1).lower()
            out[f"exchanges.{key_text(name)}.{m.group(2).lower()}_url"] = key
    return out


def _overlay(section: Any, key: str, value: Any) -> Any:
    """``section`` with ``key`` set; a non-mapping is left as is so the schema check names it."""
    if section is None:
        return {key: value}
    return {**section, key: value} if isinstance(section, dict) else section


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``DCCD_*`` environment overrides on a raw config mapping."""
    raw = dict(raw)
    if env.get("DCCD_DATA"):
        raw["storage"] = _overlay(raw.get("storage"), "path", env["DCCD_DATA"])
    if env.get("DCCD_TOKEN"):
        raw["server"] = _overlay(raw.get("server"), "token", env["DCCD_TOKEN"])
    for key, value in sorted(env.items()):
        m = _ENV_URL.fullmatch(key)
        if m and value:
            name, field = m.group(1).lower(), f"{m.group(2).lower()}_url"
            exchanges = raw.get("exchanges")
            if isinstance(exchanges, dict) or exchanges is None:
                raw["exchanges"] = {**(exchanges or {}), name: _overlay((exchanges or {}).get(name), field, value)}
    return raw
