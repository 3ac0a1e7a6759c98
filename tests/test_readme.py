"""The README's Python API example runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "hd.HessianOperator" in b)
    exec(compile(example, str(README), "exec"), {})
    out = capsys.readouterr().out
    match = re.search(r"(\d+) parameters, lambda_max ~ ([\d.e+-]+), kurtosis ([\d.e+-]+) \(SLQ\), ([\d.e+-]+)", out)
    assert match, out
    assert int(match.group(1)) == 19218 and float(match.group(2)) > 0
    slq_kurtosis, hutch_kurtosis = float(match.group(3)), float(match.group(4))
    assert slq_kurtosis > 3 and hutch_kurtosis > 3  # neural-net Hessian spectra are heavy-tailed
