"""Conversion end to end: zoo and stand-in models under uniform int8, uniform
int4 and mixed plans, each artifact verified (types, size vs the planner's
prediction, LiteRT run, agreement with the engine's simulation) and bundled."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.bundle import load_bundle
from edgetqs.converter import convert
from edgetqs.engine.litert import LiteRTRunner
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

from tests.converter.conftest import make_plan

PLANS = {"int8": ["int8"], "int4": ["int4"], "mixed": ["int4", "int8", "fp16"]}
EXPECTED_TYPE = {"int8": "INT8", "int4": "INT4", "fp16": "FLOAT16"}

ZOO_MODELS = ["mlp-sunspots", "tcn-lorenz96", "gru-lorenz96", "transformer-lorenz96"]


def exported_types(model_path, tensors) -> dict[str, str]:
    graph = TFLiteGraph.load(model_path)
    return {name: next(t.type_name for t in graph.tensors if t.name == name and t.is_constant) for name in tensors}


def check_bundle(path, plan, canonical, mode):
    bundle = load_bundle(path)
    manifest = bundle.manifest
    assert manifest["source_model_sha256"] == canonical.graph.sha256
    assert manifest["plan"]["assignments"] == plan["assignments"]
    assert manifest["rollout"]["window"] == canonical.rollout.window
    # Every planned quantizable weight has the planned type in the shipped model.
    verified = manifest["extra"]["verification"]["tensors"]
    types = exported_types(bundle.model_path, verified)
    formats = manifest["formats"]
    for name, type_name in types.items():
        assert type_name == EXPECTED_TYPE[formats[name]], (name, formats[name], verified[name])
    # The probe outputs are what host LiteRT computes with this very file.
    runner = LiteRTRunner(bundle.model_path, canonical.rollout)
    np.testing.assert_allclose(runner.forward(bundle.probes["x"]), bundle.probes["y"], rtol=1e-5, atol=1e-6)
    # References: the host rollout of this model, the float model, same contexts.
    contexts = bundle.contexts
    np.testing.assert_allclose(runner.rollout(contexts["contexts"], bundle.horizon), contexts["reference_host"],
                               rtol=1e-4, atol=1e-5)
    assert contexts["reference_float"].shape == contexts["reference_host"].shape
    assert bundle.thresholds["probe_tolerance"] > 0 and bundle.thresholds["min_valid_prediction_time"] >= 0
    assert bundle.runtime["verified_on_host"] == DEFAULT_HOST_RUNTIME.spec
    assert DEFAULT_HOST_RUNTIME.spec in bundle.runtime["runtimes"]  # the matrix covers every mode, static too
    assert manifest["extra"]["verification"]["simulation_rel_error"] <= manifest["extra"]["verification"]["tolerance"]
    return bundle


@pytest.mark.slow
@pytest.mark.parametrize("plan_name", list(PLANS))
@pytest.mark.parametrize("model_name", ZOO_MODELS)
def test_zoo_model_converts_and_verifies(zoo_model, tmp_path, model_name, plan_name):
    canonical = zoo_model(model_name)
    plan = make_plan(canonical, PLANS[plan_name], "dynamic")
    result = convert(canonical, plan, tmp_path / "bundle", horizon=8, windows=4)
    assert result.model_bytes < result.float_bytes
    assert abs(result.model_bytes - plan["predicted"]["model_bytes"]) <= 0.01 * plan["predicted"]["model_bytes"]
    check_bundle(tmp_path / "bundle", plan, canonical, "dynamic")


@pytest.mark.parametrize("mode", ["weight_only", "dynamic", "static"])
def test_modes_on_a_keras_zoo_model(zoo_model, tmp_path, mode):
    canonical = zoo_model("mlp-sunspots")
    assert canonical.card.source_format == "keras"
    # Every mode carries the size prediction, which verification holds to 1%.
    plan = make_plan(canonical, PLANS["mixed"], mode)
    result = convert(canonical, plan, tmp_path / "bundle.tar.gz", mode=mode, horizon=8, windows=4)
    bundle = check_bundle(result.out, plan, canonical, mode)
    graph = TFLiteGraph.load(bundle.model_path)
    opcodes = {op.opcode for op in graph.operators}
    if mode == "weight_only":
        assert "DEQUANTIZE" in opcodes and "QUANTIZE" not in opcodes
    if mode == "static":
        assert "QUANTIZE" in opcodes  # float input quantized to int8 activations
        activations = [t for t in graph.tensors if not t.is_constant and t.type_name == "INT8"]
        assert activations, "static mode must leave int8 activations"


def test_onnx_zoo_model(zoo_model, tmp_path):
    canonical = zoo_model("mlp-sunspots-onnx")
    assert canonical.card.source_format == "onnx"
    plan = make_plan(canonical, PLANS["int4"])
    convert(canonical, plan, tmp_path / "bundle", horizon=8, windows=4)
    check_bundle(tmp_path / "bundle", plan, canonical, "dynamic")


@pytest.mark.parametrize("kind", ["mlp", "conv1d", "attention"])
def test_float_tflite_stand_ins_by_path(canonical_stand_in, tmp_path, kind):
    """A float .tflite given as a path goes through intake; int8 plans verify on MLP, Conv1D and attention."""
    canonical = canonical_stand_in(kind)
    plan = make_plan(canonical, PLANS["int8"])
    result = convert(canonical, plan, tmp_path / "model.tflite", horizon=4, windows=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]
    types = exported_types(result.out, result.verification.tensors)
    assert set(types.values()) == {"INT8"}
    if kind == "conv1d":  # the conv bias is planned int8 but LiteRT keeps biases float: reported, not hidden
        bias = canonical.card.layers[0].weight_tensors[1]
        assert any(f.tensor == bias and "stays float" in f.message and "bias" in f.message for f in result.findings)
        assert result.verification.stayed_float == [bias]
    else:
        assert result.verification.stayed_float == []


def test_runtime_requirement_follows_the_capability_matrix(canonical_stand_in, tmp_path):
    """The manifest lists exactly the runtimes the matrix says execute every quantized op of the model."""
    from edgetqs.planner.conformance import CapabilityMatrix

    matrix = CapabilityMatrix.load()
    canonical = canonical_stand_in("mlp")
    for formats in (["int4"], ["int8"]):
        convert(canonical, make_plan(canonical, formats), tmp_path / formats[0], horizon=4, windows=2)
        runtime = load_bundle(tmp_path / formats[0]).runtime
        expected = [spec for spec in matrix.runtimes if matrix.supports(spec, "FULLY_CONNECTED", "dynamic", formats[0])]
        assert runtime["runtimes"] == expected
        assert runtime["needs"] == [{"op": "FULLY_CONNECTED", "format": formats[0]}]


def test_patch_model_bundle_holds_horizon_times_patch_steps(zoo_model, tmp_path):
    """A model emitting 4 steps per call: references hold horizon x patch steps, probes a whole patch each."""
    canonical = zoo_model("mlp-lorenz96-patch4")
    spec = canonical.rollout
    assert spec.patch == 4
    plan = make_plan(canonical, PLANS["mixed"])
    convert(canonical, plan, tmp_path / "bundle", horizon=5, windows=3)
    bundle = check_bundle(tmp_path / "bundle", plan, canonical, "dynamic")
    assert bundle.contexts["reference_host"].shape == (3, 5 * spec.patch, spec.features)
    assert bundle.probes["y"].shape == (6, spec.patch, spec.features)
