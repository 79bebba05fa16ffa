"""Run by the litert-torch venv's Python (not imported by edgetqs): a torch.export
program (.pt2) -> float .tflite through litert-torch.

    python litert_torch_worker.py PROGRAM.pt2 OUT.tflite 1,8,3

Standalone on purpose: that venv has torch and litert-torch but not edgetqs'
own dependencies. Errors go to stderr as one line starting with 'error:'.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(program: str, out: str, shape: str) -> int:
    import torch

    import litert_torch

    exported = torch.export.load(program)
    sample = torch.randn(*[int(d) for d in shape.split(",")])
    # An exported program's module is already in inference form (it refuses .eval()).
    converted = litert_torch.convert(exported.module(), (sample,))
    converted.export(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(*sys.argv[1:4]))
    except Exception as exc:  # one readable line for the parent; the traceback is not for the user
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:600], file=sys.stderr)
        sys.exit(1)
