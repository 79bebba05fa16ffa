"""Run conformance models in one TFLite runtime; self-contained (numpy + a runtime only).

This file is executed by the Python of the runtime under test, often a
throwaway venv with ``tflite-runtime`` and numpy<2, so it must not import
edgetqs. Usage::

    python conformance_runner.py CASE_DIR CASE

CASE_DIR holds ``<case>.tflite`` + ``<case>.npz`` (inputs ``x0, x1, ...``).
It writes ``<case>.out.npz`` (output ``y``) and ``<case>.result.json``. One
case per process, because a runtime may crash (segfault) on a model it
cannot execute; the caller records that as the finding.
"""

import json
import sys
from pathlib import Path

import numpy as np


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter


def run_case(Interpreter, model: Path, inputs: dict) -> dict:
    try:
        interp = Interpreter(model_path=str(model), num_threads=1)
        interp.allocate_tensors()
    except Exception as exc:  # any failure to load is a finding, not a crash
        return {"status": "load_error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        for detail, key in zip(interp.get_input_details(), sorted(inputs)):
            interp.set_tensor(detail["index"], inputs[key].astype(detail["dtype"]))
        interp.invoke()
        y = interp.get_tensor(interp.get_output_details()[0]["index"])
    except Exception as exc:
        return {"status": "run_error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    np.savez(model.with_suffix(".out.npz"), y=y)
    return {"status": "ran"}


def main(case_dir: str, case: str) -> None:
    model = Path(case_dir) / f"{case}.tflite"
    with np.load(model.with_suffix(".npz")) as data:
        inputs = {k: data[k] for k in data.files}
    result = run_case(_interpreter_class(), model, inputs)
    model.with_suffix(".result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
