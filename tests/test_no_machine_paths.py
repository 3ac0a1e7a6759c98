"""No tracked file names an absolute path of the machine it was made on."""

import re
import subprocess

import pytest

from conftest import ROOT

# where checkouts, shared data and temporary files sit on this project's machines and the usual others
MACHINE_ROOTS = re.compile(r"(?<![\w.~-])/(work|tmp|home|root|Users|scratch|mnt)/[\w.-]+")


def tracked_text_files():
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in names.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            data = path.read_bytes()
            if b"\0" not in data[:8192]:  # text only
                yield name, data.decode(errors="replace")


def test_tracked_files_hold_no_absolute_machine_paths():
    own = [str(ROOT), str(ROOT.parent / "shared")]
    offenders = []
    for name, text in tracked_text_files():
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(p in line for p in own) or MACHINE_ROOTS.search(line):
                offenders.append(f"{name}:{lineno}: {line.strip()[:120]}")
    assert not offenders, "absolute paths of a machine (use paths relative to the repository):\n" + "\n".join(offenders)


def test_the_rule_catches_a_machine_path():
    root = "/"  # joined here, so that this file holds no such path itself
    assert MACHINE_ROOTS.search(f'archive: "{root}work/shared/data/x.tar.gz"')
    assert MACHINE_ROOTS.search(f"see {root}tmp/pytest-of-root/x")
    assert not MACHINE_ROOTS.search("results/cifar10/train and ../shared/data and https://example.org/work/x")
