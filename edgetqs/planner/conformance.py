"""The capability matrix: which (op, weight format, mode) each TFLite runtime
*executes correctly*, decided by running them, not by documentation.

For every case a tiny float model with one weighted op is built, quantized by
AI Edge Quantizer, run in the runtime under test, and compared with a numpy
reference computed from the *same dequantized weights* read back from the
quantized flatbuffer. A cell is "ok" only if the model loads, runs and the
relative error is within tolerance; a runtime that loads a model and computes
wrong numbers gets "wrong" and the planner never offers that format.

Each runtime runs in its own throwaway venv (tflite-runtime needs numpy<2),
through the self-contained ``conformance_runner.py``. Regenerate with::

    python -m edgetqs.planner.conformance      # the runtimes in edgetqs.runtimes.CONFORMANCE_RUNTIMES
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, write_json
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.quant import aeq
from edgetqs.quant.formats import FORMATS
from edgetqs.quant.modes import MODE_NAMES as MODES, Mode
from edgetqs.quant.ops import CONFORMANCE_OPS, ConformanceCase, op_spec
from edgetqs.runtimes import CONFORMANCE_RUNTIMES, DEFAULT_HOST_RUNTIME, RuntimeSpec

MATRIX_PATH = Path(__file__).parent / "data" / "capability_matrix.json"
RUNNER = Path(__file__).with_name("conformance_runner.py")
OPS = CONFORMANCE_OPS  # the ops whose description (edgetqs.quant.ops) has a conformance case
CHECKED_FORMATS = tuple(name for name in FORMATS if name != "fp32")  # fp32 runs everywhere
# Relative L2 error allowed. Weight-only computes in float with the same weights:
# only summation order differs. Dynamic range also quantizes activations to int8
# on the fly (~0.5% error); static quantizes input and output to int8 with ranges
# calibrated on the very inputs checked (~1%); a wrong kernel (bad unpacking,
# ignored scales) is O(1).
TOLERANCE = {"weight_only": 1e-4, "dynamic": 0.03, "static": 0.05}


# -- tiny models ------------------------------------------------------------
def _keras_tflite(build) -> bytes:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    model = build(tf)
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _concrete_tflite(fn, specs) -> bytes:
    """Through a SavedModel, so the .tflite keeps a serving signature (static-mode calibration needs one)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    module = tf.Module()
    module.call = tf.function(fn, input_signature=[tf.TensorSpec(s, d) for s, d in specs])
    with tempfile.TemporaryDirectory(prefix="edgetqs-conformance-model-") as saved:
        tf.saved_model.save(module, saved, signatures=module.call)
        return tf.lite.TFLiteConverter.from_saved_model(saved).convert()


def build_float_case(op: str) -> tuple[bytes, list[np.ndarray]]:
    """A float .tflite whose one weighted op is ``op`` (its conformance case in edgetqs.quant.ops), and inputs."""
    case = _case(op)
    rng = np.random.default_rng(0)
    if case.keras_layer is not None:
        raw = _keras_tflite(lambda tf: tf.keras.Sequential([tf.keras.Input(case.input_shape[1:],
                                                                           batch_size=case.input_shape[0]),
                                                            case.keras_layer(tf)]))
    else:
        raw = _function_tflite(op, case, rng.standard_normal(case.weight_shape).astype(np.float32))
    x = case.sample(rng) if case.sample else rng.standard_normal(case.input_shape).astype(np.float32)
    return raw, [x]


def _case(op: str) -> ConformanceCase:
    case = op_spec(op).conformance
    if case is None:
        raise EdgeTQSError(f"no conformance case for op '{op}'", f"use one of: {', '.join(OPS)}")
    return case


def _function_tflite(op: str, case: ConformanceCase, weight: np.ndarray) -> bytes:
    import tensorflow as tf

    raw = _concrete_tflite(case.function(tf, weight), [(case.input_shape, getattr(tf, case.input_dtype))])
    return _rewritten(raw, case.rewrite_from, op) if case.rewrite_from else raw


