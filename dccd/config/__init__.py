"""The YAML config (DESIGN.md §4) as msgspec Structs, with env overrides.

Every invalid config raises :class:`~dccd.errors.ConfigError` whose text is one
line naming the key path, e.g.
``jobs[1].span: '7m' is not a span (1s 1m 3m ...)``.

Env overrides: ``DCCD_CONFIG`` (file), ``DCCD_DATA`` (storage.path),
``DCCD_TOKEN`` (server.token), ``DCCD_<EXCHANGE>_REST_URL`` and
``DCCD_<EXCHANGE>_WS_URL``.

Modules: :mod:`~dccd.config.schema` (the Structs), :mod:`~dccd.config.timeexpr`
(durations and window bounds), :mod:`~dccd.config.env` (the ``DCCD_*`` overlay),
:mod:`~dccd.config.validate` (schema errors in one line, semantic checks) and
:mod:`~dccd.config.load` (YAML, loading, expanded jobs).
"""

from dccd.config.env import apply_env
from dccd.config.load import default_config_text, expand_jobs, load_config, masked, parse_config
from dccd.config.schema import (
    OPERATIONS,
    STREAM_TYPES,
    Alert,
    Config,
    ExchangeSettings,
    Job,
    JobSpec,
    Server,
    Storage,
)
from dccd.config.timeexpr import parse_duration_s, resolve_end, resolve_start, shown
from dccd.config.validate import check_job, check_url, exchange_names, schema_error, validate

__all__ = [
    "OPERATIONS",
    "STREAM_TYPES",
    "Alert",
    "Config",
    "ExchangeSettings",
    "Job",
    "JobSpec",
    "Server",
    "Storage",
    "apply_env",
    "check_job",
    "check_url",
    "default_config_text",
    "exchange_names",
    "expand_jobs",
    "load_config",
    "masked",
    "parse_config",
    "parse_duration_s",
    "resolve_end",
    "resolve_start",
    "schema_error",
    "shown",
    "validate",
]
