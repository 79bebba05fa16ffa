"""The README's Python example, run exactly as written (on the cached zoo model it names)."""

from __future__ import annotations

import re
from pathlib import Path

import edgetqs
from edgetqs.bundle import load_bundle
from edgetqs.planner.plan import parse_size

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    scores, plan, result = namespace["scores"], namespace["plan"], namespace["result"]
    assert scores.method == "tqs-quant" and scores.settings["horizon"] == 8
    assert plan.predicted["memory_bytes"] <= parse_size("10KiB") == plan.budget_bytes
    assert any(a.format != "fp32" for a in plan.assignments), "the budget forces some units below float"
    bundle = load_bundle(tmp_path / "mlp-sunspots.bundle")
    assert result.model_bytes < result.float_bytes and bundle is not None


def test_the_package_exports_the_api():
    assert {"load", "score", "plan", "convert", "flash", "validate", "methods", "backends"} <= set(dir(edgetqs))
    assert edgetqs.methods()[0] == "tqs-quant" and "weight-error" in edgetqs.methods()
    assert edgetqs.backends()[0] == "numba"
