"""The engine's numba kernels compiled in a child process, once per machine, before the engine runs.

numba compiles a kernel at its first call and keeps its disk cache (``cache=True``)
for every later process. Compiling inside the process that then runs a sweep
leaves LLVM's working memory behind in it: on patchtf-118m's score the first run
after install peaked ~60 MB higher (3.06x the model's float bytes, over the
3x target, against 2.93x with the cache warm) and spent its first ~10 CPU-s
compiling. So the first engine of a process checks numba's cache index for
every kernel at the argument types the engine calls it with (each kernel's
registered sample, engine/jit.py) and, if any is missing, has a child process
compile them all; the child's memory goes with it, and this process loads the
cached machine code like any later run.

    python -c "from edgetqs.engine.precompile import compile_all; compile_all()"   # what the child runs

Calls with types no sample covers still compile in-process at first use, as
numba always does. If the child fails, nothing is lost: the kernel then
compiles in this process, and a real compile error surfaces there with its
full text.
"""

from __future__ import annotations

import subprocess
import sys

import numba

from edgetqs.engine import jit

_CHECKED = False


def kernel_samples() -> list[tuple[object, tuple]]:
    """(kernel, sample arguments) for every numba kernel of the engine (importing them registers them)."""
    from edgetqs.engine import gemm  # noqa: F401  (registers the GEMM kernels)
    from edgetqs.engine.registry import supported_ops

    supported_ops()  # imports every op module, registering their kernels
    return [(kernel, sample()) for kernel, sample in jit.SAMPLES]


def is_cached(kernel, args: tuple) -> bool:
    """Whether numba's disk cache holds ``kernel`` compiled for ``args``' types, read from its index
    (no machine code loaded). True when that cannot be told (e.g. NUMBA_DISABLE_JIT): numba then
    does what it always does at the first call."""
    try:
        signature = tuple(numba.typeof(arg) for arg in args)
        cache = kernel._cache
        key = cache._index_key(signature, kernel.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # numba internals (pinned in constraints.txt) or no JIT: leave it to numba
        return True


def uncached_kernels() -> list[str]:
    return [kernel.__name__ for kernel, args in kernel_samples() if not is_cached(kernel, args)]


def compile_all() -> None:
    """Compile (and cache on disk) every kernel for its sample's types."""
    for kernel, args in kernel_samples():
        kernel(*args)


def ensure_compiled() -> None:
    """Once per process: if any kernel is missing from numba's cache, compile them all in a child."""
    global _CHECKED
    if _CHECKED:
        return
    _CHECKED = True
    missing = uncached_kernels()
    if not missing:
        return
    from rich.console import Console

    with Console(stderr=True).status(f"compiling the engine's {len(missing)} numba kernels (once per machine)"):
        subprocess.run([sys.executable, "-c", f"from {__name__} import compile_all; compile_all()"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
