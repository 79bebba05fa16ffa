"""Bad input gets a clear error and leaves nothing at the output path."""

from __future__ import annotations

import json

import pytest

from edgetqs.cli.app import main
from edgetqs.converter import convert
from edgetqs.errors import EdgeTQSError

from tests.converter.conftest import make_plan


@pytest.fixture(scope="module")
def mlp(canonical_stand_in):
    return canonical_stand_in("mlp")


def assert_nothing_written(directory):
    assert list(directory.iterdir()) == [], [p.name for p in directory.iterdir()]


def test_plan_for_another_model(mlp, canonical_stand_in, tmp_path):
    other = canonical_stand_in("conv1d")
    with pytest.raises(EdgeTQSError, match="plan was made for another model") as info:
        convert(mlp, make_plan(other, ["int8"]), tmp_path / "out")
    assert "re-run `edgetqs score`" in info.value.fix
    assert_nothing_written(tmp_path)


def test_plan_naming_tensors_the_model_lacks(mlp, tmp_path):
    plan = make_plan(mlp, ["int8"])
    plan["assignments"][0]["weight_tensors"] = ["no/such/kernel"]
    with pytest.raises(EdgeTQSError, match=r"names 1 weight tensor\(s\) that .* lacks: .*no/such/kernel"):
        convert(mlp, plan, tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_format_the_runtime_cannot_execute(mlp, tmp_path):
    """int2 weight-only: the capability matrix says LiteRT 2.3.0 cannot; lint stops it before AEQ runs."""
    with pytest.raises(EdgeTQSError, match="does not execute int2 FULLY_CONNECTED correctly in weight_only"):
        convert(mlp, make_plan(mlp, ["int2"], "weight_only"), tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_format_the_quantizer_refuses(mlp, tmp_path):
    """Blockwise int4 weights with int8 activations (static): AEQ has no such op config.

    With a runtime to lint for, the capability matrix's static results refuse it
    before AEQ runs; without one, AEQ's own refusal comes out as a clear error."""
    plan = make_plan(mlp, ["int4_b32"], "static", predicted=False)
    with pytest.raises(EdgeTQSError, match="does not execute int4_b32 FULLY_CONNECTED correctly in static mode"):
        convert(mlp, plan, tmp_path / "out.tar.gz")
    plan["runtime"] = None
    with pytest.raises(EdgeTQSError, match="AI Edge Quantizer refuses the plan in static mode"):
        convert(mlp, plan, tmp_path / "out.tar.gz")
    assert_nothing_written(tmp_path)


def test_unknown_format_and_mode(mlp, tmp_path):
    plan = make_plan(mlp, ["int8"])
    plan["assignments"][0]["format"] = "int3"
    with pytest.raises(EdgeTQSError, match="unknown weight format 'int3'"):
        convert(mlp, plan, tmp_path / "out")
    with pytest.raises(EdgeTQSError, match="unknown mode 'int8'"):
        convert(mlp, make_plan(mlp, ["int8"]), tmp_path / "out", mode="int8")
    assert_nothing_written(tmp_path)


def test_existing_output_is_kept_without_force(mlp, tmp_path):
    out = tmp_path / "model.tflite"
    out.write_bytes(b"keep me")
    with pytest.raises(EdgeTQSError, match="already exists"):
        convert(mlp, make_plan(mlp, ["int8"]), out)
    assert out.read_bytes() == b"keep me"


def test_cli_converts_and_reports_errors_without_traceback(mlp, tmp_path, capsys):
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(make_plan(mlp, ["int4", "int8"])))
    out = tmp_path / "bundle"
    code = main(["convert", str(mlp.tflite_path), "--plan", str(plan_path), "-o", str(out),
                 "--horizon", "4", "--windows", "2", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "dynamic" and (out / "manifest.json").exists()
    assert summary["verification"]["simulation_rel_error"] <= summary["verification"]["tolerance"]

    plan_path.write_text(json.dumps({"format": "edgetqs.scores", "version": 1}))
    code = main(["convert", str(mlp.tflite_path), "--plan", str(plan_path), "-o", str(tmp_path / "other")])
    err = capsys.readouterr().err
    assert code == 2 and "not an edgetqs plan" in err and "Traceback" not in err
    assert not (tmp_path / "other").exists()


def test_target_whose_runtime_computes_a_format_wrong(mlp, tmp_path):
    """jetson-nano runs tflite-runtime 2.14.0, which the capability matrix caught computing dynamic int8 FC wrong."""
    with pytest.raises(EdgeTQSError, match="tflite-runtime==2.14.0 does not execute int8 FULLY_CONNECTED correctly"):
        convert(mlp, make_plan(mlp, ["int8"]), tmp_path / "out", target="jetson-nano")
    assert_nothing_written(tmp_path)


def test_activation_ranges_outside_static_mode(mlp, tmp_path):
    with pytest.raises(EdgeTQSError, match="only static mode quantizes activations"):
        convert(mlp, make_plan(mlp, ["int8"]), tmp_path / "out", activation_ranges={"x": (0.0, 1.0)})
    assert_nothing_written(tmp_path)
