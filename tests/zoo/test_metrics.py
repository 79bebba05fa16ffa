"""Rollout metrics (METHOD.md §5) on cases whose answer is known by hand."""

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.metrics import anomaly_correlation, blow_up_mask, rollout_metrics, valid_prediction_time


def _reference(k=3, t=20, f=4, seed=0):
    return np.random.default_rng(seed).standard_normal((k, t, f))


def test_perfect_rollout_is_perfect():
    truth = _reference()
    m = rollout_metrics(truth.copy(), truth)
    assert m.rmse == 0 and max(m.rmse_per_step) == 0
    assert m.valid_prediction_time == [20, 20, 20]
    assert np.allclose(m.acc_per_step, 1.0)
    assert m.blow_up_fraction == 0


def test_constant_offset_gives_that_rmse_every_step():
    truth = _reference()
    m = rollout_metrics(truth + 0.5, truth)
    assert np.allclose(m.rmse_per_step, 0.5)
    assert m.rmse == pytest.approx(0.5)


def test_valid_prediction_time_is_first_step_over_threshold():
    truth = np.ones((2, 10, 1))  # RMS norm of the reference is 1
    pred = truth.copy()
    pred[0, 6:] += 0.5  # exceeds 0.4 from step index 6 on: 6 valid steps
    pred[1, 3] += 0.41  # one excursion at index 3
    assert valid_prediction_time(pred, truth).tolist() == [6, 3]
    assert valid_prediction_time(pred, truth, threshold=0.6).tolist() == [10, 10]


def test_blow_up_catches_nan_inf_and_explosion_only():
    truth = _reference(k=4)
    pred = truth.copy()
    pred[0, 5, 1] = np.nan
    pred[1, 7, 0] = np.inf
    pred[2, -1] *= 1e3  # norm explosion
    assert blow_up_mask(pred, truth).tolist() == [True, True, True, False]
    m = rollout_metrics(pred, truth)
    assert m.blow_up_fraction == 0.75
    assert np.isfinite(m.rmse)  # the finite window still gives an RMSE
    assert m.valid_prediction_time[0] <= 5


def test_anomaly_correlation_sign():
    truth = _reference()
    climatology = np.zeros(truth.shape[2])
    assert np.allclose(anomaly_correlation(-truth, truth, climatology), -1.0)
    assert np.allclose(anomaly_correlation(2 * truth, truth, climatology), 1.0)


def test_shape_mismatch_is_an_expected_error():
    with pytest.raises(EdgeTQSError, match="differ in shape"):
        rollout_metrics(np.zeros((2, 5, 3)), np.zeros((2, 6, 3)))
