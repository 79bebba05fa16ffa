"""Run by the litert-torch venv's Python (not imported by edgetqs): a torch.export
program (.pt2), or an ONNX model with a static input shape (.onnx, through
onnx2torch: onnx2torch_converters.py), -> float .tflite through litert-torch.

    python litert_torch_worker.py PROGRAM.pt2|MODEL.onnx OUT.tflite 1,8,3

Standalone on purpose: that venv has torch and litert-torch but not edgetqs'
own dependencies. Errors go to stderr as one line starting with 'error:'.
"""

import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
# Python puts this script's directory first on sys.path; it holds edgetqs' own onnx.py, keras.py, ...,
# which would shadow the real packages.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]


def _converters():
    """onnx2torch_converters.py, beside this file (imported by path: this directory is not on sys.path)."""
    spec = importlib.util.spec_from_file_location("onnx2torch_converters", os.path.join(HERE, "onnx2torch_converters.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(source: str, out: str, shape: str) -> int:
    import torch

    import litert_torch

    if source.endswith(".onnx"):
        module = _converters().to_torch(source)
    else:
        # An exported program's module is already in inference form (it refuses .eval()).
        module = torch.export.load(source).module()
    sample = torch.randn(*[int(d) for d in shape.split(",")])
    converted = litert_torch.convert(module, (sample,))
    converted.export(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:4]))
    except Exception as exc:  # one readable line for the parent; the traceback is not for the user
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:600], file=sys.stderr)
        sys.exit(1)
