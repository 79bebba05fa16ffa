"""The on-device runner, run locally as a separate process on a real bundle."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tests.remote.forecast_bundle import CONTEXTS, FEATURES, HORIZON, build_forecaster, write_forecast_bundle

from edgetqs.bundle import load_bundle
from edgetqs.remote import runner
from edgetqs.remote.validate import RUNNER, RunOutput
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_forecast_bundle(tmp_path_factory.mktemp("runner") / "bundle", build_forecaster())


def run_runner(bundle, out, *extra):
    return subprocess.run([sys.executable, str(RUNNER), "--bundle", str(bundle), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300)


def test_runner_streams_progress_and_writes_results(bundle, tmp_path):
    done = run_runner(bundle, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["runtime", "probes"] + ["rollout"] * CONTEXTS + ["done"]
    runtime = events[0]
    assert (runtime["name"], runtime["version"], runtime["xnnpack"]) == (DEFAULT_HOST_RUNTIME.module, DEFAULT_HOST_RUNTIME.version, True)

    run = RunOutput.load(tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.partial"))
    results = run.results
    assert results["model_sha256"] == load_bundle(bundle).model_sha256
    assert results["probes"]["count"] == 4 and results["probes"]["normalised"] < 1e-6
    latency = results["latency_ms"]
    assert latency["count"] == CONTEXTS * HORIZON == len(run.latency_seconds)
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert results["peak_memory_kib"] > 10_000  # the interpreter and numpy are resident
    assert results["board"]["machine"] == "x86_64" and results["board"]["cpus"] >= 1
    assert set(results["thermal"]["after"]) == {"thermal_zones_c", "vcgencmd_temp", "vcgencmd_throttled",
                                                 "throttled_flags", "tegrastats"}


def test_runner_trajectories_are_the_hosts_rollouts(bundle, tmp_path):
    assert run_runner(bundle, tmp_path / "out").returncode == 0
    run = RunOutput.load(tmp_path / "out")
    reference_host = load_bundle(bundle).contexts["reference_host"]
    assert run.trajectories.shape == (CONTEXTS, HORIZON, FEATURES)
    np.testing.assert_array_equal(run.trajectories, reference_host)  # same runtime, same CPU, same code


def test_runner_limits_contexts_and_horizon_and_can_skip_xnnpack(bundle, tmp_path):
    done = run_runner(bundle, tmp_path / "out", "--contexts", "2", "--horizon", "5", "--no-xnnpack", "--threads", "1")
    assert done.returncode == 0, done.stderr
    run = RunOutput.load(tmp_path / "out")
    assert run.trajectories.shape == (2, 5, FEATURES)
    assert run.results["runtime"]["xnnpack"] is False and run.results["runtime"]["threads"] == 1
    reference_host = load_bundle(bundle).contexts["reference_host"][:2, :5]
    # Without XNNPACK the reference kernels quantize activations their own way:
    # close to the XNNPACK run (~1% in dynamic mode), not equal.
    difference = np.abs(run.trajectories - reference_host).max()
    assert 0 < difference < 0.03


def test_runner_says_which_runtime_is_missing(bundle, tmp_path):
    done = run_runner(bundle, tmp_path / "out", "--runtime", "tflite_runtime")
    assert done.returncode != 0
    assert "no TFLite runtime found" in done.stderr and "tflite_runtime" in done.stderr
    assert not (tmp_path / "out" / runner.RESULTS_JSON).exists()


def test_append_shift_rollout_with_patches():
    # A "model" that continues the window's last value by +1 per step, 3 steps a call.
    def count_on(window):
        return window[-1] + np.arange(1, 4, dtype=np.float32)[:, None]

    context = np.arange(6, dtype=np.float32)[:, None]  # window 6, one feature: 0..5
    trajectory, latencies = runner.rollout(count_on, context, horizon=7, patch=3)
    assert trajectory[:, 0].tolist() == [6, 7, 8, 9, 10, 11, 12]  # 3 calls, the last patch cut at the horizon
    assert len(latencies) == 3


def test_runner_keeps_to_python_3_8_syntax():
    # JetPack 5 boards have Python 3.8: the runner must parse there.
    ast.parse(RUNNER.read_text(), feature_version=(3, 8))
    imports = {node.names[0].name.split(".")[0] for node in ast.walk(ast.parse(RUNNER.read_text()))
               if isinstance(node, ast.Import)}
    assert "edgetqs" not in imports and imports <= set(sys.stdlib_module_names) | {"numpy", "tflite_runtime", "tensorflow"}


def test_runner_reads_the_boards_thermal_tools(bundle, tmp_path):
    # No Raspberry Pi or Jetson firmware tools exist on this machine, so stand-ins
    # print what they print on a board; tegrastats, like the real one, never stops.
    tools = tmp_path / "bin"
    tools.mkdir()
    scripts = {
        "vcgencmd": 'case "$1" in measure_temp) echo "temp=61.3\'C";; get_throttled) echo "throttled=0x50005";; esac',
        "tegrastats": 'while true; do echo "RAM 1432/7772MB CPU [12%@1190,8%@1190] cpu@48.5C"; sleep 0.2; done',
    }
    for name, body in scripts.items():
        (tools / name).write_text(f"#!/bin/sh\n{body}\n")
        (tools / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{tools}:{os.environ['PATH']}")
    done = subprocess.run([sys.executable, str(RUNNER), "--bundle", str(bundle), "--out", str(tmp_path / "out"),
                           "--contexts", "1", "--horizon", "2"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    thermal = RunOutput.load(tmp_path / "out").results["thermal"]["after"]
    assert thermal["vcgencmd_temp"] == "temp=61.3'C"
    assert thermal["throttled_flags"] == ["under-voltage", "throttled", "under-voltage occurred", "throttling occurred"]
    assert thermal["tegrastats"].startswith("RAM 1432/7772MB")  # the first line, then stopped


def test_throttled_bits_are_named():
    assert runner.decode_throttled("throttled=0x0") == []
    assert runner.decode_throttled("throttled=0x80008") == ["soft temperature limit", "soft temperature limit occurred"]
    assert runner.decode_throttled("error=1") is None and runner.decode_throttled(None) is None


@pytest.mark.slow  # imports TensorFlow in the runner process
def test_runner_uses_tensorflow_lite_where_that_is_the_runtime(bundle, tmp_path):
    done = run_runner(bundle, tmp_path / "out", "--runtime", "tensorflow", "--contexts", "1", "--horizon", "3")
    assert done.returncode == 0, done.stderr
    results = RunOutput.load(tmp_path / "out").results
    assert results["runtime"]["name"] == "tensorflow" and results["runtime"]["version"].startswith("2.")
    assert results["probes"]["normalised"] < 0.03  # TF's own TFLite build: same ops, its own kernels


def test_runner_feeds_patches_back_as_the_host_does(tmp_path):
    files = build_forecaster(patch=2)
    bundle = write_forecast_bundle(tmp_path / "bundle", files)
    assert run_runner(bundle, tmp_path / "out").returncode == 0
    run = RunOutput.load(tmp_path / "out")
    assert run.trajectories.shape == (CONTEXTS, HORIZON, FEATURES)
    assert run.results["latency_ms"]["count"] == CONTEXTS * HORIZON // 2  # one call per 2 steps

    # The same rollout written out by hand: append both steps, drop the oldest two.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=files.int8_tflite)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    window = load_bundle(bundle).contexts["contexts"][0].copy()
    expected = []
    for _ in range(HORIZON // 2):
        interpreter.set_tensor(inp["index"], window[None])
        interpreter.invoke()
        steps = interpreter.get_tensor(out["index"])[0]  # [2, features]
        expected.extend(steps)
        window = np.concatenate([window[2:], steps])
    np.testing.assert_array_equal(run.trajectories[0], np.stack(expected))
