"""The memory a plan predicts counts the packed weight copy of the firmware's delegate (XNNPACK).

Checked against the real runner (edgetqs/remote/runner.py) on this host's LiteRT:
for a board whose firmware runs XNNPACK, the model's share of a plan's predicted
memory must cover the model's share of the runner's peak RSS, or a plan the
planner says fits is OOM-killed on the board.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tests.remote.forecast_bundle import (FEATURES, ForecasterFiles, aeq_int8_dynamic, wide_float_forecaster,
                                          write_forecast_bundle)

from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.planner import costs
from edgetqs.planner.plan import KeepFloat, make_plan
from edgetqs.planner.planfile import plan_from_dict
from edgetqs.remote.validate import RUNNER, RunOutput
from edgetqs.targets import load_target

# 2 x 2048-wide Dense layers: a 17 MB float32 file, so XNNPACK's ~16 MiB packed copy is
# far above the slack in the runtime's measured overhead (a few MiB).
WIDTH = 2048
# What is compared is the model's own share of the peak: the prediction less the runtime's
# overhead figure (edgetqs.runtimes) against the measured peak less the same runner's peak on
# a tiny model, measured in the same run. The interpreter's own resident pages depend on how
# much of its shared libraries the page cache holds (a freshly installed venv maps ~9 MiB more),
# so whole peaks are not comparable between machines; the model's share is.
UNDERSHOOT = 0.05
TINY_WIDTH = 8


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("packed") / "wide.tflite"
    path.write_bytes(wide_float_forecaster(WIDTH))
    return path


@pytest.fixture(scope="module")
def runtime_peak(tmp_path_factory):
    """The runner's peak on a tiny model: the runtime's own share, measured here and now."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    path.write_bytes(wide_float_forecaster(TINY_WIDTH))
    return _runner_peak_bytes(path, tmp_path_factory.mktemp("tiny-run"))


def _assert_models_share_predicted(plan, measured, runtime_peak):
    predicted = plan.predicted["footprint_bytes"] - plan.predicted["runtime_overhead_bytes"]
    measured -= runtime_peak
    mib = (predicted / 2**20, measured / 2**20)
    assert predicted >= (1 - UNDERSHOOT) * measured, mib
    assert predicted <= 1.25 * measured, mib  # not bought by overpricing


def _float_plan(model_path, scores_path, target):
    graph = TFLiteGraph.load(model_path)
    everything = KeepFloat(count=len(graph.operators))
    plan, _ = make_plan(graph, scores_path, target=target, budget_bytes=2**30, keep_float=everything)
    assert {a.format for a in plan.assignments} == {"fp32"}
    return plan


def _runner_peak_bytes(model_path, tmp_path, model_bytes: bytes | None = None) -> int:
    float_tflite = model_path.read_bytes()
    model_bytes = model_bytes or float_tflite
    files = ForecasterFiles(float_tflite, model_bytes, np.zeros(FEATURES, np.float32))
    bundle = write_forecast_bundle(tmp_path / "bundle", files, model_bytes=model_bytes)
    done = subprocess.run([sys.executable, str(RUNNER), "--bundle", str(bundle), "--out", str(tmp_path / "out"),
                           "--threads", "1", "--contexts", "1", "--horizon", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = RunOutput.load(tmp_path / "out").results
    assert results["runtime"]["xnnpack"] is True  # the runner ran what the firmware prices
    return results["peak_memory_kib"] * 1024


def test_a_float_plan_for_an_xnnpack_board_predicts_the_runners_peak(float_model, scores_for, tmp_path,
                                                                      runtime_peak):
    graph, scores_path = scores_for(float_model)
    target = load_target("rpi4")
    assert target.firmware.delegate == "xnnpack"
    plan = _float_plan(float_model, scores_path, target)
    _assert_models_share_predicted(plan, _runner_peak_bytes(float_model, tmp_path), runtime_peak)
    float_weights = sum(4 * t.elements for t in costs.weight_tensors(graph).values())
    assert plan.predicted["packed_weights_bytes"] >= float_weights  # XNNPACK repacks float weights whole
    assert plan.predicted["delegate"] == "xnnpack"


def test_an_int8_dynamic_plan_for_an_xnnpack_board_predicts_the_runners_peak(float_model, scores_for, tmp_path,
                                                                            runtime_peak):
    """XNNPACK packs int8 dynamic weights into a copy of their own (qd8 kernels)."""
    graph, scores_path = scores_for(float_model)
    _, problem = make_plan(graph, scores_path, target=load_target("rpi4"), budget_bytes=2**30,
                            bottom="int8", mode="dynamic")
    int8_memory = problem.fixed_memory_bytes + sum(u.memory_bytes[u.formats.index("int8")] for u in problem.units)
    plan, _ = make_plan(graph, scores_path, target=load_target("rpi4"), budget_bytes=int8_memory, bottom="int8")
    assert {a.format for a in plan.assignments} == {"int8"}
    int8_tflite = aeq_int8_dynamic(float_model.read_bytes())  # every FULLY_CONNECTED at int8, as the plan says
    assert abs(len(int8_tflite) - plan.predicted["model_bytes"]) < 0.01 * len(int8_tflite)
    _assert_models_share_predicted(plan, _runner_peak_bytes(float_model, tmp_path, int8_tflite), runtime_peak)
    assert 0 < plan.predicted["packed_weights_bytes"] < plan.predicted["model_bytes"] * 2


def test_without_a_delegate_nothing_is_packed_and_old_plans_still_read(float_model, scores_for):
    import dataclasses

    graph, scores_path = scores_for(float_model)
    target = load_target("rpi4")
    plain = dataclasses.replace(target, firmware=dataclasses.replace(target.firmware, delegate="none"))
    with_xnnpack, without = _float_plan(float_model, scores_path, target), _float_plan(float_model, scores_path, plain)
    assert without.predicted["packed_weights_bytes"] == 0
    assert (with_xnnpack.predicted["memory_bytes"] - without.predicted["memory_bytes"]
            == with_xnnpack.predicted["packed_weights_bytes"])
    old = without.to_dict()  # a plan file written before the packed copy was counted
    for key in ("packed_weights_bytes", "delegate"):
        del old["predicted"][key]
    assert plan_from_dict(old).predicted["memory_bytes"] == without.predicted["memory_bytes"]


def test_quantized_formats_pack_less_than_float():
    """XNNPACK repacks float weights whole, int8 dynamic ones into an int8 copy, int4 less (edgetqs.runtimes)."""
    from edgetqs.quant.formats import FORMATS

    t = costs.WeightTensor("w", (256, 256), "FULLY_CONNECTED", 0, True)
    packed = {name: costs.packed_copy_bytes(t, FORMATS[name], "dynamic", "xnnpack") for name in ("fp32", "int8", "int4")}
    assert packed["fp32"] > packed["int8"] > packed["int4"] > 0
    assert costs.packed_copy_bytes(t, FORMATS["fp32"], "dynamic", "none") == 0
