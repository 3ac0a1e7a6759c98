"""docs/ARCHITECTURE.md matches the code: every library module is described, and every module
and file it names exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs/ARCHITECTURE.md").read_text()
LIB = ROOT / "lib/hessdepth"


def test_every_library_module_is_in_the_module_table():
    described = set(re.findall(r"^\| `(\w+)\.py` \|", TEXT, flags=re.M))
    modules = {p.stem for p in LIB.glob("*.py")} - {"__init__"}
    assert described == modules, f"missing: {modules - described}, gone: {described - modules}"


def test_every_named_file_exists():
    for name in set(re.findall(r"`((?:scripts|rules|config|bench|tests|docs|lib)/[\w./-]+)`", TEXT)):
        assert (ROOT / name).exists(), name
