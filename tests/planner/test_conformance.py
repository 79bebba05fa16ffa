"""The conformance check really runs models in a runtime and catches wrong numbers."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert.tools import flatbuffer_utils

from edgetqs.errors import EdgeTQSError
from edgetqs.planner import conformance
from edgetqs.planner.conformance import CapabilityMatrix
from edgetqs.runtimes import CONFORMANCE_RUNTIMES, DEFAULT_HOST_RUNTIME


def test_shipped_matrix_covers_both_runtimes_and_every_op():
    matrix = CapabilityMatrix.load()
    assert {r.spec for r in CONFORMANCE_RUNTIMES} <= set(matrix.runtimes)
    for table in matrix.runtimes.values():
        assert set(conformance.OPS) <= set(table)
    assert matrix.supports(DEFAULT_HOST_RUNTIME.spec, "FULLY_CONNECTED", "dynamic", "int4")
    assert matrix.supports("tflite-runtime==2.14.0", "CONV_2D", "dynamic", "fp32")
    # found by running, not by documentation: LiteRT 1.4.0 loads blockwise int4 and computes it wrong
    cell = matrix.runtimes["ai-edge-litert==1.4.0"]["FULLY_CONNECTED"]["dynamic"]["int4_b32"]
    assert cell["status"] == "wrong" and not matrix.supports("ai-edge-litert==1.4.0", "FULLY_CONNECTED",
                                                              "dynamic", "int4_b32")
    with pytest.raises(EdgeTQSError, match="--runtime tflite-runtime==2.5.0"):
        matrix.supports("tflite-runtime==2.5.0", "CONV_2D", "dynamic", "int8")


def test_reference_matches_the_float_runtime_on_float_models():
    """The numpy references compute what LiteRT computes, op by op (float weights)."""
    from ai_edge_litert.interpreter import Interpreter

    for op in conformance.OPS:
        raw, inputs = conformance.build_float_case(op)
        interp = Interpreter(model_content=raw)
        interp.allocate_tensors()
        for detail, x in zip(interp.get_input_details(), inputs):
            interp.set_tensor(detail["index"], x)
        interp.invoke()
        y = interp.get_tensor(interp.get_output_details()[0]["index"])
        weight = conformance._float_weight(raw)
        size = weight.shape[0] if op in ("FULLY_CONNECTED", "CONV_2D") else weight.shape[-1]
        bias = None if op in ("BATCH_MATMUL", "EMBEDDING_LOOKUP") else conformance._bias(raw, size)
        ref = conformance.reference_output(op, weight, inputs, bias)
        assert np.allclose(y, ref, rtol=1e-4, atol=1e-4), op


def test_check_in_this_venv_and_a_corrupted_kernel_is_caught(tmp_path):
    cases = conformance.write_cases(tmp_path, ops=("FULLY_CONNECTED",), formats=("int8", "int4"),
                                    modes=("weight_only", "dynamic"))
    # simulate a runtime that misreads scales: double them in one model, keep its reference
    victim = tmp_path / "FULLY_CONNECTED__int4__dynamic.tflite"
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(victim.read_bytes()))
    for tensor in model.subgraphs[0].tensors:
        if tensor.quantization is not None and tensor.quantization.scale is not None:
            tensor.quantization.scale = np.asarray(tensor.quantization.scale) * 2
    victim.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    ran = conformance.run_runtime(DEFAULT_HOST_RUNTIME.spec, tmp_path, tmp_path / "envs")
    verdicts = conformance.judge(cases, ran, tmp_path)
    assert verdicts["FULLY_CONNECTED__int8__dynamic"]["status"] == "ok"
    assert verdicts["FULLY_CONNECTED__int4__weight_only"]["status"] == "ok"
    wrong = verdicts["FULLY_CONNECTED__int4__dynamic"]
    assert wrong["status"] == "wrong" and wrong["rel_error"] > 0.5


def test_unloadable_and_crashing_models_are_findings(tmp_path):
    conformance.write_cases(tmp_path, ops=("FULLY_CONNECTED",), formats=("int8",), modes=("dynamic",))
    case = tmp_path / "FULLY_CONNECTED__int8__dynamic.tflite"
    case.write_bytes(case.read_bytes()[:200])  # truncated flatbuffer
    ran = conformance.run_runtime(DEFAULT_HOST_RUNTIME.spec, tmp_path, tmp_path / "envs")
    assert ran["FULLY_CONNECTED__int8__dynamic"]["status"] in ("load_error", "crash")


@pytest.mark.slow
def test_tflite_runtime_in_a_throwaway_venv(tmp_path):
    """The command regenerates the matrix for tflite-runtime 2.14.0 in its own venv (numpy<2)."""
    if shutil.which("pip") is None and subprocess.run([sys.executable, "-m", "pip", "--version"]).returncode:
        pytest.skip("pip is not available")
    out = tmp_path / "matrix.json"
    try:
        matrix = conformance.check_runtimes(["tflite-runtime==2.14.0"], tmp_path / "envs",
                                            ops=("FULLY_CONNECTED",), formats=("int8", "int4"))
    except EdgeTQSError as exc:
        if "cannot install" in exc.problem:
            pytest.skip(f"no package registry: {exc.problem[:80]}")
        raise
    conformance.write_matrix(matrix, out)
    data = json.loads(out.read_text())
    cells = data["runtimes"]["tflite-runtime==2.14.0"]["FULLY_CONNECTED"]
    # the same verdicts the shipped matrix records for this runtime
    shipped = CapabilityMatrix.load().runtimes["tflite-runtime==2.14.0"]["FULLY_CONNECTED"]
    for mode in ("weight_only", "dynamic"):
        for fmt in ("int8", "int4"):
            assert cells[mode][fmt]["status"] == shipped[mode][fmt]["status"], (mode, fmt)


def test_shipped_matrix_has_static_results():
    """Static mode (int8 activations x int8 weights) was run, not assumed from dynamic mode."""
    matrix = CapabilityMatrix.load()
    for spec in (r.spec for r in CONFORMANCE_RUNTIMES):
        assert matrix.has_mode(spec, "static")
        for op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            assert matrix.supports(spec, op, "static", "int8"), (spec, op)
        # AEQ has no static kernels for sub-byte-int2 or blockwise weights: refused when quantizing
        cell = matrix.runtimes[spec]["FULLY_CONNECTED"]["static"]["int4_b32"]
        assert cell["status"] == "quantize_error"
        # found by running: int8 BATCH_MATMUL with a per-channel constant operand outputs zeros
        assert matrix.runtimes[spec]["BATCH_MATMUL"]["static"]["int8"]["status"] == "wrong"
    assert matrix.supports(DEFAULT_HOST_RUNTIME.spec, "FULLY_CONNECTED", "static", "int4")
    # tflite-runtime 2.14 rejects int4 weights in its int8 FULLY_CONNECTED kernel, though it runs them in dynamic mode
    assert not matrix.supports("tflite-runtime==2.14.0", "FULLY_CONNECTED", "static", "int4")
    assert matrix.supports("tflite-runtime==2.14.0", "FULLY_CONNECTED", "dynamic", "int4")


def test_static_check_runs_int8_activations_in_this_venv(tmp_path):
    """A static case is a real int8-activation model: QUANTIZE in, int8 op, DEQUANTIZE out, and it passes."""
    from edgetqs.model.tflite_graph import TFLiteGraph

    cases = conformance.write_cases(tmp_path, ops=("FULLY_CONNECTED",), formats=("int8",), modes=("static",))
    graph = TFLiteGraph.load(tmp_path / "FULLY_CONNECTED__int8__static.tflite")
    assert [op.opcode for op in graph.operators] == ["QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"]
    fc = graph.operators[1]
    assert graph.tensors[fc.inputs[0]].type_name == "INT8" and graph.tensors[fc.outputs[0]].type_name == "INT8"
    ran = conformance.run_runtime(DEFAULT_HOST_RUNTIME.spec, tmp_path, tmp_path / "envs")
    verdict = conformance.judge(cases, ran, tmp_path)["FULLY_CONNECTED__int8__static"]
    assert verdict["status"] == "ok" and 1e-4 < verdict["rel_error"] < conformance.TOLERANCE["static"]
