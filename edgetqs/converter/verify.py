"""Verification of an exported model against its plan, right after export.

Any mismatch raises: the artifact is never renamed into place. Checks:

1. each planned weight tensor AEQ quantizes has the planned type (INT8, INT4,
   INT2, FLOAT16; FLOAT32 for fp32), granularity (one scale per output channel,
   or blockwise with the planned block size);
2. the file size is within 1% of the plan's ``predicted.model_bytes`` (when
   the plan carries it), so the planner's byte costs describe the artifact;
3. it loads and runs in the LiteRT interpreter, outputs finite;
4. its outputs agree with a simulation of the same quantization: the exported
   weights are dequantized and the rollout engine runs the float model with
   those weights (a float LiteRT copy for ops the engine lacks). The remaining difference is what the *runtime* adds
   on top of the weights, so its tolerance depends on the mode (``TOLERANCE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgetqs.engine import Engine
from edgetqs.engine.litert import LiteRTRunner
from edgetqs.engine.ops.linear import gemm_layout_weights
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import Tensor, TFLiteGraph, replace_constants
from edgetqs.planner.planfile import Plan
from edgetqs.quant.aeq import OpTarget
from edgetqs.quant.formats import get_format
from edgetqs.quant.modes import Mode

SIZE_TOLERANCE = 0.01
# Relative L2 difference ||y_exported - y_simulated|| / ||y_simulated|| allowed over the probe batch.
# weight_only: the runtime dequantizes the same weights and computes in float; only
#   summation order differs (1e-4, as in the planner's conformance check).
# dynamic: the kernels also quantize each layer's input to int8 on the fly (~0.4%
#   relative per layer, 2^-8); errors add up over layers, so a few layers stay well
#   under 5%, while a wrong kernel (bad unpacking, ignored scales) gives O(1).
# static: activations are int8 with calibrated (min/max) ranges at every op,
#   not per-call ranges, so each op adds up to ~1% and nonlinearities amplify it; 15%.
# Measured on the zoo and test stand-ins (MLP, Conv1D, GRU, attention): weight_only
# <= 4e-7, dynamic 4e-4 .. 1.1e-2, static 1.5e-2 .. 5.6e-2 (on the calibration windows).
TOLERANCE = {"weight_only": 1e-4, "dynamic": 0.05, "static": 0.15}


@dataclass
class Verification:
    """What was checked, with the measured numbers (goes into the bundle manifest)."""

    tensors: dict[str, str] = field(default_factory=dict)  # tensor -> "INT4 channel" etc.
    size_bytes: int = 0
    predicted_bytes: int | None = None
    simulation_rel_error: float = 0.0
    tolerance: float = 0.0
    stayed_float: list[str] = field(default_factory=list)  # planned below fp32, FLOAT32 in the file (lint says why)
    outputs: np.ndarray | None = None  # exported model's outputs on the probes
    simulated: np.ndarray | None = None

    def summary(self) -> dict:
        return {"tensors": self.tensors, "size_bytes": self.size_bytes, "predicted_bytes": self.predicted_bytes,
                "simulation_rel_error": self.simulation_rel_error, "tolerance": self.tolerance,
                "stayed_float": self.stayed_float}


def expected_type(fmt: str) -> str:
    return get_format(fmt).tflite_type


def verify_export(float_graph: TFLiteGraph, exported: bytes, targets: list[OpTarget], plan: Plan,
                  mode: Mode, spec: RolloutSpec, probes: np.ndarray) -> Verification:
    """Check ``exported`` against the plan; ``probes`` [N, window, features] are the test inputs."""
    graph = TFLiteGraph.from_bytes(exported)
    result = Verification(size_bytes=len(exported), tolerance=TOLERANCE[mode])
    problems = []
    for name, fmt in {t.weight_tensor: t.format for t in targets}.items():
        problem, described = check_tensor(graph, name, fmt)
        result.tensors[name] = described
        if problem:
            problems.append(problem)
    result.stayed_float = stayed_float(graph, plan)
    predicted = plan.predicted.get("model_bytes")
    if predicted:
        result.predicted_bytes = int(predicted)
        if abs(len(exported) - predicted) > SIZE_TOLERANCE * predicted:
            problems.append(f"the file is {len(exported)} bytes, the plan predicted {predicted} "
                            f"({(len(exported) - predicted) / predicted:+.1%}, more than {SIZE_TOLERANCE:.0%})")
    if problems:
        raise EdgeTQSError("the exported model does not match the plan:\n  " + "\n  ".join(problems),
                           "nothing was written; report this with the plan (the planner's byte costs or the "
                           "recipe disagree with what AI Edge Quantizer emits)")
    result.outputs = run_litert(exported, spec, probes, "the exported model")
    result.simulated = simulate(float_graph, graph, list(result.tensors), spec, probes)
    result.simulation_rel_error = relative_error(result.outputs, result.simulated)
    if not result.simulation_rel_error <= result.tolerance:
        raise EdgeTQSError(
            f"the exported model's outputs differ from the simulation of the same quantization by "
            f"{result.simulation_rel_error:.3g} (relative L2), more than the {mode} tolerance {result.tolerance:g}",
            "nothing was written; the runtime executes some quantized op differently than planned — "
            "try --mode weight_only, or plan those units at int8")
    return result


def check_tensor(graph: TFLiteGraph, name: str, fmt: str) -> tuple[str | None, str]:
    """(problem or None, description of what the tensor is in the exported file)."""
    tensor = constant_named(graph, name)
    if tensor is None:
        return f"tensor '{name}' is missing from the exported model", "missing"
    described = describe(graph, tensor)
    want_type = expected_type(fmt)
    if tensor.type_name != want_type:
        return f"tensor '{name}' is {described}, planned {fmt} ({want_type})", described
    spec = get_format(fmt)
    if spec.is_float:
        return None, described
    q = tensor.quantization
    if q is None:
        return f"tensor '{name}' is {tensor.type_name} without scales", described
    if spec.granularity == "block" and q.block_size != spec.block_size:
        return f"tensor '{name}' is {described}, planned blocks of {spec.block_size}", described
    if spec.granularity == "channel" and (q.block_size or len(q.scales) != tensor.shape[q.axis]):
        return f"tensor '{name}' is {described}, planned one scale per output channel", described
    return None, described


def stayed_float(graph: TFLiteGraph, plan: Plan) -> list[str]:
    """Planned tensors (any unit, below fp32) that are still FLOAT32 constants in the exported file."""
    planned = {n for n, fmt in plan.formats().items() if fmt != "fp32"}
    return sorted(n for n in planned if (t := constant_named(graph, n)) is not None and t.type_name == "FLOAT32")


def constant_named(graph: TFLiteGraph, name: str) -> Tensor | None:
    return next((t for t in graph.tensors if t.name == name and t.is_constant), None)


def describe(graph: TFLiteGraph, tensor: Tensor) -> str:
    q = tensor.quantization
    if q is None:
        return tensor.type_name
    if q.block_size:
        return f"{tensor.type_name} blockwise {q.block_size}"
    if len(q.scales) > 1:
        return f"{tensor.type_name} per-channel (axis {q.axis}, {len(q.scales)} scales)"
    return f"{tensor.type_name} per-tensor"


def simulate(float_graph: TFLiteGraph, exported: TFLiteGraph, names: list[str], spec: RolloutSpec,
             probes: np.ndarray) -> np.ndarray:
    """Outputs of the float model with the exported model's (dequantized) weights.

    The rollout engine runs it with the weight deltas (exported - float); for a
    model the engine has no kernel for, the dequantized weights are written
    into a float copy that LiteRT runs.
    """
    deltas = {}
    in_gemm_layout = gemm_layout_weights(float_graph)
    for name in names:
        original = float_graph.float_constant(float_graph.tensor_by_name(name))
        # A FULLY_CONNECTED weight's delta is made in the engine's GEMM layout, [fan_in, out] contiguous, and
        # handed over as its transpose (the weight's shape): the engine multiplies with it where it lies instead
        # of keeping a transposed copy of every delta for the run (1x the float weights). Same values either way.
        delta = np.empty(original.shape, np.float32, order="F" if name in in_gemm_layout else "C")
        deltas[name] = np.subtract(exported.float_constant(constant_named(exported, name)), original, out=delta)
    try:
        # One model call: no weight's transpose is kept past its op (they would add up to 1x the weights).
        return Engine(float_graph, spec, keep_transposed=False).rollout_probes(probes, 1, [deltas])[0]
    except EdgeTQSError:  # an op the engine lacks
        patched = {name: float_graph.float_constant(float_graph.tensor_by_name(name)) + d for name, d in deltas.items()}
        return run_litert(replace_constants(float_graph, patched), spec, probes, "the simulation")


def run_litert(model: bytes, spec: RolloutSpec, inputs: np.ndarray, what: str) -> np.ndarray:
    """One model call per window of ``inputs`` [N, window, features] -> [N, patch, features]."""
    try:
        outputs = LiteRTRunner(model, spec, num_threads=1).forward(inputs)
    except EdgeTQSError as exc:
        raise EdgeTQSError(f"{what} does not run in LiteRT: {exc.problem}",
                           "nothing was written; plan the failing units at a format the runtime supports") from exc
    except (RuntimeError, ValueError) as exc:
        raise EdgeTQSError(f"{what} does not run in LiteRT: {exc}",
                           "nothing was written; plan the failing units at a format the runtime supports") from exc
    if not np.all(np.isfinite(outputs)):
        raise EdgeTQSError(f"{what} produces NaN or inf in LiteRT", "nothing was written; plan more bits for the sensitive units")
    return outputs


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(actual - reference) / max(np.linalg.norm(reference), 1e-12))
