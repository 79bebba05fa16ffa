"""Running a float .tflite in the LiteRT interpreter, the board's runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.model.quiet import quiet_stderr


def run_tflite(tflite: bytes | Path, window: np.ndarray, xnnpack: bool = True) -> np.ndarray:
    """Run a canonical model on one input with the LiteRT interpreter (the board's runtime).

    ``xnnpack=False``: LiteRT's builtin kernels only. They read the weights where they lie in
    ``tflite``, while XNNPACK (LiteRT's default delegate) packs a second float copy of every
    weight at allocation (1x the float bytes: benchmarks/xnnpack_packing.py)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    content = tflite if isinstance(tflite, bytes) else Path(tflite).read_bytes()
    options = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    with quiet_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
        interpreter = Interpreter(model_content=content, num_threads=1, **options)
        interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(window, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()
