"""The README's Python API examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def example(marker: str) -> str:
    """The README's first Python block that contains ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if marker in b)


def test_readme_api_example_runs(capsys):
    exec(compile(example("hd.HessianOperator"), str(README), "exec"), {})
    out = capsys.readouterr().out
    match = re.search(r"(\d+) parameters, lambda_max ~ ([\d.e+-]+), kurtosis ([\d.e+-]+) \(SLQ\), ([\d.e+-]+)", out)
    assert match, out
    assert int(match.group(1)) == 19218 and float(match.group(2)) > 0
    slq_kurtosis, hutch_kurtosis = float(match.group(3)), float(match.group(4))
    assert slq_kurtosis > 3 and hutch_kurtosis > 3  # neural-net Hessian spectra are heavy-tailed


def test_readme_per_layer_example_runs(capsys):
    exec(compile(example("hd.GaussNewtonOperator"), str(README), "exec"), {})
    out = capsys.readouterr().out
    kurtosis = dict(re.findall(r"block (\w+): kurtosis ([\d.e+-]+)", out))
    assert list(kurtosis) == ["input", "stage1", "stage2", "stage3", "classifier"]
    assert all(float(k) > 1 for k in kurtosis.values())  # kurtosis >= 1 for any distribution
    found = re.findall(r"(H|G|H - G): Ritz values (\S+) \.\. (\S+)", out)
    ritz = {part: (float(lo), float(hi)) for part, lo, hi in found}
    assert list(ritz) == ["H", "G", "H - G"]
    assert ritz["G"][0] >= -1e-6 * ritz["G"][1] and ritz["G"][1] > 0  # G is positive semi-definite
    assert ritz["H"][0] < 0 and ritz["H - G"][0] < 0  # H and the remainder are not
