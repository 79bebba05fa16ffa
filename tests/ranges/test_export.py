"""Estimator-driven static int8 export: ranges file, and through the converter and its verification."""

from pathlib import Path

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.ranges.calibration import calibrate
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
from edgetqs.ranges.export import estimator_ranges, read_ranges_json, write_ranges_json


def test_ranges_cover_every_site_and_round_trip(standin_graphs, spec, calibration_windows, tmp_path):
    graph = standin_graphs["attention"]
    engine = FakeQuantEngine(graph, spec, QuantConfig("probabilistic", 8, 8))
    calibrate(engine, calibration_windows[:8])
    ranges = estimator_ranges(engine, calibration_windows[:4], horizon=3)
    assert set(ranges) == {engine.tensor_name(t) for t in engine.sites}
    for low, high in ranges.values():
        assert np.isfinite(low) and np.isfinite(high) and low <= 0.0 <= high and high > low
    path = write_ranges_json(ranges, tmp_path / "r.json", graph.sha256)
    back = read_ranges_json(path)
    assert back.keys() == ranges.keys()
    for name, (low, high) in ranges.items():
        assert back[name] == pytest.approx((low, high))
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(EdgeTQSError, match="not an edgetqs activation-range file"):
        read_ranges_json(tmp_path / "bad.json")


@pytest.mark.slow
def test_estimator_ranges_drive_a_verified_static_int8_export(tmp_path):
    """The converter's static mode with the estimator's ranges: AEQ writes them as the
    activation scales, and the converter's verification accepts the artifact."""
    from edgetqs import zoo
    from edgetqs.converter.pipeline import convert

    make_plan = _converter_plan_builder()

    model = zoo.build("mlp-sunspots")
    spec = model.rollout
    train = zoo.system_data("mlp-sunspots").train
    starts = np.linspace(0, len(train) - spec.window - 1, 8).astype(int)
    windows = np.stack([train[s : s + spec.window] for s in starts]).astype(np.float32)
    engine = FakeQuantEngine(model.graph, spec, QuantConfig("probabilistic", 8, 8))
    calibrate(engine, windows)
    ranges = estimator_ranges(engine, windows, horizon=5)

    plan = make_plan(model, ["int8"], mode="static")  # with the size prediction: verified to 1%
    out = tmp_path / "static.tflite"
    convert(model, plan, out, mode="static", activation_ranges=ranges, horizon=10, windows=8)

    exported = TFLiteGraph.load(out)
    checked = 0
    for name, (low, high) in ranges.items():
        tensor = next((t for t in exported.tensors if t.name == name), None)
        if tensor is None or tensor.type_name != "INT8" or tensor.quantization is None:
            continue  # the float model input stays float in AEQ's static export
        assert tensor.quantization.scales[0] == pytest.approx((high - low) / 255, rel=1e-3)
        checked += 1
    assert checked >= len(ranges) - 1


def _converter_plan_builder():
    """The converter tests' plan builder."""
    from tests.converter.conftest import make_plan

    return make_plan
