"""Float ``.tflite`` files: already the canonical form's format; intake checks them, and copies
WHILE loops with a static trip count step by step into the main graph (model/flatten_while.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import AS_GIVEN, WHILE_FLATTENED, RolloutSpec
from edgetqs.model.flatten_while import flatten_while_loops
from edgetqs.model.formats.base import Converted, random_window
from edgetqs.model.litert import run_tflite
from edgetqs.model.tflite_graph import TFLiteGraph


def convert(path: Path, rollout: RolloutSpec | None) -> Converted:
    tflite = path.read_bytes()
    graph = TFLiteGraph.from_bytes(tflite, path)  # raises for a non-flatbuffer or truncated file
    try:
        run_tflite(tflite, np.zeros(graph.input_shapes()[0], np.float32))
    except Exception as exc:
        raise EdgeTQSError(f"{path} does not run in the LiteRT interpreter ({type(exc).__name__}: {str(exc)[:200]})",
                           "re-export the model; the file may be damaged") from exc
    if not any(op.opcode == "WHILE" for op in graph.operators):  # the main subgraph's ops
        return Converted(tflite, None, None, AS_GIVEN)  # nothing to compare against: the file is its own source
    flat, trips = flatten_while_loops(tflite, path)
    window = random_window(graph.input_shapes()[0])
    return Converted(flat, None, (window, run_tflite(tflite, window, xnnpack=False)), WHILE_FLATTENED,
                     f"{len(trips)} WHILE loop(s) of {', '.join(map(str, trips))} steps (a rolled recurrent layer): "
                     "the engine, the quantizer and builtin-only boards run flat graphs")
