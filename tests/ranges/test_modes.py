"""The three activation modes on every stand-in, against the float engine."""

import numpy as np
import pytest

from edgetqs.engine import Engine
from edgetqs.ranges.calibration import calibrate
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig

MODELS = ["mlp", "tcn", "gru", "attention"]


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.mark.parametrize("name", MODELS)
def test_float_mode_without_weight_quantization_is_the_engine(standin_graphs, spec, test_contexts, name):
    graph = standin_graphs[name]
    reference = Engine(graph, spec).rollout(test_contexts, 5)
    engine = FakeQuantEngine(graph, spec, QuantConfig("float", 8, None))
    np.testing.assert_allclose(engine.rollout(test_contexts, 5), reference, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_three_modes_run_and_int8_stays_close_to_float(standin_graphs, spec, calibration_windows, test_contexts, name):
    graph = standin_graphs[name]
    reference = Engine(graph, spec).forward(test_contexts)
    scale = float(np.std(reference))
    engine = FakeQuantEngine(graph, spec, QuantConfig("static", 8, 8))
    calibrate(engine, calibration_windows)
    errors = {}
    for mode in ("static", "dynamic", "probabilistic", "hybrid"):
        engine.set_mode(mode)
        out = engine.forward(test_contexts)
        assert np.all(np.isfinite(out)), mode
        errors[mode] = rmse(out, reference)
        assert errors[mode] < 0.1 * scale, (mode, errors)
    engine.config = QuantConfig("dynamic", 4, 8)
    # 4-bit activations cost accuracy: the quantizer really acts on the activations
    assert rmse(engine.forward(test_contexts), reference) > errors["dynamic"]


@pytest.mark.parametrize("name", MODELS)
def test_dynamic_beats_static_out_of_calibration(standin_graphs, spec, calibration_windows, test_contexts, name):
    graph = standin_graphs[name]
    engine = FakeQuantEngine(graph, spec, QuantConfig("static", 8, None))
    calibrate(engine, 0.3 * calibration_windows)  # calibrated on small states, run on full-size ones
    reference = Engine(graph, spec).forward(test_contexts)
    static = rmse(engine.forward(test_contexts), reference)
    engine.set_mode("dynamic")
    dynamic = rmse(engine.forward(test_contexts), reference)
    assert dynamic <= static
    assert dynamic < 0.5 * static  # clipping at the stale static range is a large error


def test_rollout_of_every_mode_has_the_engine_shape(standin_graphs, spec, calibration_windows, test_contexts):
    engine = FakeQuantEngine(standin_graphs["gru"], spec, QuantConfig("probabilistic", 8, 8, "channel"))
    calibrate(engine, calibration_windows)
    for mode in ("float", "static", "dynamic", "probabilistic"):
        engine.set_mode(mode)
        traj = engine.rollout(test_contexts, 7)
        assert traj.shape == (len(test_contexts), 7, spec.features)
        assert np.all(np.isfinite(traj))


def test_hybrid_takes_exact_ranges_where_the_output_is_no_bigger_than_its_statistics(standin_graphs, spec,
                                                                                      calibration_windows, test_contexts):
    engine = FakeQuantEngine(standin_graphs["mlp"], spec, QuantConfig("hybrid", 8, 8))
    calibrate(engine, calibration_windows)
    small = [s for s in engine.sites if engine.is_small_site(s)]
    assert len(small) == len(engine.sites) - 1  # all but the [16, 3] input window are single vectors
    hybrid = engine.forward(test_contexts)
    engine.set_mode("dynamic")
    dynamic = engine.forward(test_contexts)
    engine.set_mode("probabilistic")
    probabilistic = engine.forward(test_contexts)
    reference = Engine(standin_graphs["mlp"], spec).forward(test_contexts)
    assert rmse(hybrid, reference) <= rmse(probabilistic, reference)
    assert rmse(hybrid, dynamic) < rmse(probabilistic, dynamic)