def _rewritten(raw: bytes, source_op: str, op: str) -> bytes:
    """TF emits ``source_op`` (a GATHER for an embedding lookup): rewrite it into ``op``, swapping its two inputs."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(raw))
    source, target = getattr(schema.BuiltinOperator, source_op), getattr(schema.BuiltinOperator, op)
    for o in model.subgraphs[0].operators:
        code = model.operatorCodes[o.opcodeIndex]
        if flatbuffer_utils.get_builtin_code_from_operator_code(code) == source:
            code.builtinCode = code.deprecatedBuiltinCode = target
            o.inputs = [o.inputs[1], o.inputs[0]]
            o.builtinOptionsType, o.builtinOptions = 0, None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# -- reading quantized weights back -----------------------------------------
def dequantized_weight(model_bytes: bytes) -> np.ndarray:
    """The one quantized (or fp16) weight of a conformance model, as float32."""
    graph = TFLiteGraph.from_bytes(model_bytes)
    for t in graph.tensors:
        if t.data is None or t.name.endswith("_scales"):  # a blockwise weight's fp16 scales are not the weight
            continue
        if t.type_name in ("FLOAT16", "INT8", "INT4", "INT2"):
            return graph.float_constant(t)
    raise EdgeTQSError("the quantized conformance model has no quantized weight", "this is a bug in the check")


def _op_input(model_bytes: bytes, position: int) -> np.ndarray | None:
    """Input ``position`` of the model's one weighted op, if it is a constant."""
    graph = TFLiteGraph.from_bytes(model_bytes)
    op = next(o for o in graph.operators if o.opcode in OPS)
    if position >= len(op.inputs) or op.inputs[position] < 0:
        return None
    return graph.tensors[op.inputs[position]].data


def _float_weight(model_bytes: bytes) -> np.ndarray:
    return _op_input(model_bytes, 1).astype(np.float32)


def _bias(model_bytes: bytes, size: int) -> np.ndarray:
    bias = _op_input(model_bytes, 2)
    return np.zeros(size, np.float32) if bias is None else bias.astype(np.float32)


def reference_output(op: str, weight: np.ndarray, inputs: list[np.ndarray], bias: np.ndarray | None = None) -> np.ndarray:
    """What the op must compute with these (dequantized) weights, in float64 numpy."""
    x = inputs[0] if inputs[0].dtype.kind == "i" else inputs[0].astype(np.float64)
    y = _case(op).reference(x, weight.astype(np.float64))
    return y + bias if bias is not None else y


# -- building the cases ------------------------------------------------------
def _op_weight_name(model_bytes: bytes, op: str) -> str:
    graph = TFLiteGraph.from_bytes(model_bytes)
    for o in graph.operators:
        if o.opcode == op and aeq.weight_tensor_of(graph, o):
            return aeq.weight_tensor_of(graph, o)
    raise EdgeTQSError(f"the {op} conformance model has no {op} op with a weight (the converter rewrote it)",
                       "adjust its conformance case in edgetqs/quant/ops.py")


def quantize_case(float_model: bytes, formats: dict[str, str], mode: str, inputs: list[np.ndarray]) -> bytes:
    """The case quantized as the converter quantizes: its recipe, calibrated on ``inputs`` in static mode."""
    recipe = aeq.build_recipe(TFLiteGraph.from_bytes(float_model), formats, mode)
    calibration = aeq.calibrate(float_model, recipe, [inputs]) if Mode(mode).quantizes_activations else None
    return aeq.export(float_model, recipe, mode, calibration)


