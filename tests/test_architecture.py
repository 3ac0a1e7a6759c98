"""docs/ARCHITECTURE.md matches the code, and the library never imports the workflow glue."""

import ast
import importlib
import re
from pathlib import Path

import h5py
import pytest

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


def section(title: str) -> str:
    """The text of docs/ARCHITECTURE.md under ``## title``, up to the next ``## `` heading."""
    start = TEXT.index(f"## {title}")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start : end if end > 0 else None]


def test_every_rule_is_one_row_of_the_dag_table_and_each_row_is_right():
    import hessdepth as hd
    from hessdepth import workflow as wf

    rows = [
        [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        for line in section("The DAG, step by step").splitlines()
        if line.startswith("| `")
    ]
    rule = re.compile(r"^(?:rule (\w+)|use rule (\w+) as (\w+) with):\n(.*?)(?=^rule |^use rule |\Z)", re.M | re.S)
    found = [(p, m) for p in (ROOT / "rules").glob("*.smk") for m in rule.finditer(p.read_text())]
    defined = {m[1]: (p, m[4]) for p, m in found if m[1]}
    defined |= {m[3]: (p, defined[m[2]][1]) for p, m in found if m[3]}  # `use rule`: the base's script
    assert sorted(r[0] for r in rows) == sorted(defined), "one row per rule of rules/*.smk"
    for rule, rule_file, script, calls, _ in rows:
        path, body = defined[rule]
        assert path == ROOT / rule_file, (rule, path)
        assert f'"../{script}"' in body, f"rule {rule} does not run {script}"
        for name in re.findall(r"`([\w.]+)`", f"`{calls}`"):
            prefix, _, attr = name.partition(".")
            if name.endswith(".py"):
                assert (LIB / name).exists(), name
            elif prefix in ("hd", "wf"):
                assert hasattr({"hd": hd, "wf": wf}[prefix], attr), name
            else:
                assert hasattr(importlib.import_module(f"hessdepth.{prefix}"), attr), name


def described_files() -> dict[str, dict[str, set[str]]]:
    """Path pattern (or "Every file") -> {"datasets" | "groups" | "attrs": names} from the doc."""
    text = re.sub(r"\n  (?=\S)", " ", section("Files between rules"))  # a list item's continuation lines
    files, current = {}, {}
    for line in text.splitlines():
        if line.startswith("### "):
            current = files.setdefault(line[4:].strip("`"), {})
        elif re.match(r"- (datasets|groups|attrs): ", line):
            kind, names = line[2:].split(": ", 1)
            current[kind] = set(re.findall(r"`([\w/]+)`", names))
    return files


@pytest.mark.workflow
def test_every_hdf5_file_is_as_described(finished_run):
    files = described_files()
    every = files.pop("Every file")["attrs"]
    assert len(files) == 9, sorted(files)
    for pattern, names in files.items():
        paths = sorted(finished_run.glob(re.sub(r"\{\w+\}", "*", pattern.replace("{run}", "test"))))
        assert paths, f"no file of {pattern} in a run of the test preset"
        for path in paths:
            with h5py.File(path) as f:
                for name in names.get("datasets", ()):
                    assert isinstance(f.get(name), h5py.Dataset), f"{path}: no dataset {name}"
                for name in names.get("groups", ()):
                    assert isinstance(f.get(name), h5py.Group), f"{path}: no group {name}"
                missing = (names.get("attrs", set()) | every) - set(f.attrs)
                assert not missing, f"{path}: no attributes {sorted(missing)}"


def test_the_rules_and_the_captions_follow_the_figure_registry():
    from hessdepth.plots import FIGURES, figures_drawn

    inputs = (ROOT / "rules/figure_inputs.smk").read_text()
    named = set(re.findall(r'"(fig\d_\w+)"', inputs))
    assert named == set(FIGURES), f"rules/figure_inputs.smk names {sorted(named)}; the registry {list(FIGURES)}"
    assert not re.findall(r'"(fig\d_\w+)"', (ROOT / "rules/common.smk").read_text())  # it asks the registry
    for name, spec in FIGURES.items():
        assert (ROOT / f"report/captions/{name}.rst").is_file(), f"{name} has no caption"
        assert set(re.findall(rf'"{name}": lambda: {{\s*"(\w+)"', inputs)) <= set(spec.inputs)
    assert figures_drawn({"blocks": False, "gauss_newton": False}) == list(FIGURES)[:6]
    assert figures_drawn({"blocks": False, "gauss_newton": True})[-1] == "fig8_gauss_newton"
