"""Evaluation (issue #7): TQS-PTQ against the other allocators on the zoo, at matched
size, on the real exported models.

    .venv/bin/python benchmarks/evaluate.py              # everything (docs/EVALUATION.md)
    .venv/bin/python benchmarks/evaluate.py --quick      # 2 small models, 2 budgets, fewer baselines (<= 3 min)
    .venv/bin/python benchmarks/evaluate.py --models mlp-lorenz96,gru-ks --budgets 3,4,5,6

Per zoo model and budget (average weight bits -> bytes, evaluation/methods.py),
every method makes a plan; the plan is converted with ``edgetqs.converter.convert``
(dynamic mode, verification on), the exported .tflite rolled out in LiteRT from
test-series windows (``zoo.true_trajectories``), and scored with
``rollout_metrics`` against the float model and against the true system.
Methods at a budget feed the same planner (MCKP) with their own sensitivity
(``edgetqs.baselines``), so only the sensitivity differs. Results:
``benchmarks/results/evaluation[_quick].{json,csv,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluation import methods as M  # noqa: E402
from evaluation import report  # noqa: E402
from tqs_common import RESULTS, machine  # noqa: E402

SCORE_HORIZON = 32  # TQS rollout length T (model calls)
SHORT_HORIZON = 8  # the horizon ablation's other T
SCORE_WINDOWS = 16
EVAL_WINDOWS = 32
EVAL_HORIZON_CAP = 64  # steps of the judged rollout (the zoo entry's horizon when shorter)
RANDOM_SEEDS = 5
QUICK = {"models": ["mlp-sunspots", "mlp-lorenz96"], "budgets": [4.0, 6.0], "seeds": 2,
         "baselines": ["weight_error", "single_step", "random"], "ablations": False}


def cached_scores(canonical, horizon: int):
    """TQS scores (both probes) of one model, cached by model sha and settings."""
    from edgetqs.model.intake import cache_dir
    from edgetqs.tqs.score import ScoreSettings, score_model
    from edgetqs.tqs.scorefile import load_scores

    path = cache_dir() / "evaluation" / f"{canonical.graph.sha256[:16]}-T{horizon}-K{SCORE_WINDOWS}.json"
    if path.exists():
        return load_scores(path)
    scores = score_model(canonical.graph, canonical.card, ScoreSettings(horizon=horizon, windows=SCORE_WINDOWS),
                         progress=False)
    scores.save(path)
    return scores


def one_probe(scores, probe: str):
    """The score file with only ``probe``'s gamma (the planner reads quant first, then gauss)."""
    import copy

    other = "gauss" if probe == "quant" else "quant"
    only = copy.deepcopy(scores)
    for u in only.units:
        setattr(u, f"gamma_{other}", None)
    return only


def baseline_inputs(name: str, canonical) -> tuple[dict, str | None]:
    """Keyword arguments of the baselines; the reason the Hessian one cannot run, if so."""
    from edgetqs import zoo
    from edgetqs.zoo.training import entry_training_pairs

    entry = zoo.entry(name)
    kwargs = {"card": canonical.card, "windows": SCORE_WINDOWS}
    if entry.source_format != "keras":
        return kwargs, f"{entry.source_format} model trained in torch: no Keras graph for TF Hessian-vector products"
    x, y = entry_training_pairs(entry)
    kwargs.update(keras_path=zoo.model_dir(name) / f"{name}.keras", train_x=x, train_y=y)
    return kwargs, None


def all_plans(name: str, canonical, bits: list[float], config: dict,
              notes: list[str]) -> tuple[list[M.MethodPlan], dict]:
    """Every method's plans, and the problems whose predicted cost is checked against the measured error."""
    from edgetqs.baselines import baseline_scores
    from edgetqs.planner.plan import KeepFloat

    scores = cached_scores(canonical, SCORE_HORIZON)
    quant = M.problem_for(canonical, one_probe(scores, "quant"))
    gauss = M.problem_for(canonical, one_probe(scores, "gauss"))
    predictors = {"tqs-quant": quant, "tqs-gauss": gauss}
    budgets = {b: M.budget_bytes(quant, b) for b in bits}
    plans = M.budgeted("tqs-quant", quant, budgets)
    plans += M.budgeted("tqs-gauss", gauss, budgets)
    plans += M.budgeted("tqs-quant-greedy", quant, budgets, allocator="greedy")
    for fmt in ("int8", "int4"):
        plans.append(M.MethodPlan(f"uniform-{fmt}", M.fixed_plan(quant, M.uniform_choice(quant, fmt), fmt), None))
    plans.append(M.MethodPlan("first-last-8", M.fixed_plan(quant, M.first_last_choice(quant), "first-last-8"), None))
    for b, B in budgets.items():
        plan = M.uniform_at_budget(quant, B)
        if plan is not None:
            plans.append(M.MethodPlan("uniform-at-budget", plan, b, budget_bytes=B))
    kwargs, no_hessian = baseline_inputs(name, canonical)
    for baseline in config["baselines"]:
        if baseline == "hessian" and no_hessian:
            notes.append(f"{name}: hessian skipped: {no_hessian}")
            continue
        seeds = range(config["seeds"]) if baseline == "random" else [0]
        for seed in seeds:
            problem = M.problem_for(canonical, baseline_scores(baseline, canonical.graph, scores, seed=seed, **kwargs))
            if baseline != "random":
                predictors[baseline.replace("_", "-")] = problem
            plans += M.budgeted(baseline.replace("_", "-"), problem, budgets, seed=seed if baseline == "random" else None)
    if config["ablations"]:
        short = M.problem_for(canonical, one_probe(cached_scores(canonical, SHORT_HORIZON), "quant"))
        plans += M.budgeted(f"tqs-quant-T{SHORT_HORIZON}", short, budgets)
        plans += M.budgeted("tqs-quant-bottom-int4", M.problem_for(canonical, one_probe(scores, "quant"), bottom="int4"), budgets)
        plans += M.budgeted("tqs-quant-float1", M.problem_for(canonical, one_probe(scores, "quant"),
                                                                keep_float=KeepFloat(count=1)), budgets)
    return plans, predictors


