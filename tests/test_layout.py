"""The package's shape: imports run downward only, through an ordered ground (vocabulary, then
records, then parameters and measure) and the floors above it; no phase imports another phase;
science never imports presentation; no module imports itself back through a cycle; and no module
but the run layout spells a run artifact's path. Read from the source with `ast`, so an import
under `TYPE_CHECKING` or inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path

import pytest

from teachable.records.layout import RunLayout

PACKAGE = Path(__file__).resolve().parents[1] / "teachable"
NOTEBOOKS = PACKAGE.parent / "notebooks"

# The layer of each top-level part of the package: a module may import its own part and the
# parts of lower layers, never a part of its own layer or above. The ground is ordered: the
# vocabulary names things, records are the schemas written with those names, parameters and
# measure read records (and neither reads the other).
LAYERS = {
    "vocabulary": 0,
    "records": 1,
    "parameters": 2,
    "measure": 2,
    "world": 3,
    "models": 4,
    "phases": 5,
    "reports": 6,
    "pipeline": 7,
    "__init__": 8,
    "__main__": 8,
}
SCIENCE = ("vocabulary", "records", "measure", "world", "models", "phases", "parameters")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports_of(path: Path) -> set[str]:
    """Every `teachable` module `path` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("teachable"):
            found.add(node.module)  # `from teachable import x` imports the public API
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("teachable"))
    return found


@functools.cache
def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted(m for m in import_graph() if part_of(m) not in LAYERS)
    assert unknown == [], f"modules outside the layout of DESIGN.md: {unknown}"


def test_subpackages_are_one_level_deep() -> None:
    deep = [m for m in import_graph() if m.count(".") > 2]
    assert deep == []


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a part on the importer's own layer or above (its own part aside)."""
    return [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target != "teachable"
        and part_of(target) != part_of(module)
        and LAYERS[part_of(target)] >= LAYERS[part_of(module)]
    ]


def phase_to_phase_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of one phase module by another: a phase only orchestrates its own phase."""
    return [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if part_of(module) == "phases"
        for target in targets
        if part_of(target) == "phases" and target != module and target != "teachable.phases"
    ]


def test_imports_run_downward() -> None:
    assert upward_imports(import_graph()) == []


def test_no_phase_imports_another_phase() -> None:
    assert phase_to_phase_imports(import_graph()) == []


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("teachable.records.labeled", "teachable.parameters"),
        ("teachable.records.verdicts", "teachable.measure.intervals"),
        ("teachable.vocabulary", "teachable.records.store"),
        ("teachable.parameters", "teachable.measure.intervals"),
        ("teachable.measure.verdicts", "teachable.parameters"),
        ("teachable.world.splits", "teachable.models.student"),
    ],
)
def test_an_upward_import_at_the_ground_is_caught(module: str, target: str) -> None:
    assert upward_imports({module: {target}}) == [f"{module} imports {target}"]


def test_a_phase_importing_a_phase_is_caught() -> None:
    module, target = "teachable.phases.phase5_selection", "teachable.phases.phase1_labels"
    assert phase_to_phase_imports({module: {target}}) == [f"{module} imports {target}"]


def test_science_never_imports_presentation() -> None:
    offending = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if part_of(module) in SCIENCE
        for target in targets
        if part_of(target) in ("reports", "pipeline")
    ]
    assert offending == []


def test_no_import_cycle() -> None:
    graph = {
        m: {t for t in targets if t in import_graph()} for m, targets in import_graph().items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting, module])}"
        visiting.append(module)
        for target in graph.get(module, ()):
            if target != "teachable":
                visit(target)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def artifact_names() -> set[str]:
    """The file and folder names the run layout declares, those that look like an artifact."""
    layout = RunLayout(Path("/run"))
    names = set()
    for path in layout.all_paths():
        names.update(part for part in path.relative_to("/run").parts if "." in part)
    return names


def test_the_layout_names_real_files() -> None:
    names = artifact_names()
    assert {"labeled_snapshots.jsonl", "training_summary.json", "split.json"} <= names


@functools.cache
def sources_outside_layout() -> list[tuple[str, str]]:
    layout = PACKAGE / "records" / "layout.py"
    sources = [(str(p), p.read_text()) for p in PACKAGE.rglob("*.py") if p != layout]
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        sources.append((str(notebook), code))
    return sources


@pytest.mark.parametrize("name", sorted(artifact_names()))
def test_no_module_but_the_layout_spells_an_artifact_path(name: str) -> None:
    pattern = re.compile(rf"""["'/]{re.escape(name)}["']""")
    spelled = [path for path, text in sources_outside_layout() if pattern.search(text)]
    assert spelled == [], f"{name!r} is spelled outside records/layout.py in {spelled}"
