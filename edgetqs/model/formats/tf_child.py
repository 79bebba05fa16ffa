"""TensorFlow conversions (Keras, SavedModel) run in a child process: always for large models.

Why (issue #14): the TFLite converter's own peak is several float copies of the model above what
the process already holds, and it leaves TensorFlow's heap behind in whichever process ran it —
the one that goes on to score in the same CLI run. A fresh child (``python -m
edgetqs.model.formats.tf_child``) holds the TensorFlow heap and exits; the parent only reads the
finished .tflite and never imports TensorFlow. The child also gets two settings that are
process-wide, so only a child may have them (in the caller they would change every other
TensorFlow computation, e.g. deterministic zoo training): oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) and
glibc serving allocations from 1 MiB up by mmap (MALLOC_MMAP_THRESHOLD_=1 MiB: a freed weight copy
goes back to the system at once instead of staying in the heap). On patchtf-118m (in one process,
peak RSS by phase, load 1.3-2.3) the converter's step peaked at 3.40 GiB with neither, 3.57 with
oneDNN off alone, 3.39 with the mmap threshold alone and 2.49 GiB with both (the whole intake,
parent and child: benchmarks/results/large_models.json).

Below LARGE_MODEL_BYTES a child is used only when this process has not imported TensorFlow yet
(it would pay that import anyway): a process that has (zoo training, tests) converts a small model
in place rather than paying ~3 s for a second import.

The child writes the .tflite (canonical buffer layout, streamed) and a pickle of the rest of the
``Converted`` into a temporary directory; an EdgeTQSError comes back as the same error (class,
problem, fix), any other exception with the child's whole traceback, and a child that dies without
a result (out of memory, a signal) as an EdgeTQSError that says so with the end of its output.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

from edgetqs.errors import EdgeTQSError
from edgetqs.model.buffer_layout import write_canonical
from edgetqs.model.card import RolloutSpec
from edgetqs.model.formats.base import Converted, source_files
from edgetqs.model.memory import LARGE_MODEL_BYTES

# Only for the child, where they cannot change anyone else's TensorFlow work. A user's own value wins.
CHILD_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "0", "MALLOC_MMAP_THRESHOLD_": str(1 << 20), "TF_CPP_MIN_LOG_LEVEL": "3"}
_TFLITE, _RESULT = "model.tflite", "result.pickle"
_OUTPUT_TAIL = 3000  # characters of a dead child's output shown to the user


class ChildConversionBug(RuntimeError):
    """A conversion failed in the child with an exception that is not an EdgeTQSError (a bug): its
    message is the child's whole traceback."""


def source_bytes(path: Path) -> int:
    """The source's size on disk: a .keras file or a SavedModel directory is mostly its weights."""
    return sum(file.stat().st_size for file in source_files(path))


def in_child(convert: Callable[[Path, RolloutSpec | None], Converted]) -> Callable[[Path, RolloutSpec | None], Converted]:
    """``convert`` (a module-level function) run in a child for large sources, or whenever this
    process has no TensorFlow loaded; in this process otherwise."""

    @functools.wraps(convert)  # still the format module's converter, wherever it runs
    def convert_maybe_in_child(path: Path, rollout: RolloutSpec | None) -> Converted:
        if source_bytes(path) >= LARGE_MODEL_BYTES or "tensorflow" not in sys.modules:
            return convert_in_child(convert, path, rollout)
        return convert(path, rollout)

    return convert_maybe_in_child


def convert_in_child(convert: Callable[[Path, RolloutSpec | None], Converted], path: Path,
                     rollout: RolloutSpec | None) -> Converted:
    """``convert(path, rollout)`` in a fresh child process."""
    target = f"{convert.__module__}:{convert.__name__}"
    spec = json.dumps(dataclasses.asdict(rollout)) if rollout is not None else ""
    package_root = str(Path(__file__).resolve().parents[3])  # where `edgetqs` is importable from
    env = {**CHILD_ENVIRONMENT, **os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="edgetqs-convert-") as tmp:
        done = subprocess.run([sys.executable, "-m", __name__, target, str(path), spec, tmp], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        result = Path(tmp) / _RESULT
        if not result.exists():
            raise _died(path, done)
        with open(result, "rb") as handle:
            outcome = pickle.load(handle)
        if "error" in outcome:
            raise _error(*outcome["error"])
        if "bug" in outcome:
            raise ChildConversionBug(f"converting {path} failed in its child process:\n{outcome['bug']}")
        return outcome["converted"]._replace(tflite=(Path(tmp) / _TFLITE).read_bytes())


def _error(module: str, name: str, problem: str, fix: str) -> EdgeTQSError:
    """The child's EdgeTQSError as the same class, problem and fix."""
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        cls = EdgeTQSError
    if not (isinstance(cls, type) and issubclass(cls, EdgeTQSError)):
        cls = EdgeTQSError
    error = cls.__new__(cls)
    EdgeTQSError.__init__(error, problem, fix)
    return error


def _died(path: Path, done: subprocess.CompletedProcess) -> EdgeTQSError:
    output = done.stdout.decode(errors="replace").strip()[-_OUTPUT_TAIL:]
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        how = f"it was killed by {name}" + (" (the system ran out of memory?)" if name == "SIGKILL" else "")
    else:
        how = f"it exited with code {done.returncode}"
    return EdgeTQSError(f"the TensorFlow conversion of {path} stopped without a result: {how}"
                        + (f"; its last output:\n{output}" if output else ""),
                        "if memory ran out, free some or convert on a machine with more; otherwise report this "
                        "model with the output above")


def _main(target: str, source: str, spec: str, out_dir: str) -> int:
    module, name = target.split(":")
    out = Path(out_dir)
    try:
        rollout = RolloutSpec(**json.loads(spec)) if spec else None
        converted = getattr(importlib.import_module(module), name)(Path(source), rollout)
        write_canonical(converted.tflite, out / _TFLITE)
        outcome = {"converted": converted._replace(tflite=b"")}
    except EdgeTQSError as exc:
        outcome = {"error": (type(exc).__module__, type(exc).__qualname__, exc.problem, exc.fix)}
    except Exception:
        outcome = {"bug": traceback.format_exc()}
    with open(out / f"{_RESULT}.partial", "wb") as handle:
        pickle.dump(outcome, handle)
    os.replace(out / f"{_RESULT}.partial", out / _RESULT)  # a child killed while writing leaves no result
    return 0 if "converted" in outcome else 1


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:5]))
