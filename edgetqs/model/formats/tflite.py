"""Float ``.tflite`` files: already the canonical form's format; intake only checks them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import AS_GIVEN, RolloutSpec
from edgetqs.model.formats.base import Converted
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
    return Converted(tflite, None, None, AS_GIVEN)  # nothing to compare against: the file is its own source