def write_cases(directory: Path, ops=OPS, formats=CHECKED_FORMATS, modes=MODES) -> dict[str, dict]:
    """Quantize every (op, format, mode) into ``directory``; returns what each case expects."""
    cases: dict[str, dict] = {}
    for op in ops:
        float_model, inputs = build_float_case(op)
        weight_name = _op_weight_name(float_model, op)
        bias_axis = _case(op).bias_axis
        bias = None if bias_axis is None else _bias(float_model, _float_weight(float_model).shape[bias_axis])
        for mode in modes:
            for fmt_name in formats:
                if fmt_name == "fp16" and mode != "weight_only":
                    continue  # fp16 is always a float cast + DEQUANTIZE: one case covers it
                case = f"{op}__{fmt_name}__{mode}"
                entry = {"op": op, "format": fmt_name, "mode": mode}
                try:
                    quantized = quantize_case(float_model, {weight_name: fmt_name}, mode, inputs)
                    weight = dequantized_weight(quantized)
                except Exception as exc:  # AEQ refusing a combination is a finding
                    entry.update(status="quantize_error", error=f"{type(exc).__name__}: {exc}"[:300])
                    cases[case] = entry
                    continue
                (directory / f"{case}.tflite").write_bytes(quantized)
                np.savez(directory / f"{case}.npz", **{f"x{i}": x for i, x in enumerate(inputs)})
                np.save(directory / f"{case}.ref.npy", reference_output(op, weight, inputs, bias))
                cases[case] = entry
    return cases


# -- running a runtime ------------------------------------------------------
def runtime_python(spec: str, envs_dir: Path) -> Path:
    """A Python that has ``spec`` installed: this venv if it already has it, else a throwaway venv."""
    runtime = RuntimeSpec.parse(spec)
    # only the host runtime's own package: its numpy is this venv's (tflite-runtime's would clash)
    if runtime.package == DEFAULT_HOST_RUNTIME.package and _installed_version(runtime.package) == runtime.version:
        return Path(sys.executable)
    env = envs_dir / spec.replace("==", "-")
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", spec, runtime.numpy_requirement],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise EdgeTQSError(f"cannot install {spec} in a throwaway venv: {result.stderr.strip()[-400:]}",
                               "check the package name and version exist for this Python and architecture")
    return python


def _installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_runtime(spec: str, directory: Path, envs_dir: Path) -> dict:
    """Case -> runner result; one process per case so a crashing kernel is one finding."""
    python = runtime_python(spec, envs_dir)
    results = {}
    for model in sorted(directory.glob("*.tflite")):
        case = model.stem
        result_file = model.with_suffix(".result.json")
        result_file.unlink(missing_ok=True)
        proc = subprocess.run([str(python), str(RUNNER), str(directory), case], capture_output=True, text=True)
        if proc.returncode != 0 or not result_file.exists():
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            results[case] = {"status": "crash", "error": f"exit code {proc.returncode}: {tail[0][:200]}"}
        else:
            results[case] = json.loads(result_file.read_text())
    return results


def judge(cases: dict[str, dict], ran: dict, directory: Path) -> dict:
    """Case -> status ('ok', 'wrong', 'load_error', 'run_error', 'crash', 'quantize_error') and error."""
    verdicts = {}
    for case, entry in cases.items():
        verdict = {k: entry[k] for k in ("op", "format", "mode")}
        if entry.get("status") == "quantize_error":
            verdict.update(status="quantize_error", error=entry["error"])
        elif ran[case]["status"] != "ran":
            verdict.update(status=ran[case]["status"], error=ran[case]["error"])
        else:
            y = np.load(directory / f"{case}.out.npz")["y"].astype(np.float64)
            ref = np.load(directory / f"{case}.ref.npy")
            rel = float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-12)) if y.shape == ref.shape else float("inf")
            ok = rel <= TOLERANCE[entry["mode"]]
            verdict.update(status="ok" if ok else "wrong", rel_error=rel)
        verdicts[case] = verdict
    return verdicts


