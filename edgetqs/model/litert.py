"""Running a float .tflite in the LiteRT interpreter, the board's runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.model.quiet import quiet_stderr


def run_tflite(tflite: bytes | Path, window: np.ndarray) -> np.ndarray:
    """Run a canonical model on one input with the LiteRT interpreter (the board's runtime)."""
    from ai_edge_litert.interpreter import Interpreter

    content = tflite if isinstance(tflite, bytes) else Path(tflite).read_bytes()
    with quiet_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
        interpreter = Interpreter(model_content=content, num_threads=1)
        interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(window, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()
