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

Activation modes (``modes``, :class:`edgetqs.quant.modes.Mode`): the sensitivities
are scored once; plans are made, priced, converted and judged per mode, and
every row carries its mode. A mode the planner refuses for the model (static
where AEQ's all-int8 export fails or XNNPACK cannot load it) is skipped with the
planner's reason in ``skipped``, as is the verified search where it cannot run
the mode; none available at all is an error (:class:`NoModeAvailable`).
Static plans are priced and converted with activation ranges calibrated (AEQ
min/max, the converter's default number of windows) on: the scoring part of the
user's series when given; for a zoo model, its training series (a model's free
run covers only its own attractor, which can be narrower than the data: on
mlp-sunspots it spans [-0.63, 1.49] where the test series reaches 4.3, and
static int8 then clips); else the model's own free run. Every static row names
its calibration.
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
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.evaluation import methods as M
from edgetqs.evaluation import report
from edgetqs.quant import aeq
from edgetqs.quant.modes import MODE_NAMES, Mode

SCORE_SHARE = 0.7  # of a user's series: scoring/search windows come from here, judging from the rest
JUDGE_SEED_OFFSET = 1000  # data-free judging windows: a free run from seed + this
# What scoring and the search see for a zoo model: its own free run (data-free, the default) or its
# training series (what a user with data would give); judging is on the test series either way.
SCORE_CONTEXTS = ("free-run", "training-series")


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
    score_contexts: str = SCORE_CONTEXTS[0]  # zoo models: one of SCORE_CONTEXTS
    seed: int = 0
    ablations: bool = False
    modes: list[Mode] = field(default_factory=lambda: [Mode.DYNAMIC])  # activation modes, each its own cells

    def check(self) -> "EvaluationSettings":
        unknown = [m for m in self.methods if m not in M.METHODS]
        if unknown:
            raise EdgeTQSError(f"unknown evaluation method(s): {', '.join(unknown)}",
                               f"pick from: {', '.join(M.METHODS)}")
        if not self.modes:
            raise EdgeTQSError("no activation mode to evaluate", f"pass --mode with one or more of: {', '.join(MODE_NAMES)}")
        self.modes = list(dict.fromkeys(Mode.parse(m) for m in self.modes))
        if self.score_contexts not in SCORE_CONTEXTS:
            raise EdgeTQSError(f"unknown scoring contexts '{self.score_contexts}'", f"pick one of: {', '.join(SCORE_CONTEXTS)}")
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
    skipped: list[dict] = field(default_factory=list)  # {model, mode, method (None: the whole mode), reason, fix}


class NoModeAvailable(EdgeTQSError):
    """Every requested mode was refused for the model; ``skipped`` says why, per mode."""

    def __init__(self, problem: str, fix: str, skipped: list[dict]):
        super().__init__(problem, fix)
        self.skipped = skipped


@dataclass
class _Windows:
    score_data: str | None  # a path the scorer reads (the first part of the user's series), or None
    judge: np.ndarray
    truth: np.ndarray | None
    judge_calls: int
    source: str
    covariates: np.ndarray | None = None  # [K, judge_calls*patch, C] given inputs (covariate models)
    calibration: str | None = None  # static mode's calibration series (a path), None: the model's own free run
    calibration_source: str = "data-free free run"


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
    run = _Run(label)
    with tempfile.TemporaryDirectory() as tmp:
        windows = _windows(canonical, settings, Path(tmp))
        t0 = time.perf_counter()
        say(f"{label}: scoring")
        scored = M.all_scores(canonical, settings, windows.score_data, run.notes, run.timings, say)
        run.timings["planning_seconds"], run.timings["judging_seconds"] = time.perf_counter() - t0, 0.0
        for mode in settings.modes:
            _evaluate_mode(canonical, settings, scored, mode, windows, Path(tmp), run, say)
    refused = [s for s in run.skipped if s["method"] is None]
    if len(refused) == len(settings.modes):
        raise NoModeAvailable(f"no requested mode can be evaluated for {label}: " + "; ".join(
            f"{s['mode']}: {s['reason']}" for s in refused), refused[0]["fix"], refused)
    if not run.rows:
        raise EdgeTQSError(f"no chosen method made a plan for {label}" + "".join(f"; {n}" for n in run.notes),
                           "choose other --methods (edgetqs evaluate --help lists them)")
    for key in ("planning_seconds", "judging_seconds"):
        run.timings[key] = round(run.timings[key], 2)
    for r in run.rows:
        r["windows"] = windows.source
        r["calibration"] = windows.calibration_source if Mode.parse(r["mode"]).quantizes_activations else None
    result = EvaluationResult(label, run.rows, run.notes, run.timings, run.searches, skipped=run.skipped,
                              plans={plan_sha(mp): {a.unit: a.format for a in mp.plan.assignments} for mp in run.plans})
    if out_dir is not None:
        payload = report.payload(result.rows, result.notes, {"model": label, "settings": settings.__dict__},
                                 {label: result.timings}, result.searches, {label: result.plans}, result.skipped)
        result.paths = report.write_all(Path(out_dir), name or f"evaluation-{label}", payload)
    return result


@dataclass
class _Run:
    """What one model's evaluation gathers over its modes."""

    label: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    searches: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    plans: list = field(default_factory=list)


def _evaluate_mode(canonical, settings: EvaluationSettings, scored, mode: Mode, windows: "_Windows", workdir: Path,
                   run: _Run, say) -> None:
    """One mode's plans, judged, added to ``run``; a mode the planner refuses is recorded as skipped."""
    t0 = time.perf_counter()
    try:
        quant = M.reference_problem(canonical, scored, mode, windows.calibration)
    except M.ModeUnavailable as exc:
        run.skipped.append({"model": run.label, "mode": mode, "method": None, "reason": exc.problem, "fix": exc.fix})
        say(f"{run.label}: {mode} mode skipped: {exc.problem}")
        return
    say(f"{run.label}: planning ({mode})")
    plans, predictors, notes, searches, skips = M.all_plans(canonical, settings, scored, quant, windows.score_data,
                                                            run.timings, say)
    run.notes += [f"{run.label} ({mode}): {n}" for n in notes]
    run.searches += searches
    run.skipped += [{"model": run.label, "mode": mode, "method": m, "reason": why, "fix": ""} for m, why in skips]
    t1 = time.perf_counter()
    run.timings["planning_seconds"] += t1 - t0
    say(f"{run.label}: exporting and rolling out {len({p.key() for p in plans})} distinct {mode} plans")
    run.rows += judge(canonical, plans, predictors, windows, workdir, settings, say)
    run.timings["judging_seconds"] += time.perf_counter() - t1
    run.plans += plans


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
        return _Windows(str(score_path), held.windows, held.truth, calls, f"held-out last {1 - SCORE_SHARE:.0%} of data",
                        held.covariates, str(score_path), f"first {SCORE_SHARE:.0%} of data")
    if settings.score_contexts == "training-series" and not source.startswith("zoo:"):
        raise EdgeTQSError("scoring on a training series is for zoo models: this model has none",
                           "pass your own series with --data (scoring on its first part, judging on the rest)")
    if source.startswith("zoo:"):
        entry = zoo.entry(source)
        calls = -(-min(entry.horizon, steps) // spec.patch)
        contexts, truth = zoo.true_trajectories(entry.name, spec.window, calls * spec.patch,
                                                count=settings.judge_windows, seed=entry.seed)
        given = truth[..., spec.covariates] if spec.covariates else None
        # a covariate model scores on its training series (data-free cannot feed it); judged on the test series
        training = str(zoo.series_file(entry.name, entry.seed))
        score_data = training if settings.score_contexts == "training-series" else zoo.data_for(entry.name, entry.seed)
        return _Windows(score_data, contexts, truth[..., spec.fed_back], calls,
                        "zoo test series (held out)", given, training, "zoo training series")
    from edgetqs.tqs.score import model_contexts

    calls = -(-steps // spec.patch)
    held = model_contexts(canonical.graph, canonical.card, None, settings.judge_windows, calls,
                          settings.seed + JUDGE_SEED_OFFSET)
    return _Windows(None, held.windows, None, calls, f"data-free free run, seed {settings.seed + JUDGE_SEED_OFFSET}")


def judge(canonical, plans: list, predictors: dict, windows: _Windows, workdir: Path,
          settings: EvaluationSettings, say) -> list[dict]:
    """Convert each distinct plan, roll it out in LiteRT, score it against float (and truth)."""
    from edgetqs.converter import convert
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.metrics import rollout_metrics

    spec = canonical.rollout
    float_rollout = LiteRTRunner(canonical.tflite_path, spec, num_threads=1).rollout(windows.judge, windows.judge_calls,
                                                                                     windows.covariates)
    float_vs_truth = rollout_metrics(float_rollout, windows.truth).summary() if windows.truth is not None else None
    rollout_check = predictors.pop("rollout", None)  # a PlanRollouts: predicts by rolling the plan out
    judged: dict[str, dict] = {}
    rows = []
    for i, mp in enumerate(plans):
        key = mp.key()
        if key not in judged:
            say(f"{canonical.card.name}: plan {len(judged) + 1} ({mp.method}, {mp.plan.mode})")
            out = workdir / f"{key}.tflite"
            with contextlib.redirect_stdout(io.StringIO()):
                result = convert(canonical, mp.plan.to_dict(), out, overwrite=True,
                                 **_conversion_options(Mode.parse(mp.plan.mode), windows))
            rollout = LiteRTRunner(out, spec, num_threads=1).rollout(windows.judge, windows.judge_calls,
                                                                     windows.covariates)
            judged[key] = {"file_bytes": result.model_bytes, "mode": result.mode,
                           "int8_activations": int8_activations(TFLiteGraph.load(out)),
                           "simulation_rel_error": float(result.verification.simulation_rel_error),
                           "vs_float": rollout_metrics(rollout, float_rollout).summary(),
                           "vs_truth": rollout_metrics(rollout, windows.truth).summary()
                           if windows.truth is not None else None,
                           "rollout_check": _rollout_check(rollout_check, mp.plan)}
            out.unlink()
        rows.append(_row(canonical.card.name, mp, judged[key], predictors, float_vs_truth, windows, spec))
    return rows


def _conversion_options(mode: Mode, windows: "_Windows") -> dict:
    """Static plans calibrate on the converter's default number of windows from ``windows.calibration``
    (the series the planner priced them with, module doc); other modes verify on a few short rollouts
    (from the scoring series when given: a covariate model needs its covariates from data)."""
    if mode.quantizes_activations:
        return {"mode": mode, "calibration": windows.calibration, "horizon": aeq.CALIBRATION_HORIZON,
                "windows": aeq.CALIBRATION_WINDOWS}
    return {"mode": mode, "calibration": windows.score_data, "horizon": 4, "windows": 2}


def int8_activations(graph) -> int:
    """Activation (non-constant) tensors the exported file holds in int8: none unless activations are static."""
    return sum(1 for t in graph.tensors if not t.is_constant and t.type_name == "INT8")


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
    row = {"model": model, "mode": j["mode"], "method": mp.method, "budget_bits": mp.budget_bits, "seed": mp.seed,
           "budget_bytes": mp.budget_bytes, "memory_bytes": int(p["memory_bytes"]),
           "predicted_file_bytes": int(p["model_bytes"]), "file_bytes": j["file_bytes"],
           "simulation_rel_error": j["simulation_rel_error"], "int8_activations": j["int8_activations"],
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
