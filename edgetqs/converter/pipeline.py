"""``convert(model, plan, out)``: plan -> AEQ recipe -> quantized, verified .tflite -> bundle.

Order matters: everything that can reject the input (plan/model mismatch,
lint) runs before AEQ; the export is verified in memory; only then is
anything written, to a temporary name renamed into place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgetqs.bundle import write_bundle
from edgetqs.converter import deploy
from edgetqs.converter.lint import Finding, lint_plan, raise_on_errors
from edgetqs.converter.verify import Verification, verify_export
from edgetqs.engine.litert import LiteRTRunner
from edgetqs.errors import EdgeTQSError
from edgetqs.files import write_atomically
from edgetqs.targets import load_target
from edgetqs.planner.planfile import Plan, as_plan
from edgetqs.quant import aeq
from edgetqs.quant.modes import Mode
from edgetqs.tqs import contexts as ctx
from edgetqs.tqs.score import model_contexts
from edgetqs.zoo.resolve import load_model

# Context windows (and as many random probe windows), and model calls in the reference
# rollouts: the windows static mode calibrates on, which the planner prices with too.
DEFAULT_WINDOWS, DEFAULT_HORIZON = aeq.CALIBRATION_WINDOWS, aeq.CALIBRATION_HORIZON


@dataclass
class ConversionResult:
    out: Path
    mode: str
    model_bytes: int
    float_bytes: int
    verification: Verification
    findings: list[Finding] = field(default_factory=list)
    recipe: list[dict] = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"out": str(self.out), "mode": self.mode, "model_bytes": self.model_bytes,
                "float_bytes": self.float_bytes, "verification": self.verification.summary(),
                "findings": [asdict(f) for f in self.findings], "thresholds": self.thresholds,
                "runtime": self.runtime}


def convert(model, plan, out: str | Path, *, mode: str | None = None, calibration: str | Path | None = None,
            target: str | None = None, horizon: int = DEFAULT_HORIZON, windows: int = DEFAULT_WINDOWS,
            seed: int = 0, activation_ranges: dict[str, tuple[float, float]] | None = None,
            overwrite: bool = False, on_step: Callable[[str], None] = lambda text: None) -> ConversionResult:
    """Convert ``model`` (a CanonicalModel, path or zoo:NAME) under ``plan`` (path or dict) to ``out``.

    ``out`` ending in .tflite gets the verified model alone; anything else gets
    the deployment bundle (a directory, or an archive if it ends in .tar.gz).
    ``activation_ranges`` (tensor -> (low, high)) override min/max calibration
    in static mode: the hook for the probabilistic range estimator.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise EdgeTQSError(f"{out} already exists", "choose another output path or pass --force")
    on_step("loading model and plan")
    canonical = resolve_model(model)
    graph, spec = canonical.graph, canonical.rollout
    plan = as_plan(plan)
    plan.check_matches(graph, str(model) if isinstance(model, (str, Path)) else canonical.card.name)
    mode = Mode.parse(mode or plan.mode)
    if activation_ranges and not mode.quantizes_activations:
        raise EdgeTQSError(f"activation ranges were given but the mode is {mode}; only static mode quantizes activations",
                           "pass --mode static, or drop the activation ranges")

    on_step("linting the plan")
    runtime_spec, matrix = target_runtime(target, plan), deploy.load_matrix()
    findings = lint_plan(graph, plan, mode, runtime_spec, matrix)
    raise_on_errors(findings)

    on_step("context windows")
    contexts = model_contexts(canonical.graph, canonical.card, calibration, windows, horizon, seed)
    probes = probe_windows(contexts.windows, seed)

    on_step("quantizing with AI Edge Quantizer")
    recipe = aeq.build_recipe(graph, plan.formats(), mode)
    # The graph's own bytes, not the path: AEQ and LiteRT read them in place, where a path is read or mapped
    # again (another float copy in memory, beside the graph's).
    float_model = graph.content
    exported = quantize(float_model, recipe, mode, contexts.windows, activation_ranges)

    on_step("verifying the export")
    targets = aeq.op_targets(graph, plan.formats())
    # Static int8 clips activations to the calibrated ranges by design, so its
    # agreement with the simulation is checked on the calibration windows only.
    checked = contexts.windows if mode.quantizes_activations else probes
    verification = verify_export(graph, exported, targets, plan, mode, spec, checked)

    on_step("host reference rollouts")
    given = contexts.covariates_for(horizon, spec.patch)
    reference_float = LiteRTRunner(float_model, spec, num_threads=1).rollout(contexts.windows, horizon, given)
    exported_runner = LiteRTRunner(exported, spec, num_threads=1)
    reference_host = exported_runner.rollout(contexts.windows, horizon, given)
    probe_outputs = exported_runner.forward(probes)
    if not np.all(np.isfinite(reference_host)):
        raise EdgeTQSError("the quantized model blows up (NaN/inf) when rolled out on the host",
                           "nothing was written; plan more bits for the most sensitive units")
    limits = deploy.thresholds(mode, reference_float, reference_host)
    runtime = deploy.runtime_requirement(targets, mode, matrix)
    if runtime_spec:
        runtime["target_runtime"] = runtime_spec

    on_step(f"writing {out}")
    if out.suffix == ".tflite":
        write_atomically(out, exported)
    else:
        write_bundle(
            out, model=exported, rollout=asdict(spec), probes_x=probes, probes_y=probe_outputs,
            contexts=contexts.windows, horizon=horizon, reference_float=reference_float,
            reference_host=reference_host, truth=truth_for(contexts, reference_float), covariates=given,
            plan=plan.to_dict(),
            source_sha256=graph.sha256, formats=plan.formats(), runtime=runtime, thresholds=limits,
            extra={"mode": mode, "recipe": recipe, "verification": verification.summary(),
                   "lint": [asdict(f) for f in findings], "contexts_source": contexts.source},
            overwrite=overwrite)
    return ConversionResult(out, mode, len(exported), graph.size_bytes, verification, findings, recipe, limits, runtime)


def resolve_model(model):
    """A CanonicalModel from a CanonicalModel, a path or zoo:NAME (through model intake)."""
    return load_model(model)


def target_runtime(target: str | None, plan: Plan) -> str | None:
    """``package==version`` of the runtime to lint for: the target's firmware, else the plan's runtime."""
    if target:
        return load_target(target).runtime_spec
    return plan.runtime or None


def probe_windows(context_windows: np.ndarray, seed: int) -> np.ndarray:
    """Probe inputs: the context windows (on the attractor) plus as many unit-Gaussian windows (off it)."""
    rng = np.random.default_rng(seed + 1)
    noise = rng.standard_normal(context_windows.shape).astype(np.float32)
    return np.concatenate([context_windows.astype(np.float32), noise])


def truth_for(contexts: ctx.Contexts, reference: np.ndarray) -> np.ndarray | None:
    truth = contexts.truth
    return truth if truth is not None and truth.shape == reference.shape else None


def quantize(float_model: aeq.Model, recipe: list[dict], mode: Mode | str, windows: np.ndarray,
             activation_ranges: dict | None) -> bytes:
    """AEQ's export with ``recipe``; static mode calibrates on ``windows`` first (``activation_ranges`` over them)."""
    calibration = None
    if Mode.parse(mode).quantizes_activations:
        calibration = aeq.calibrate_windows(float_model, recipe, windows)
        if activation_ranges:
            calibration = aeq.calibration_from_ranges(activation_ranges, calibration)
    return aeq.export(float_model, recipe, mode, calibration)
