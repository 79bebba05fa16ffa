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

ONNX intake uses it too, for models onnx2tf converts wrongly (recurrent ops,
attention; formats/onnx.py says why): onnx2torch turns them into torch modules
in this venv and litert-torch converts those. A venv built before a package was
added here is topped up in place (its stamp lists what it was built with).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from edgetqs.errors import EdgeTQSError

LITERT_TORCH = "litert-torch==0.10.0"
TORCH = "torch==2.13.0"  # the CPU wheel this machine carries, as in edgetqs' own venv
CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints-litert-torch.txt"
# ONNX -> torch for ONNX models onnx2tf misconverts; 1.5.15 is the newest release (it needs onnx and torchvision).
ONNX2TORCH = "onnx2torch==1.5.15"
REQUIREMENTS = (TORCH, LITERT_TORCH, ONNX2TORCH)
WORKER = Path(__file__).with_name("litert_torch_worker.py")


def env_dir() -> Path:
    """Where the venv lives: $EDGETQS_VENVS, else ~/.cache/edgetqs-venvs (not under $EDGETQS_CACHE, which
    tests point at throwaway directories: a 2 GB venv is built once per machine)."""
    root = Path(os.environ.get("EDGETQS_VENVS", Path.home() / ".cache" / "edgetqs-venvs"))
    return root / f"{LITERT_TORCH.replace('==', '-')}-py{sys.version_info.major}{sys.version_info.minor}"


def python(build: bool = True) -> Path:
    """The litert-torch venv's Python, building (or topping up) the venv first if it is missing or
    older than ``REQUIREMENTS`` and the constraints, and ``build``."""
    env = env_dir()
    ready = env / ".installed"
    if _stamp_of(ready) == _stamp():
        return env / "bin" / "python"
    if not build:
        raise EdgeTQSError(f"the litert-torch environment is not built or not up to date ({env})",
                           "run `python -m edgetqs.model.formats.torch_env` (or `make venv`)")
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.parent / f".{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel first users wait instead of installing twice
        if _stamp_of(ready) != _stamp():
            _build(env, fresh=not (env / "bin" / "python").exists())
            ready.write_text(_stamp())
    return env / "bin" / "python"


def _stamp() -> str:
    """What a venv built now holds: the requirements and the lock they were installed with."""
    lock = hashlib.sha256(CONSTRAINTS.read_bytes() if CONSTRAINTS.exists() else b"").hexdigest()[:16]
    return " ".join(REQUIREMENTS) + f" constraints={lock}\n"


def _stamp_of(ready: Path) -> str | None:
    return ready.read_text() if ready.exists() else None


def _build(env: Path, fresh: bool) -> None:
    steps = [[sys.executable, "-m", "venv", "--clear", str(env)]] if fresh else []
    steps += [[str(env / "bin" / "pip"), "install", "-q", "-c", str(CONSTRAINTS), *REQUIREMENTS],
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
