"""`validate` over real SSH (the sshd board): flash, run the runner there, judge on the host."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
from tests.remote.forecast_bundle import CONTEXTS, HORIZON, build_forecaster, tamper_output_bias, write_forecast_bundle

from edgetqs.bundle import load_bundle
from edgetqs.errors import EdgeTQSError
from edgetqs.remote.flash import flash
from edgetqs.remote.transport import Transport
from edgetqs.remote.validate import judge, run_locally, validate

# The sshd board is this machine: its Python is the one running the tests.
BOARD_PYTHON = sys.executable


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_forecast_bundle(tmp_path_factory.mktemp("validate") / "bundle", build_forecaster())


def test_honest_board_passes_and_the_verdict_is_saved(sshd_board, bundle, tmp_path):
    events = []
    with Transport(sshd_board.connection()) as t:
        flash(t, bundle)
        result = validate(t, bundle, tmp_path / "v", python=BOARD_PYTHON, on_event=events.append)
    assert result.passed, result.message()
    assert [e["event"] for e in events][:2] == ["runtime", "probes"] and events[-1]["event"] == "done"
    assert result.board.trajectories.shape == (CONTEXTS, HORIZON, 3)
    assert result.vs_host.rmse == 0.0  # the same runtime on the same CPU
    assert result.host_vs_bundle_reference == 0.0  # and this host reproduces the bundle's references
    saved = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert saved["passed"] is True and len(saved["checks"]) == 5
    assert saved["runtime"]["name"] == "ai_edge_litert" and saved["latency_ms"]["p99"] > 0
    assert not list((sshd_board.root / "runs").iterdir())  # the run directory is cleaned up on the board


def test_board_computing_different_numbers_fails_and_says_so(sshd_board, bundle, tmp_path):
    files = build_forecaster()
    with Transport(sshd_board.connection()) as t:
        flash(t, bundle)
        # The model on the board changes after flashing (a bad copy, a bad port):
        # the board's runtime now runs it and computes other numbers than the host.
        tamper_output_bias(sshd_board.root / "current" / "model.tflite", files)
        result = validate(t, bundle, tmp_path / "v", python=BOARD_PYTHON)
    assert not result.passed
    failed = {check.name: check.detail for check in result.failures}
    assert "runtime computes the host's numbers (probes)" in failed
    assert "computes different numbers than the host" in failed["runtime computes the host's numbers (probes)"]
    assert "computes different numbers than the host" in failed["runtime computes the host's numbers (rollout step 1)"]
    assert "is not this bundle's" in failed["model on the board is the bundle's"]
    assert result.message().startswith("FAIL: sshd-board")


def test_validate_fetches_the_boards_bundle_when_none_is_given(sshd_board, bundle, tmp_path):
    with Transport(sshd_board.connection()) as t:
        flash(t, bundle)
        result = validate(t, None, tmp_path / "v", python=BOARD_PYTHON, contexts=2, horizon=4)
    assert result.passed, result.message()
    assert result.board.trajectories.shape == (2, 4, 3)
    assert load_bundle(tmp_path / "v" / "bundle").model_sha256 == load_bundle(bundle).model_sha256


def test_board_without_a_model_is_told_to_flash(sshd_board, tmp_path):
    with Transport(sshd_board.connection()) as t, pytest.raises(EdgeTQSError, match="no current model") as err:
        validate(t, None, tmp_path / "v", python=BOARD_PYTHON)
    assert "edgetqs flash" in err.value.fix


def test_board_without_the_runtime_fails_with_the_runners_message(sshd_board, bundle, tmp_path):
    # Debian's own python3 on this machine has neither numpy nor LiteRT.
    with Transport(sshd_board.connection()) as t:
        flash(t, bundle)
        with pytest.raises(EdgeTQSError, match="the runner failed on sshd-board") as err:
            validate(t, bundle, tmp_path / "v", python="/usr/bin/python3")
    assert "provision" in err.value.fix


def test_blow_ups_and_short_forecasts_fail(bundle, tmp_path):
    loaded = load_bundle(bundle)
    host = run_locally(bundle, tmp_path / "host")
    # The board's rollouts leave the attractor from step 3 of the first window on.
    exploded = host.trajectories.copy()
    exploded[0, 3:] = np.inf
    board = dataclasses.replace(host, trajectories=exploded)
    result = judge(loaded, board, host)
    failed = {check.name for check in result.failures}
    assert failed == {"no blow-up", "forecast quality vs the float model"}
    assert result.vs_float.blown_up == [True, False, False]


    # Off the float model's path from step 5 on (no blow-up): the forecast is too short.
    drifted = host.trajectories.copy()
    drifted[:, 5:] += 2.0
    short = dataclasses.replace(host, trajectories=drifted)
    verdict = judge(loaded, short, host)
    assert [c.name for c in verdict.failures] == ["forecast quality vs the float model"]
    assert verdict.vs_float.mean_valid_prediction_time == 5 and "the host's run" in verdict.failures[0].detail
    with_threshold = dataclasses.replace(loaded, manifest=dict(loaded.manifest, thresholds={"min_valid_prediction_time": 6}))
    assert "the bundle's threshold" in judge(with_threshold, short, host).failures[0].detail
    assert judge(with_threshold, host, host).passed


def test_validate_runs_the_runner_flashed_into_the_slot(sshd_board, bundle, tmp_path):
    """Flash puts runner.py into every slot; validate runs that one, not a fresh copy of its own."""
    events = []
    with Transport(sshd_board.connection()) as t:
        flash(t, bundle)
        slot_runner = sshd_board.root / "current" / "runner.py"
        marked = slot_runner.read_text().replace("def main(argv=None):\n", "def main(argv=None):\n    emit(\"slot-runner\")\n")
        slot_runner.write_text(marked)
        result = validate(t, bundle, tmp_path / "v", python=BOARD_PYTHON, contexts=1, horizon=3,
                          on_event=events.append)
        assert result.passed, result.message()
        assert events[0]["event"] == "slot-runner"
        slot_runner.unlink()  # a slot flashed before the runner travelled with the model
        with pytest.raises(EdgeTQSError, match="has no runner.py") as err:
            validate(t, bundle, tmp_path / "v2", python=BOARD_PYTHON)
    assert "edgetqs flash" in err.value.fix


def test_the_probe_verdict_is_the_runners_agreement(bundle, tmp_path):
    """The runner measures probe agreement on the board; validate judges by that measurement."""
    loaded = load_bundle(bundle)
    host = run_locally(bundle, tmp_path / "host", contexts=2, horizon=4)
    assert host.results["probes"]["count"] == len(loaded.probes["y"])
    off = dict(host.results["probes"], max_abs=0.5, normalised=0.2)
    board = dataclasses.replace(host, results=dict(host.results, probes=off))
    failed = {c.name: c.detail for c in judge(loaded, board, host).failures}
    assert list(failed) == ["runtime computes the host's numbers (probes)"] and "2.00e-01" in failed[
        "runtime computes the host's numbers (probes)"]
    miscounted = dataclasses.replace(host, results=dict(host.results, probes=dict(off, count=1, normalised=0.0)))
    assert "not this bundle's" in judge(loaded, miscounted, host).failures[0].detail
