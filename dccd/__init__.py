"""dccd: crypto market-data collector (REST backfills, WebSocket streams, Parquet lake)."""

__version__ = "4.0.0.dev0"
