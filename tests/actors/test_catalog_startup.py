"""The service's startup sweep repairs the lake's catalog and says so."""

from __future__ import annotations

from pathlib import Path

from dccd.actors import open_service
from structlog.testing import capture_logs

from dccd.config import Config, Storage
from dccd.domain import DatasetId, DataType, Symbol, Trade
from dccd.storage import Lake, Provenance, catalog

DS = DatasetId("binance", Symbol.parse("BTC/USDT"), DataType.TRADES)
T0 = 1_700_000_000_000_000_000


async def test_a_service_start_registers_parts_the_catalog_lacks_and_logs_it(tmp_path: Path) -> None:
    """Parts written while the catalog was lost are registered at start, and service.recovered counts them."""
    lake = Lake(tmp_path)
    for k in range(2):
        trades = [Trade(T0 + k * 10 + i, str(k * 10 + i), 1.0, 1.0, "buy", None) for i in range(10)]
        lake.write(DS, trades, Provenance("t", "ws"), now_ns=T0 + 10**15)
    catalog.forget(tmp_path)
    for f in (tmp_path / "_dccd").glob("catalog.db*"):
        f.unlink()
    with capture_logs() as logs:
        async with open_service(Config(storage=Storage(str(tmp_path)))):
            pass
    (event,) = [e for e in logs if e["event"] == "service.recovered"]
    assert event["catalog_parts_registered"] == 2 and event["catalog_parts_ended"] == 0
    catalog.forget(tmp_path)
    assert len(catalog.files_at(tmp_path, None)) == 2
