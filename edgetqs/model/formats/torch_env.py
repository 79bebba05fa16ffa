"""The separate Python environment that runs litert-torch.

litert-torch 0.10.0 (the maintained successor of ai-edge-torch; it needs
ai-edge-litert 2.3.x and ai-edge-quantizer 0.10.x like us, and torch < 2.15)
cannot share edgetqs' venv: it requires ``ai-edge-litert[model-utils]``, whose
``xdsl==0.28.0`` needs ``typing-extensions<4.13`` and ``immutabledict<4.2.2``,
while our onnx 1.22 (onnx2tf's runtime) needs ``typing-extensions>=4.15``.
So, as the conformance check does with runtimes, it gets its own venv, locked
by ``constraints-litert-torch.txt``, built once (``python -m
edgetqs.model.formats.torch_env``; ``make venv`` does it) and shared by every
cache. Conversions run there as a subprocess (litert_torch_worker.py).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from edgetqs.errors import EdgeTQSError

LITERT_TORCH = "litert-torch==0.10.0"
TORCH = "torch==2.13.0"  # the CPU wheel this machine carries, as in edgetqs' own venv
CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints-litert-torch.txt"
WORKER = Path(__file__).with_name("litert_torch_worker.py")


def env_dir() -> Path:
    """Where the venv lives: $EDGETQS_VENVS, else ~/.cache/edgetqs-venvs (not under $EDGETQS_CACHE, which
    tests point at throwaway directories: a 2 GB venv is built once per machine)."""
    root = Path(os.environ.get("EDGETQS_VENVS", Path.home() / ".cache" / "edgetqs-venvs"))
    return root / f"{LITERT_TORCH.replace('==', '-')}-py{sys.version_info.major}{sys.version_info.minor}"


def python(build: bool = True) -> Path:
    """The litert-torch venv's Python, building the venv first if it is missing and ``build``."""
    env = env_dir()
    ready = env / ".installed"
    if ready.exists():
        return env / "bin" / "python"
    if not build:
        raise EdgeTQSError(f"the litert-torch environment is not built ({env})",
                           "run `python -m edgetqs.model.formats.torch_env` (or `make venv`)")
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f".{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel first users wait instead of installing twice
        if not ready.exists():
            _build(env)
            ready.touch()
    return env / "bin" / "python"


def _build(env: Path) -> None:
    steps = [[sys.executable, "-m", "venv", "--clear", str(env)],
             [str(env / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS), TORCH, LITERT_TORCH],
             [str(env / "bin" / "pip"), "check"]]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0:
            raise EdgeTQSError(f"cannot build the litert-torch environment in {env}: "
                               f"{(result.stderr or result.stdout).strip()[-400:]}",
                               "check the package index is reachable, then run "
                               "`python -m edgetqs.model.formats.torch_env` again")


if __name__ == "__main__":
    print(python())
