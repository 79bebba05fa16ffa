"""Bad inputs give EdgeTQSError naming the problem and the fix."""

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.ranges.calibration import calibrate
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
from edgetqs.ranges.export import estimator_ranges


@pytest.fixture()
def engine(standin_graphs, spec):
    return FakeQuantEngine(standin_graphs["mlp"], spec, QuantConfig("probabilistic", 8, 8))


def test_nan_calibration_window_is_refused(engine, calibration_windows):
    bad = calibration_windows.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(EdgeTQSError, match="NaN") as err:
        calibrate(engine, bad)
    assert "fix" in str(err.value)


def test_empty_calibration_set_is_refused(engine, spec):
    with pytest.raises(EdgeTQSError, match="empty"):
        calibrate(engine, np.zeros((0, spec.window, spec.features), np.float32))


def test_static_mode_needs_calibration(standin_graphs, spec, test_contexts):
    engine = FakeQuantEngine(standin_graphs["mlp"], spec, QuantConfig("static", 8, 8))
    with pytest.raises(EdgeTQSError, match="not calibrated"):
        engine.forward(test_contexts)


def test_export_needs_calibration_and_finite_contexts(engine, test_contexts, calibration_windows):
    with pytest.raises(EdgeTQSError, match="not calibrated"):
        estimator_ranges(engine, test_contexts)
    calibrate(engine, calibration_windows)
    bad = test_contexts.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(EdgeTQSError, match="NaN or inf"):
        estimator_ranges(engine, bad)


@pytest.mark.parametrize("config", [QuantConfig("median"), QuantConfig("dynamic", 1), QuantConfig("dynamic", 8, 8, "row")])
def test_bad_configuration_is_refused(standin_graphs, spec, config):
    with pytest.raises(EdgeTQSError):
        FakeQuantEngine(standin_graphs["mlp"], spec, config)


def test_wrong_window_shape_is_refused(engine):
    with pytest.raises(EdgeTQSError, match="wants"):
        engine.forward(np.zeros((2, 5, 3), np.float32))
