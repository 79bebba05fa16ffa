"""Serial and parallel numba builds of one kernel, each with its own disk cache.

numba's on-disk cache names an entry by the function's qualified name and
first line, not by its compile flags: two ``njit(cache=True)`` wrappers of the
same function, one ``parallel=True``, share one cache entry, and whichever
compiled first is loaded for both. (That silently ran the engine's "parallel"
GEMM on one thread.) Each build here wraps a copy of the function renamed
``<name>_serial`` / ``<name>_parallel``, so each caches its own machine code.

Each kernel also registers a *sample*: arguments of the types the engine calls
it with, so engine/precompile.py can compile (and cache) every kernel in a
child process before the engine first runs.
"""

from __future__ import annotations

import types
from typing import Callable

import numba

# (kernel, sample) pairs: sample() -> arguments typed as the engine's calls (see with_sample).
SAMPLES: list[tuple[object, Callable[[], tuple]]] = []


def _renamed(func, suffix: str):
    twin = types.FunctionType(func.__code__, func.__globals__, f"{func.__name__}_{suffix}", func.__defaults__,
                              func.__closure__)
    twin.__qualname__ = f"{func.__qualname__}_{suffix}"
    twin.__module__ = func.__module__
    return twin


def serial_and_parallel(func, **flags):
    """(serial, parallel) cached numba builds of ``func``, whose outer loop is a ``numba.prange``."""
    serial = numba.njit(cache=True, **flags)(_renamed(func, "serial"))
    parallel = numba.njit(cache=True, parallel=True, **flags)(_renamed(func, "parallel"))
    return serial, parallel


def with_sample(sample: Callable[[], tuple], *kernels) -> None:
    """Register ``sample`` (-> small arguments of the types the engine passes) for each numba kernel."""
    SAMPLES.extend((kernel, sample) for kernel in kernels)
