"""Keeping TensorFlow's, the converters' and LiteRT's chatter off the user's terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

# TensorFlow reads this once, at import (which happens lazily): keep its C++ logs quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_stderr():
    """TensorFlow and the converters print straight to file descriptor 2 (CUDA
    probing, MLIR diagnostics we turn into EdgeTQSErrors anyway): keep that off
    the user's terminal. Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly():
    """Import TensorFlow (and Keras) without their start-up chatter on stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def quiet_tensorflow():
    """Conversion without TensorFlow's logs, on the Python side and on fd 2."""
    previous = logging.getLogger("tensorflow").level
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        with quiet_stderr():
            yield
    finally:
        logging.getLogger("tensorflow").setLevel(previous)
