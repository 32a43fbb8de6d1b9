"""The shape of the code: imports point inward, sources/ has no cycles, packages declare their public names.

The import graph is read from the source (every ``import`` in every module,
inside functions and ``TYPE_CHECKING`` blocks too), never by importing, so a
violation shows even on a path no test runs. ``actors/`` and ``web/`` are
installed as ``dccd.actors`` and ``dccd.web`` and are read under those names.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"dccd": ROOT / "dccd", "dccd.actors": ROOT / "actors", "dccd.web": ROOT / "web"}
IO_LIBRARIES = frozenset({"trio", "httpx", "anyio"})


@cache
def modules() -> dict[str, Path]:
    """Every module of the installed ``dccd`` package: dotted name -> file."""
    found: dict[str, Path] = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "dccd" and parts[:1] in (["actors"], ["web"]):
                continue  # not shipped from dccd/ (no such folders today; the installed ones win)
            found[name] = path
    return found


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


@cache
def imports(name: str) -> frozenset[str]:
    """The absolute names module ``name`` imports: ``from a import b`` is ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules() else target)
    out.discard(name)
    return frozenset(out)


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _inside(prefix: str) -> list[str]:
    return sorted(m for m in modules() if _under(m, prefix))


def test_the_graph_reader_sees_the_tree() -> None:
    """The reader finds the packages and resolves imports (a reader that sees nothing would pass every rule)."""
    assert {"dccd.sources.okx", "dccd.sources.okx.ws", "dccd.domain.spans", "dccd.actors", "dccd.web"} <= set(modules())
    assert "dccd.sources.okx.common" in imports("dccd.sources.okx.ws")
    assert {"dccd.sources.okx.common", "dccd.sources.okx.rest", "dccd.sources.okx.ws"} <= imports("dccd.sources.okx")
    assert "trio" in imports("dccd.transport.ws")


@pytest.mark.parametrize("layer", ["dccd.sources", "dccd.domain"])
def test_sans_io_layers_import_no_io_library(layer: str) -> None:
    """Nothing under dccd/sources or dccd/domain imports trio, httpx or anyio (they stay sans-IO)."""
    bad = {m: sorted(i for i in imports(m) if i.split(".")[0] in IO_LIBRARIES) for m in _inside(layer)}
    assert {m: i for m, i in bad.items() if i} == {}


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        ("dccd.domain", ("dccd.domain", "dccd.errors")),
        ("dccd.sources", ("dccd.domain", "dccd.errors", "dccd.sources")),
    ],
)
def test_inner_layers_import_only_inward(layer: str, allowed: tuple[str, ...]) -> None:
    """domain imports only domain and errors of dccd; sources only domain, errors and sources."""
    bad = {m: sorted(i for i in imports(m) if _under(i, "dccd") and not _under(i, *allowed)) for m in _inside(layer)}
    assert {m: i for m, i in bad.items() if i} == {}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("dccd.storage", ("dccd.actors", "dccd.web", "dccd.cli", "actors", "web")),
        ("dccd.transport", ("dccd.actors", "dccd.web", "dccd.cli", "actors", "web")),
        ("dccd.actors", ("dccd.web", "dccd.cli", "web")),
    ],
)
def test_outer_layers_are_not_imported_inward(layer: str, forbidden: tuple[str, ...]) -> None:
    """storage and transport import no actors, web or cli; actors import no web or cli."""
    bad = {m: sorted(i for i in imports(m) if _under(i, *forbidden)) for m in _inside(layer)}
    assert {m: i for m, i in bad.items() if i} == {}


def _cycles(nodes: list[str], edges: Callable[[str], frozenset[str]] = imports) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    inside = set(nodes)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges(v) & inside):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_cycles() -> None:
    """The cycle check reports each cycle, direct or through a third module, and passes a chain."""
    chain = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset()}
    assert _cycles(list(chain), chain.__getitem__) == []
    looped = {**chain, "c": frozenset({"a"}), "d": frozenset({"e"}), "e": frozenset({"d"})}
    assert _cycles(list(looped), looped.__getitem__) == [["a", "b", "c"], ["d", "e"]]


def test_sources_have_no_import_cycles() -> None:
    """No module of dccd/sources imports, directly or through others, one that imports it back."""
    assert _cycles(_inside("dccd.sources")) == []


def test_every_exchange_has_the_same_package_shape() -> None:
    """Each built-in exchange is a package with common, rest and ws; rest and ws import common, not each other."""
    from dccd.sources.registry import BUILTINS

    for name, target in BUILTINS.items():
        package = target.partition(":")[0]
        assert package == f"dccd.sources.{name}" and _is_package(package)
        common, rest, ws = (f"{package}.{half}" for half in ("common", "rest", "ws"))
        assert {common, rest, ws} <= set(modules())
        assert common in imports(rest) and common in imports(ws)
        assert not any(_under(i, rest) for i in imports(ws)) and not any(_under(i, ws) for i in imports(rest))
        assert not any(_under(i, package) for i in imports(common))


def _public_names(name: str) -> set[str]:
    """Names a package's ``__init__`` binds for its users: its own top-level definitions and what it imports
    from dccd (``TYPE_CHECKING`` imports of lazily exported names included), not its submodules."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("dccd")):
            for alias in node.names:  # a submodule bound by ``from pkg import sub`` is not a public name
                if f"{node.module}.{alias.name}" not in modules():
                    out.add(alias.asname or alias.name)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in out if not n.startswith("_")}


@pytest.mark.parametrize("package", sorted(m for m in modules() if _is_package(m)))
def test_all_lists_exactly_the_public_names(package: str) -> None:
    """``__all__`` of each package lists exactly the names it binds for users, and each of them exists."""
    public = _public_names(package)
    module = importlib.import_module(package)
    declared = getattr(module, "__all__", None)
    if declared is None:
        assert public == set(), f"{package} binds public names but declares no __all__"
        return
    assert sorted(declared) == sorted(set(declared)), "duplicates in __all__"
    assert set(declared) == public
    missing = [n for n in declared if not hasattr(module, n)]
    assert missing == []


def test_every_exchange_declares_whether_its_trade_ids_are_sequential() -> None:
    """sequential_ids reads the adapter's declaration; every built-in declares it; an undeclared one is not sequential."""
    from dccd.sources.base import sequential_ids
    from dccd.sources.registry import get_adapter, list_adapters

    declared = {name: getattr(get_adapter(name), "sequential_trade_ids", None) for name in list_adapters()}
    assert None not in declared.values(), declared
    assert {n for n, v in declared.items() if v} == {"binance", "coinbase", "kraken", "okx"}
    assert sequential_ids(object()) is False
