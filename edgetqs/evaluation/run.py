"""One model's evaluation: plans of every chosen method at every budget, each
distinct plan exported (``converter.convert``, verification on) and rolled out
in LiteRT from held-out windows, judged against the float model (and the
truth when known).

Windows — three disjoint sets:

* scoring and search: what TQS and the verified search see (data-free free run
  with ``seed``, or the first ``SCORE_SHARE`` of the user's series);
* judging: held-out — a zoo model's test series (``zoo.true_trajectories``),
  the last part of the user's series, or (data-free) a free run from another
  seed, judged against the float model only.

Every distinct plan is also rolled out with the search's own arithmetic on the
search windows (``predicted_cost_rollout``): the prediction a rollout check
makes, set against what LiteRT then measures on windows it never saw.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.evaluation import methods as M
from edgetqs.evaluation import report

SCORE_SHARE = 0.7  # of a user's series: scoring/search windows come from here, judging from the rest
JUDGE_SEED_OFFSET = 1000  # data-free judging windows: a free run from seed + this


@dataclass
class EvaluationSettings:
    methods: list[str] = field(default_factory=lambda: list(M.DEFAULT_METHODS))
    budgets_bits: list[float] = field(default_factory=lambda: [3.0, 4.0, 5.0, 6.0])
    budgets_bytes: list[int] = field(default_factory=list)  # absolute memory budgets, in addition
    score_horizon: int = 32  # TQS T (model calls) and the search's rollout length
    score_windows: int = 16
    judge_windows: int = 32
    judge_steps: int = 64  # judged rollout length in steps (a zoo model's own horizon when shorter)
    random_seeds: int = 5
    search_evaluations: int | None = None  # per budget; None: the search's default (2 per unit)
    search_seconds: float | None = None
    data: str | None = None  # the user's series (CSV/NPY, raw units)
    seed: int = 0
    ablations: bool = False

    def check(self) -> "EvaluationSettings":
        unknown = [m for m in self.methods if m not in M.METHODS]
        if unknown:
            raise EdgeTQSError(f"unknown evaluation method(s): {', '.join(unknown)}",
                               f"pick from: {', '.join(M.METHODS)}")
        if not self.budgets_bits and not self.budgets_bytes:
            raise EdgeTQSError("no budget to evaluate at", "pass --budgets (average bits) or --budget-bytes")
        if any(b <= 0 for b in self.budgets_bits) or any(b <= 0 for b in self.budgets_bytes):
            raise EdgeTQSError("budgets must be positive", "give average bits such as 3,4,5,6 or byte counts")
        return self


@dataclass
class EvaluationResult:
    model: str
    rows: list[dict]
    notes: list[str]
    timings: dict
    searches: list[dict]
    paths: list[Path] = field(default_factory=list)
    plans: dict[str, dict[str, str]] = field(default_factory=dict)  # plan_sha -> {unit: format}


@dataclass
class _Windows:
    score_data: str | None  # a path the scorer reads (the first part of the user's series), or None
    judge: np.ndarray
    truth: np.ndarray | None
    judge_calls: int
    source: str


def evaluate(model, settings: EvaluationSettings | None = None, out_dir: str | Path | None = None,
             name: str | None = None, progress=None) -> EvaluationResult:
    """Evaluate ``model`` (zoo:NAME, a path the intake accepts, or a CanonicalModel); see the module doc.

    With ``out_dir``, writes ``<name>.json/.csv/.png`` and ``<name>.html`` (self-contained).
    ``progress(text)`` is told what is happening (the CLI shows it).
    """
    from edgetqs.converter.pipeline import resolve_model

    settings = (settings or EvaluationSettings()).check()
    say = progress or (lambda text: None)
    canonical = resolve_model(model)
    label = canonical.card.name
    with tempfile.TemporaryDirectory() as tmp:
        windows = _windows(canonical, settings, Path(tmp))
        t0 = time.perf_counter()
        say(f"{label}: scoring and planning")
        plans, predictors, notes, timings, searches = M.all_plans(canonical, settings, windows.score_data, say)
        timings["planning_seconds"] = round(time.perf_counter() - t0, 2)
        say(f"{label}: exporting and rolling out {len({p.key() for p in plans})} distinct plans")
        t1 = time.perf_counter()
        rows = judge(canonical, plans, predictors, windows, Path(tmp), settings, say)
        timings["judging_seconds"] = round(time.perf_counter() - t1, 2)
    for r in rows:
        r["windows"] = windows.source
    result = EvaluationResult(label, rows, notes, timings, searches,
                              plans={plan_sha(mp): {a.unit: a.format for a in mp.plan.assignments} for mp in plans})
    if out_dir is not None:
        payload = report.payload(rows, notes, {"model": label, "settings": settings.__dict__},
                                 {label: timings}, searches, {label: result.plans})
        result.paths = report.write_all(Path(out_dir), name or f"evaluation-{label}", payload)
    return result


def _windows(canonical, settings: EvaluationSettings, tmp: Path) -> _Windows:
    """Scoring/search data and held-out judging windows (module doc)."""
    from edgetqs import zoo
    from edgetqs.tqs import contexts as ctx

    spec = canonical.rollout
    source = canonical.card.source or ""
    steps = settings.judge_steps
    if settings.data:
        series = ctx.load_series(settings.data)
        split = int(len(series) * SCORE_SHARE)
        score_path = tmp / "score-part.npy"
        np.save(score_path, series[:split])
        calls = -(-steps // spec.patch)
        held = ctx.from_series(series[split:], spec, settings.judge_windows, calls, source="held-out data")
        return _Windows(str(score_path), held.windows, held.truth, calls, f"held-out last {1 - SCORE_SHARE:.0%} of data")
    if source.startswith("zoo:"):
        entry = zoo.entry(source)
        calls = -(-min(entry.horizon, steps) // spec.patch)
        contexts, truth = zoo.true_trajectories(entry.name, spec.window, calls * spec.patch,
                                                count=settings.judge_windows, seed=entry.seed)
        return _Windows(None, contexts, truth, calls, "zoo test series (held out)")
    from edgetqs.engine.litert import LiteRTRunner

    calls = -(-steps // spec.patch)
    held = ctx.free_run(LiteRTRunner(canonical.tflite_path, spec, num_threads=1), spec, settings.judge_windows,
                        settings.seed + JUDGE_SEED_OFFSET, calls)
    return _Windows(None, held.windows, None, calls, f"data-free free run, seed {settings.seed + JUDGE_SEED_OFFSET}")


def judge(canonical, plans: list, predictors: dict, windows: _Windows, workdir: Path,
          settings: EvaluationSettings, say) -> list[dict]:
    """Convert each distinct plan, roll it out in LiteRT, score it against float (and truth)."""
    from edgetqs.converter import convert
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.metrics import rollout_metrics

    spec = canonical.rollout
    float_rollout = LiteRTRunner(canonical.tflite_path, spec, num_threads=1).rollout(windows.judge, windows.judge_calls)
    float_vs_truth = rollout_metrics(float_rollout, windows.truth).summary() if windows.truth is not None else None
    rollout_check = predictors.pop("rollout", None)  # a PlanRollouts: predicts by rolling the plan out
    judged: dict[str, dict] = {}
    rows = []
    for i, mp in enumerate(plans):
        key = mp.key()
        if key not in judged:
            say(f"{canonical.card.name}: plan {len(judged) + 1} ({mp.method})")
            out = workdir / f"{key}.tflite"
            with contextlib.redirect_stdout(io.StringIO()):
                result = convert(canonical, mp.plan.to_dict(), out, horizon=4, windows=2, overwrite=True)
            rollout = LiteRTRunner(out, spec, num_threads=1).rollout(windows.judge, windows.judge_calls)
            judged[key] = {"file_bytes": result.model_bytes,
                           "simulation_rel_error": float(result.verification.simulation_rel_error),
                           "vs_float": rollout_metrics(rollout, float_rollout).summary(),
                           "vs_truth": rollout_metrics(rollout, windows.truth).summary()
                           if windows.truth is not None else None,
                           "rollout_check": _rollout_check(rollout_check, mp.plan)}
            out.unlink()
        rows.append(_row(canonical.card.name, mp, judged[key], predictors, float_vs_truth, windows, spec))
    return rows


def plan_sha(mp) -> str:
    """A plan's short id in the rows; the payload's "plans" maps it to {unit: format}."""
    return hashlib.sha256(mp.key().encode()).hexdigest()[:12]


def _rollout_check(rollouts, plan) -> float | None:
    if rollouts is None:
        return None
    by_unit = {u.name: u for u in rollouts.problem.units}
    if any(a.unit not in by_unit or a.format not in by_unit[a.unit].formats for a in plan.assignments):
        return None
    choice = [by_unit[a.unit].formats.index(a.format) for a in plan.assignments]
    rmse, blown = rollouts.measure([choice])[0]
    return float(rmse) if blown == 0 else float("inf")


def _row(model: str, mp, j: dict, predictors: dict, float_vs_truth, windows: _Windows, spec) -> dict:
    p = mp.plan.predicted
    formats: dict[str, int] = {}
    for a in mp.plan.assignments:
        formats[a.format] = formats.get(a.format, 0) + 1
    row = {"model": model, "method": mp.method, "budget_bits": mp.budget_bits, "seed": mp.seed,
           "budget_bytes": mp.budget_bytes, "memory_bytes": int(p["memory_bytes"]),
           "predicted_file_bytes": int(p["model_bytes"]), "file_bytes": j["file_bytes"],
           "simulation_rel_error": j["simulation_rel_error"],
           "formats": " ".join(f"{k}x{v}" for k, v in sorted(formats.items())),
           "plan_sha": plan_sha(mp),
           **{f"predicted_cost_{k}": M.predicted_cost(problem, mp.plan) for k, problem in predictors.items()},
           "predicted_cost_rollout": j["rollout_check"],
           "horizon_steps": windows.judge_calls * spec.patch,
           **{f"float_{k}": v for k, v in j["vs_float"].items() if k != "horizon"}}
    if j["vs_truth"] is not None:
        row["float_vs_truth_rmse"] = float_vs_truth["rmse"]
        row.update({f"truth_{k}": v for k, v in j["vs_truth"].items() if k != "horizon"})
    return row
