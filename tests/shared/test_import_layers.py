"""The layering of docs/ARCHITECTURE.md, enforced: the import-linter contract in pyproject.toml
passes, covers every module of the package, and is the list the architecture doc states."""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def contract_layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def layer_names(layer: str) -> set[str]:
    return {name.strip().strip("()") for name in layer.split(":")}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package below ``root`` (the checkout, not an installed copy)."""
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(command), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_no_module_imports_a_higher_layer():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_every_module_sits_in_a_layer_and_the_doc_states_the_contract():
    layered = {name for layer in contract_layers() for name in layer_names(layer)}
    modules = {f"edgetqs.{m.name}" for m in pkgutil.iter_modules([str(REPO / "edgetqs")])} - {"edgetqs.__main__"}
    assert modules <= layered, f"modules in no layer (add them to pyproject.toml and docs): {sorted(modules - layered)}"
    block = re.search(r"```layers\n(.*?)```", (REPO / "docs" / "ARCHITECTURE.md").read_text(), re.S).group(1)
    documented = [[name.strip() for name in line.split(":")] for line in block.strip().splitlines()]
    assert documented == [[name.strip().replace("edgetqs.", "") for name in layer.split(":")]
                          for layer in contract_layers()]


def test_the_contract_catches_a_lower_layer_importing_a_higher_one(tmp_path):
    shutil.copytree(REPO / "edgetqs", tmp_path / "edgetqs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    errors = tmp_path / "edgetqs" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    from edgetqs.planner import plan  # noqa: F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "edgetqs.errors is not allowed to import edgetqs.planner" in result.stdout