def judge(name: str, canonical, plans: list[M.MethodPlan], predictors: dict, workdir: Path) -> list[dict]:
    """Convert each distinct plan, roll it out in LiteRT, score it against float and truth."""
    from edgetqs import zoo
    from edgetqs.converter import convert
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.metrics import rollout_metrics

    spec, entry = canonical.rollout, zoo.entry(name)
    steps = min(entry.horizon, EVAL_HORIZON_CAP)
    calls = -(-steps // spec.patch)
    contexts, truth = zoo.true_trajectories(name, spec.window, calls * spec.patch, count=EVAL_WINDOWS, seed=entry.seed)
    float_rollout = LiteRTRunner(canonical.tflite_path, spec, num_threads=1).rollout(contexts, calls)
    float_vs_truth = rollout_metrics(float_rollout, truth).summary()
    judged: dict[str, dict] = {}
    rows = []
    for mp in plans:
        key = mp.key()
        if key not in judged:
            out = workdir / f"{name}-{key}.tflite"
            with contextlib.redirect_stdout(io.StringIO()):
                result = convert(canonical, mp.plan.to_dict(), out, horizon=4, windows=2, overwrite=True)
            rollout = LiteRTRunner(out, spec, num_threads=1).rollout(contexts, calls)
            judged[key] = {"file_bytes": result.model_bytes,
                           # convert() raises unless the export verified; keep the measured agreement
                           "simulation_rel_error": float(result.verification.simulation_rel_error),
                           "vs_float": rollout_metrics(rollout, float_rollout).summary(),
                           "vs_truth": rollout_metrics(rollout, truth).summary()}
        j = judged[key]
        p = mp.plan.predicted
        formats: dict[str, int] = {}
        for a in mp.plan.assignments:
            formats[a.format] = formats.get(a.format, 0) + 1
        rows.append({"model": name, "method": mp.method, "budget_bits": mp.budget_bits, "seed": mp.seed,
                     "budget_bytes": mp.budget_bytes,
                     "memory_bytes": int(p["memory_bytes"]), "predicted_file_bytes": int(p["model_bytes"]),
                     "file_bytes": j["file_bytes"], "simulation_rel_error": j["simulation_rel_error"],
                     "formats": " ".join(f"{k}x{v}" for k, v in sorted(formats.items())),
                     **{f"predicted_cost_{k}": M.predicted_cost(problem, mp.plan) for k, problem in predictors.items()},
                     "float_vs_truth_rmse": float_vs_truth["rmse"], "horizon_steps": calls * spec.patch,
                     **{f"float_{k}": v for k, v in j["vs_float"].items() if k != "horizon"},
                     **{f"truth_{k}": v for k, v in j["vs_truth"].items() if k != "horizon"}})
    return rows


def main(argv: list[str] | None = None) -> int:
    from edgetqs import zoo

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 small models, 2 budgets, fewer baselines (CI smoke)")
    parser.add_argument("--models", help="comma-separated zoo names (default: the whole zoo)")
    parser.add_argument("--budgets", default="3,4,5,6", help="average weight bits, comma-separated")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--out", default=None, help="results name under benchmarks/results (default evaluation[_quick])")
    args = parser.parse_args(argv)
    config = {"models": [e.name for e in zoo.list_models()], "budgets": [float(b) for b in args.budgets.split(",")],
              "seeds": RANDOM_SEEDS, "baselines": ["weight_error", "single_step", "hessian", "random"],
              "ablations": not args.no_ablations}
    if args.quick:
        config.update(QUICK)
    if args.models:
        config["models"] = [m.removeprefix("zoo:") for m in args.models.split(",")]
    name = args.out or ("evaluation_quick" if args.quick else "evaluation")
    start, rows, notes, timings = time.perf_counter(), [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in config["models"]:
            t0 = time.perf_counter()
            canonical = zoo.build(model)
            plans, predictors = all_plans(model, canonical, config["budgets"], config, notes)
            rows += judge(model, canonical, plans, predictors, Path(tmp))
            timings[model] = round(time.perf_counter() - t0, 1)
            print(f"{model}: {len(plans)} plans in {timings[model]} s", flush=True)
    payload = {"command": "benchmarks/evaluate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": machine(), "config": config, "wall_seconds": round(time.perf_counter() - start, 1),
               "seconds_per_model": timings, "notes": notes,
               "settings": {"score_horizon": SCORE_HORIZON, "short_horizon": SHORT_HORIZON,
                            "score_windows": SCORE_WINDOWS, "eval_windows": EVAL_WINDOWS,
                            "eval_horizon_cap": EVAL_HORIZON_CAP, "mode": M.MODE, "runtime": M.RUNTIME},
               "rows": rows}
    payload["win_rates"] = report.win_rates(rows)
    payload["cost_error_correlation"] = report.cost_error_correlation(rows)
    paths = report.write_all(RESULTS, name, payload)
    report.print_summary(payload)
    print("wrote:", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
