"""docs/ARCHITECTURE.md matches the code, and the library never imports the workflow glue."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs/ARCHITECTURE.md").read_text()
LIB = ROOT / "lib/hessdepth"
CORE = sorted(p for p in LIB.glob("*.py") if p.name != "__init__.py")
WORKFLOW = sorted(p for p in (LIB / "workflow").glob("*.py") if p.name != "__init__.py")


def test_every_library_module_is_in_a_module_table():
    described = set(re.findall(r"^\| `([\w/]+)\.py` \|", TEXT, flags=re.M))
    modules = {p.stem for p in CORE} | {f"workflow/{p.stem}" for p in WORKFLOW}
    assert described == modules, f"missing: {modules - described}, gone: {described - modules}"


def test_every_named_file_exists():
    for name in set(re.findall(r"`((?:scripts|rules|config|bench|tests|docs|lib)/[\w./-]+)`", TEXT)):
        assert (ROOT / name).exists(), name


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a library file imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "hessdepth" if node.level == 1 else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_the_library_imports_nothing_of_the_workflow():
    for path in [*CORE, LIB / "__init__.py"]:
        workflow = {m for m in imported_modules(path) if m.startswith(("hessdepth.workflow", "snakemake"))}
        assert not workflow, f"{path.name} imports {workflow}"
        assert "snakemake" not in path.read_text().lower(), f"{path.name} names snakemake"


def test_the_import_check_sees_a_workflow_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .workflow import jobs\nfrom . import workflow\n")
    assert {"hessdepth.workflow.jobs", "hessdepth.workflow"} <= imported_modules(bad)
