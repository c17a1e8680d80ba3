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
        elif isinstance(node, ast.ImportFrom):
            yield imported_from(node, path)


def imported_from(node: ast.ImportFrom, path: Path) -> str:
    """The absolute name of the module a `from … import` reads, a relative one (`..schemas.x`
    in transforms/) resolved against the importing file's own module name."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


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


def test_only_the_validators_gx_results_and_data_docs_import_great_expectations() -> None:
    """Importing GX costs seconds: it stays behind the validator (`validation.gx`), the result
    types (`validation.results`) and the Data Docs; preparing and splitting a batch
    (`validation.batch`) and everything else never import it."""
    importing = {
        module_name(path)
        for path in python_files("servio")
        for name in imported_modules(path)
        if name.split(".")[0] == "great_expectations"
    }
    assert importing == {
        "servio.validation.gx",
        "servio.validation.results",
        "servio.validation.datadocs",
    }


# ---------------------------------------------------------------------------------------
# the import graph: parts, allowed arrows, no cycles (ARCHITECTURE.md draws the same)

PARTS = {
    "servio.schemas": "contracts",
    "servio.transforms": "transforms",
    "servio.validation": "validation",
    "servio.raw": "raw",
    "servio.lake": "lake",
    "servio.steps": "steps",
    "servio.flows": "flows",
    "servio.cli": "interface",
    "servio.report": "report",
    "servio.docs": "interface",
    "servio.tools": "tools",
    "servio.value_model": "value",
    "servio.value_optimiser": "value",
    "servio.key_drivers": "value",
    "servio.value_snapshot": "value",
    "servio.config": "shared",
    "servio.objectstore": "shared",
    "servio.faults": "shared",
    "servio.progress": "shared",
}
# Which parts each part may import (besides itself).
ALLOWED_ARROWS = {
    "contracts": set(),
    "shared": {"contracts"},
    "transforms": {"contracts"},
    "validation": {"contracts", "shared"},
    "raw": {"contracts", "shared"},
    "lake": {"contracts", "shared"},
    "value": {"contracts", "transforms", "shared"},
    "steps": {"contracts", "transforms", "validation", "raw", "lake", "value", "shared"},
    "flows": {"steps", "report", "contracts", "raw", "lake", "shared"},
    "report": {"contracts", "transforms", "value", "lake", "shared"},
    "tools": {"steps", "contracts", "validation", "lake", "shared"},
    "interface": {"flows", "steps", "tools", "report", "contracts", "raw", "lake", "shared"},
}


def module_name(path: Path) -> str:
    for folder in FOLDERS:
        if path.is_relative_to(ROOT / folder):
            parts = ("servio", folder, *path.relative_to(ROOT / folder).with_suffix("").parts)
            break
    else:
        parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """servio module → the servio modules it imports (at any level, `TYPE_CHECKING` aside)."""
    paths = [p for p in python_files("servio") if not p.is_relative_to(ROOT / "servio" / "flows")]
    paths = [p for p in paths if not any(p.is_relative_to(ROOT / "servio" / f) for f in FOLDERS)]
    modules = {module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body
            for child in ast.walk(stmt)
        }
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                module = imported_from(node, path)
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    targets.add(full if full in modules else module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def part_of(module: str) -> str:
    for prefix, part in sorted(PARTS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return part
    raise AssertionError(f"{module} belongs to no part: add it to ARCHITECTURE.md and PARTS")


def test_every_module_belongs_to_a_part_and_imports_only_along_allowed_arrows() -> None:
    wrong = sorted(
        f"{module} ({part_of(module)}) → {target} ({part_of(target)})"
        for module, targets in import_graph().items()
        if module != "servio"
        for target in targets
        if part_of(target) != part_of(module)
        and part_of(target) not in ALLOWED_ARROWS[part_of(module)]
    )
    assert wrong == []


def test_there_is_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
    return components
