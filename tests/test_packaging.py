"""The wheel: one top-level package `dccd` holding actors/, web/ and the embedded configs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", "tests", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache", "data"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build a wheel offline from a copy of the repo (so build/ and egg-info never land in the tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    proc = subprocess.run([*cmd, "-w", str(tmp / "out"), str(src)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = (tmp / "out").glob("dccd-*.whl")
    return found


def test_wheel_layout(wheel: Path) -> None:
    """The wheel has dccd/actors, dccd/web, dccd/defaults/*.yaml and py.typed, and no top-level actors/ or web/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "dccd/__init__.py",
        "dccd/actors/__init__.py",
        "dccd/web/__init__.py",
        "dccd/defaults/default.yaml",
        "dccd/defaults/example.yaml",
        "dccd/py.typed",
    ):
        assert required in names
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"dccd"}
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["dccd"]


def test_wheel_has_every_source_file(wheel: Path) -> None:
    """Every module of dccd/, actors/ and web/ (and web templates/static) is in the wheel under dccd/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"dccd/{p.relative_to(ROOT / 'dccd').as_posix()}" for p in (ROOT / "dccd").rglob("*.py")}
    for folder, package in (("actors", "dccd/actors"), ("web", "dccd/web")):
        for p in (ROOT / folder).rglob("*"):
            rel = p.relative_to(ROOT / folder)
            if (
                p.is_file()
                and (p.suffix == ".py" or rel.parts[0] in ("templates", "static"))
                and "__pycache__" not in rel.parts
            ):
                expected.add(f"{package}/{rel.as_posix()}")
    assert sorted(expected - names) == []
    packaged = zipfile.ZipFile(wheel).read("dccd/defaults/default.yaml").decode()
    assert packaged == (ROOT / "config" / "default.yaml").read_text(encoding="utf-8")


def test_installed_wheel_imports(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel alone, dccd.actors/dccd.web import, the configs load, and `actors` does not exist."""
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import dccd, dccd.actors, dccd.web\n"
        "from dccd.config import load_config\n"
        "for m in (dccd, dccd.actors, dccd.web): assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
        "assert len(load_config(None, {}).jobs) == 2\n"
        "try:\n    import actors\nexcept ModuleNotFoundError:\n    print('no actors')\n"
        "try:\n    import web\nexcept ModuleNotFoundError:\n    print('no web')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(target)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert (run.returncode, run.stdout, run.stderr) == (0, "no actors\nno web\n", "")


def test_dev_environment_imports(tmp_path: Path) -> None:
    """In this (editable) environment `import actors` fails while dccd.actors and dccd.web import."""
    script = (
        "import dccd.actors, dccd.web\n"
        "try:\n    import actors\nexcept ModuleNotFoundError:\n    print('no actors')\n"
        "try:\n    import web\nexcept ModuleNotFoundError:\n    print('no web')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout, run.stderr) == (0, "no actors\nno web\n", "")
