"""``GET /api/v1/quality``: the data contracts run over stored datasets now, as one JSON report."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from dccd.contracts.check import SelectorError
from dccd.storage.snapshots import SnapshotNotFound

from . import params
from .context import WebContext
from .errors import ApiProblem

MAX_SELECTORS = 100


class QualityController(Controller):
    """``/api/v1/quality``."""

    path = "/api/v1"
    tags = ("quality",)

    @get("/quality", summary="Run the data contracts over stored datasets")
    async def quality(
        self,
        ctx: WebContext,
        dataset: list[str] | None = None,
        start: str | None = None,
        end: str | None = None,
        as_of: str | None = None,
    ) -> dict[str, Any]:
        """The report of ``dccd check --json``: per dataset, contract and UTC day, counts and first examples.

        ``dataset`` (repeatable, or comma-separated) is ``EXCHANGE[:SYMBOL[:TYPE[:SPAN]]]``; none = every
        dataset. ``start``/``end`` bound the rows checked; ``as_of`` (a snapshot id, tag or ISO time) checks
        the lake as that snapshot held it (404 when it names none). Each dataset checked emits
        ``DataValidated`` on the event bus (SSE ``/api/v1/events``). One check runs at a time.
        """
        selectors = tuple(s for item in dataset or () for s in item.split(",") if s.strip())
        if len(selectors) > MAX_SELECTORS:
            raise params.bad("dataset", f"at most {MAX_SELECTORS} selectors, got {len(selectors)}")
        start_ns, end_ns = params.window(start, end)
        if as_of is not None and (not as_of or len(as_of) > 80):
            raise params.bad("as_of", "a snapshot id, tag or ISO time (at most 80 characters)")
        svc = ctx.stored
        try:
            report = await svc.check_quality(selectors, start_ns=start_ns, end_ns=end_ns, as_of=as_of)
        except SelectorError as exc:
            raise params.bad("dataset", str(exc).removeprefix("DATASET ")) from None
        except SnapshotNotFound as exc:
            raise ApiProblem(404, "as_of", str(exc)) from None
        out: dict[str, Any] = msgspec.to_builtins(report)
        return out
