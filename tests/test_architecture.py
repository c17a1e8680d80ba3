"""The shape of the code base (ARCHITECTURE.md): one import name, `servio`, over the folders
`schemas/`, `transforms/` and `flows/` at the top of the repository."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("schemas", "transforms", "flows")  # at the top, imported as servio.<folder>
CODE = ("servio", "tests", "benchmarks")


def python_files(*tops: str) -> Iterator[Path]:
    """Every .py file under the given top-level folders, following servio's folder links."""
    for top in tops:
        yield from sorted((ROOT / top).rglob("*.py"))
    if "servio" in tops:
        for folder in FOLDERS:
            yield from sorted((ROOT / folder).rglob("*.py"))


def imported_modules(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_module_imports_a_folder_by_its_bare_name() -> None:
    """`schemas.tables` and `servio.schemas.tables` would be two module objects with two
    `CuratedTable` classes: only the `servio.` name is used."""
    bare = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in python_files(*CODE)
        for name in imported_modules(path)
        if name.split(".")[0] in FOLDERS
    ]
    assert bare == []


def test_the_folders_are_the_servio_subpackages() -> None:
    for folder in FOLDERS:
        link = ROOT / "servio" / folder
        assert link.is_symlink() and link.resolve() == ROOT / folder, link


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """setuptools installs the packages pyproject.toml lists; a folder missing there would be
    missing from a wheel while every test (run from the checkout) still passes."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "servio").rglob("__init__.py")
    }
    found |= {
        ".".join(("servio", *init.parent.relative_to(ROOT).parts))
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert listed == found


@pytest.mark.parametrize("name", FOLDERS)
def test_outside_the_checkout_only_the_servio_names_import(name: str, tmp_path: Path) -> None:
    script = (
        f"import importlib.util, servio.{name}\n"
        f"assert servio.{name}.__file__.endswith('{name}/__init__.py')\n"
        f"print(importlib.util.find_spec('{name}'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


SOURCE_NAMES = {"interactions", "surveys", "survey_responses"}


def test_no_code_branches_on_a_source_name() -> None:
    """Per-source behaviour lives in the source registry (`servio.schemas.sources`) and the
    curate functions it names, never in `if source == "interactions"`. The sample generator
    writes each source's exports and is exempt."""
    branches = []
    for path in python_files("servio", "benchmarks"):
        if path.name == "generate.py" or path.parent.name == "generate":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Constant) and s.value in SOURCE_NAMES for s in sides):
                    branches.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert branches == []


def test_transforms_import_only_polars_the_standard_library_and_schemas() -> None:
    """Transforms are pure LazyFrame → LazyFrame: no settings (pydantic), no storage (fsspec,
    pyarrow), no Prefect; their parameters are plain values or frozen dataclasses of
    `servio.schemas`, which follows the same rule."""
    allowed = {"polars", "__future__", *sys.stdlib_module_names}
    found = []
    for folder in ("transforms", "schemas"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for name in imported_modules(path):
                top = name.split(".")[0]
                inside = name.startswith(("servio.schemas", f"servio.{folder}"))
                if top not in allowed and not inside:
                    found.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == []


def test_transforms_do_not_collect_or_touch_files() -> None:
    calls = {
        "collect",
        "collect_batches",
        "sink_parquet",
        "write_parquet",
        "read_parquet",
        "scan_parquet",
        "scan_csv",
        "read_csv",
        "scan_delta",
        "open",
    }
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}"
        for path in sorted((ROOT / "transforms").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in calls
    ]
    assert found == []


def test_importing_the_transforms_loads_no_settings_storage_or_orchestration() -> None:
    script = (
        "import sys, importlib, pkgutil, servio.transforms as t\n"
        "for m in pkgutil.iter_modules(t.__path__):\n"
        "    importlib.import_module('servio.transforms.' + m.name)\n"
        "heavy = ['pydantic', 'fsspec', 'prefect', 'great_expectations', 'deltalake', 'servio.config']\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
