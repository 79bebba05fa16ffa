"""Serial and parallel numba builds of one kernel, each with its own disk cache.

numba's on-disk cache names an entry by the function's qualified name and
first line, not by its compile flags: two ``njit(cache=True)`` wrappers of the
same function, one ``parallel=True``, share one cache entry, and whichever
compiled first is loaded for both. (That silently ran the engine's "parallel"
GEMM on one thread.) Each build here wraps a copy of the function renamed
``<name>_serial`` / ``<name>_parallel``, so each caches its own machine code.
"""

from __future__ import annotations

import types

import numba


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
