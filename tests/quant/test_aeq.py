"""The AI Edge Quantizer adapter runs AEQ quietly: edgetqs shows its own progress."""

from __future__ import annotations

import os

import numpy as np

from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.quant import aeq

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _long_chain() -> bytes:
    """A float model of ~120 ops: enough for AEQ to draw its calibration progress bar (100+ steps)."""
    import tensorflow as tf

    from edgetqs.planner.conformance import _concrete_tflite

    def chain(x):
        for i in range(60):
            x = tf.tanh(x) + float(i) * 0.01
        return x

    return _concrete_tflite(chain, [((1, 8), tf.float32)])


def test_static_calibration_and_export_print_nothing(capsys):
    raw = _long_chain()
    graph = TFLiteGraph.from_bytes(raw)
    assert len(graph.operators) >= 100
    recipe = aeq.build_recipe(graph, {}, "static")
    samples = [[np.full((1, 8), v, np.float32)] for v in (-1.0, 2.0)]
    calibration = aeq.calibrate(raw, recipe, samples)
    exported = aeq.export(raw, recipe, "static", calibration)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""  # no tqdm bar, no size report
    # the min/max over both samples, not AEQ's moving average of them
    first_input = graph.tensors[graph.inputs[0]].name
    assert float(calibration[first_input]["min"]) == -1.0 and float(calibration[first_input]["max"]) == 2.0
    assert any(t.type_name == "INT8" for t in TFLiteGraph.from_bytes(exported).tensors)
