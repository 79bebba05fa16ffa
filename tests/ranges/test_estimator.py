"""The estimator inside the engine: nominal coverage on Gaussian data, calibrated coverage on the stand-ins."""

import numpy as np
import pytest
from tests.ranges import standins

from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.ranges.calibration import calibrate
from edgetqs.ranges.estimator import SiteCalibration
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
from edgetqs.ranges.report import miss_rates


def test_miss_rate_on_gaussian_inputs_is_near_nominal(standin_dir):
    graph = TFLiteGraph.load(standins.build_gaussian_dense(standin_dir))
    spec = RolloutSpec(window=256, features=16, patch=256)
    engine = FakeQuantEngine(graph, spec, QuantConfig("float", 8, None, "channel"))
    alpha = beta = 2.0  # nominal two-sided miss rate 2 * P(Z > 2) = 4.55%
    for tensor in engine.sites:
        engine.estimator.sites[tensor] = SiteCalibration(alpha, beta, alpha, beta)
    x = np.random.default_rng(0).standard_normal((8, 256, 16)).astype(np.float32)
    rows = miss_rates(engine, x, horizon=1)
    first_dense = next(r for r in rows if r.op == "FULLY_CONNECTED")
    assert first_dense.rule == "closed-form"
    assert first_dense.miss_rate == pytest.approx(0.0455, abs=0.008)


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_calibrated_ranges_cover_the_calibration_windows(standin_graphs, spec, calibration_windows, granularity):
    for name, graph in standin_graphs.items():
        engine = FakeQuantEngine(graph, spec, QuantConfig("probabilistic", 8, 8, granularity))
        calibrate(engine, calibration_windows)
        engine.set_mode("float")  # the activations calibration saw (weights quantized, activations not)
        rows = miss_rates(engine, calibration_windows, horizon=1)
        assert rows, name
        # alpha/beta are the max over the calibration windows, so nothing there falls outside
        for row in rows:
            assert row.miss_rate <= 1e-3, (name, row)


def test_layers_without_a_rule_fall_back_to_the_calibration_prior(standin_graphs, spec, calibration_windows):
    engine = FakeQuantEngine(standin_graphs["attention"], spec, QuantConfig("probabilistic", 8, 8))
    calibrate(engine, calibration_windows)
    rows = miss_rates(engine, calibration_windows, horizon=1)
    rules = {r.rule for r in rows}
    assert {"closed-form", "carried", "fixed"} <= rules
    closed = [r for r in rows if r.rule == "closed-form"]
    assert len(closed) == sum(1 for op in standin_graphs["attention"].operators if op.opcode == "FULLY_CONNECTED")


def test_convolution_sampling_stride_changes_little(standin_graphs, spec, calibration_windows, test_contexts):
    graph = standin_graphs["tcn"]
    results = {}
    for stride in (1, 4):
        engine = FakeQuantEngine(graph, spec, QuantConfig("probabilistic", 8, 8), stride=stride)
        calibrate(engine, calibration_windows)
        results[stride] = {r.tensor: r.miss_rate for r in miss_rates(engine, test_contexts, horizon=1) if r.op == "CONV_2D"}
    assert results[1].keys() == results[4].keys() and len(results[1]) == 2
    for tensor in results[1]:
        assert results[4][tensor] <= results[1][tensor] + 0.05
