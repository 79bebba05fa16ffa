"""inspect -> score -> plan -> convert (verification on) for a canonical model,
with tiny settings so a foreign model's whole trip takes seconds."""

from __future__ import annotations

import time
from pathlib import Path

from edgetqs.converter.pipeline import convert
from edgetqs.planner.plan import build_problem, make_plan
from edgetqs.tqs.score import ScoreSettings, score_model
from edgetqs.tqs.scorefile import file_sha256, load_scores
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME

HORIZON, WINDOWS = 6, 3
RUNTIME = DEFAULT_HOST_RUNTIME.spec


def through_pipeline(model, out_dir: Path, mode: str = "dynamic", data: str | None = None) -> dict:
    """Score, plan half-way between the smallest plan and all-float, convert with verification; facts about each stage.

    ``data``: the series scoring and conversion take their windows from (data-free without)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scores = score_model(model.graph, model.card, ScoreSettings(horizon=HORIZON, windows=WINDOWS, data=data),
                         progress=False)
    scores_path = scores.save(out_dir / "scores.json")
    problem = build_problem(model.graph, load_scores(scores_path), file_sha256(scores_path), RUNTIME)
    # Dead units are offered only their cheapest format.
    all_float = problem.fixed_memory_bytes + sum(
        u.memory_bytes[u.formats.index("fp32")] if "fp32" in u.formats else min(u.memory_bytes) for u in problem.units)
    budget = int((problem.smallest_memory() + all_float) / 2)
    plan, _ = make_plan(model.graph, scores_path, budget_bytes=budget, mode=mode, model=model)
    plan_path = plan.save(out_dir / "plan.json")
    result = convert(model, plan_path, out_dir / "bundle", horizon=HORIZON, windows=WINDOWS, calibration=data,
                     overwrite=True)
    return {"units": len(scores.units), "budget": budget, "result": result,
            "seconds": time.perf_counter() - started}


def assert_verified_smaller_bundle(trip: dict) -> None:
    """What every foreign model's trip must show: the export verified (convert() raises when verification
    fails, so this checks the recorded numbers) and a quantized bundle smaller than the float model."""
    verification = trip["result"].verification
    assert verification.simulation_rel_error <= verification.tolerance
    assert trip["result"].model_bytes < trip["result"].float_bytes