def check_runtimes(specs: list[str], envs_dir: Path | None = None, ops=OPS, formats=CHECKED_FORMATS,
                   modes=MODES) -> dict[str, dict]:
    """Runtime spec -> {op: {mode: {format: verdict}}}."""
    with tempfile.TemporaryDirectory(prefix="edgetqs-conformance-") as tmp:
        directory = Path(tmp)
        envs = envs_dir or directory / "envs"
        cases = write_cases(directory, ops, formats, modes)
        matrix = {}
        for spec in specs:
            for leftover in directory.glob("*.out.npz"):
                leftover.unlink()
            verdicts = judge(cases, run_runtime(spec, directory, envs), directory)
            table: dict = {}
            for v in verdicts.values():
                cell = {k: v[k] for k in ("status", "rel_error", "error") if k in v}
                table.setdefault(v["op"], {}).setdefault(v["mode"], {})[v["format"]] = cell
            matrix[spec] = table
        return matrix


# -- the matrix as data -------------------------------------------------------
MATRIX_FILE = JsonKind("edgetqs.capability_matrix", 1, "capability matrix",
                       "regenerate it: python -m edgetqs.planner.conformance --runtime PACKAGE==VERSION --merge")
def write_matrix(runtimes: dict[str, dict], path: Path = MATRIX_PATH) -> None:
    write_json(path, MATRIX_FILE, {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m edgetqs.planner.conformance " + " ".join(f"--runtime {s}" for s in runtimes),
        "tolerance": TOLERANCE, "runtimes": runtimes})


class CapabilityMatrix:
    def __init__(self, data: dict):
        self.data = data
        self.runtimes: dict[str, dict] = data["runtimes"]

    @classmethod
    def load(cls, path: Path = MATRIX_PATH) -> "CapabilityMatrix":
        return cls(read_json(path, MATRIX_FILE))

    def _runtime(self, spec: str) -> dict:
        if spec not in self.runtimes:
            raise EdgeTQSError(f"the capability matrix has no results for runtime {spec}",
                               f"run: python -m edgetqs.planner.conformance --runtime {spec} "
                               f"(checked so far: {', '.join(self.runtimes)})")
        return self.runtimes[spec]

    def supports(self, spec: str, op: str, mode: str, fmt: str) -> bool:
        """True when ``fmt`` weights on ``op`` ran correctly in ``spec``; fp32 always does."""
        if fmt == "fp32":
            return True
        table = self._runtime(spec)
        mode_key = "weight_only" if fmt == "fp16" else mode
        return table.get(op, {}).get(mode_key, {}).get(fmt, {}).get("status") == "ok"

    def has_mode(self, spec: str, mode: str) -> bool:
        """Whether ``spec`` was checked in ``mode`` at all (older matrices lack static results)."""
        return any(mode in per_mode for per_mode in self._runtime(spec).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetqs.planner.conformance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", action="append", default=[],
                        help="package==version to check (repeatable); default: "
                             + " and ".join(r.spec for r in CONFORMANCE_RUNTIMES))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other runtimes already in the output (or in the shipped matrix, for a new output)")
    parser.add_argument("-o", "--output", type=Path, default=MATRIX_PATH)
    parser.add_argument("--envs", type=Path, default=None, help="keep the runtime venvs here (default: throwaway)")
    args = parser.parse_args(argv)
    specs = args.runtime or [r.spec for r in CONFORMANCE_RUNTIMES]
    results = check_runtimes(specs, args.envs)
    if args.merge:  # keep the other runtimes of the output, or of the shipped matrix for a new file
        base = args.output if args.output.exists() else MATRIX_PATH
        results = {**CapabilityMatrix.load(base).runtimes, **results}
    write_matrix(results, args.output)
    for spec, table in results.items():
        ok = sum(c["status"] == "ok" for modes in table.values() for cells in modes.values() for c in cells.values())
        total = sum(len(cells) for modes in table.values() for cells in modes.values())
        print(f"{spec}: {ok}/{total} (op, format, mode) cases correct")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
