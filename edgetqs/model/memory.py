"""Giving memory back between the phases of a conversion."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def _libc_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


_MALLOC_TRIM = _libc_malloc_trim()


# Models with at least this many float bytes of weights are converted the memory-lean way; below it the
# savings are a few MB and the costs are not: a full collection with TensorFlow loaded takes ~0.2 CPU-s
# (2 per intake: +30% on a zoo model's 1.3 CPU-s). See release_freed_memory and
# savedmodel.tflite_from_savedmodel_dir.
LARGE_MODEL_BYTES = 16 << 20


def release_freed_memory(float_bytes: int) -> None:
    """For a model of ``float_bytes`` of weights (from LARGE_MODEL_BYTES up): collect the reference
    cycles a framework leaves (Keras models, TensorFlow functions) and hand glibc's free pages back to
    the system. Without it a converter's freed intermediates stay in the process (resident, counted in
    its peak) while the next phase allocates anew."""
    if float_bytes < LARGE_MODEL_BYTES:
        return
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
