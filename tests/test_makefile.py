"""The Makefile's commands as make expands them (make --dry-run: nothing runs)."""

import subprocess

import pytest

from conftest import ROOT


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--dry-run", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_cifar_cpu_passes_the_archive_as_one_quoted_path_and_checks_its_md5():
    proc = dry_run("cifar-cpu", "ARCHIVE=../shared/cifar.tar.gz")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"archive: '{(ROOT.parent / 'shared/cifar.tar.gz').resolve()}', md5: c58f30108f718f92721af3b95e74349a"
        in proc.stdout
    )


def test_cifar_cpu_without_archive_downloads_with_the_md5_check():
    proc = dry_run("cifar-cpu")
    assert "archive: null, md5: c58f30108f718f92721af3b95e74349a" in proc.stdout


@pytest.mark.parametrize("archive", ["it's.tar.gz", 'a"b.tar.gz', "x y.tar.gz", "a;touch z.tar.gz", "a`b`.tar.gz"])
def test_cifar_cpu_refuses_an_archive_path_that_would_break_the_command_line(archive):
    proc = dry_run("cifar-cpu", f"ARCHIVE={archive}")
    assert proc.returncode != 0
    assert "link the archive to a plain path" in proc.stderr
