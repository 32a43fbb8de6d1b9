"""``dccd_contract_*``: the data contracts' outcomes, counted from ``DataValidated`` events on the bus."""

from __future__ import annotations

from dccd.actors.messages import DataValidated
from prometheus_client import CollectorRegistry, Counter, Gauge

from dccd.domain import DataType

_TYPES = frozenset(t.value for t in DataType)


def _labels(dataset: str) -> tuple[str, str]:
    """``(exchange, type)`` of a dataset name such as ``binance:BTC/USDT:perp:funding``."""
    parts = dataset.split(":")
    return parts[0], next((p for p in parts[2:] if p in _TYPES), "")


class ContractMetrics:
    """Counters per scope (``batch``: each write; ``check``: ``dccd check`` in serve, ``/api/v1/quality``)
    and, per dataset, the violations the latest check found."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["scope", "exchange", "type"]
        self.rows = Counter(
            "dccd_contract_rows_checked", "Rows the data contracts examined.", labels, registry=registry
        )
        self.validations = Counter(
            "dccd_contract_validations", "Contract runs (one per batch or dataset), by result.", [*labels, "result"],
            registry=registry,
        )  # fmt: skip
        self.violations = Counter(
            "dccd_contract_violations", "Rows breaking a data contract.", ["contract", *labels], registry=registry
        )
        self.failing = Gauge(
            "dccd_contract_failing",
            "Violations per contract in the latest check of the dataset (0 once it passes).",
            ["contract", "dataset"],
            registry=registry,
        )
        self._seen: dict[str, set[str]] = {}

    def on_validated(self, event: DataValidated) -> None:
        """Count one ``DataValidated``."""
        exchange, dtype = _labels(event.dataset)
        self.rows.labels(event.scope, exchange, dtype).inc(event.checked)
        self.validations.labels(event.scope, exchange, dtype, "fail" if event.failed else "pass").inc()
        for contract, n in event.failed.items():
            self.violations.labels(contract, event.scope, exchange, dtype).inc(n)
        if event.scope == "check":
            seen = self._seen.setdefault(event.dataset, set())
            for contract in seen - set(event.failed):
                self.failing.labels(contract, event.dataset).set(0)
            for contract, n in event.failed.items():
                self.failing.labels(contract, event.dataset).set(n)
            seen.update(event.failed)
