"""The adaptive sweep's front against the full sweep's, judged by rolling the plans out.

    .venv/bin/python benchmarks/adaptive_front.py MODEL [--budgets 20] [--judge-seed 2] [--name NAME]

MODEL is a model file (e.g. ~/.cache/edgetqs/bench-large/resmlp-23m.keras) or a zoo name.
Three score files of the same model, all data-free, both probes, layer units:
  full      the full sweep, K=16 windows, T=32 calls, seed 0
  repeat    the same full sweep from other windows (seed 1): how far a full sweep's own
            front moves with the windows it happened to draw, the floor a cheaper sweep is held to
  adaptive  ``--adaptive`` (seed 0): grows windows and horizon until the ranking settles
Each is planned at the same budgets (the full front's, on the host runtime). Against the full
sweep, ``repeat`` and ``adaptive`` report:
  spearman        of the gammas, per probe
  identical       front plans identical to the full front's plan at the same budget (the strict count)
  predicted       each front plan priced by the full sweep's costs / the full front's plan's cost
  measured        every front plan rolled out whole (all its units quantized at once, the verified
                  search's PlanRollouts) from judge windows none of the scores used (free run,
                  ``--judge-seed``, K=16, T=32): rollout RMSE / the full front's plan's RMSE at the
                  same budget; geometric mean and worst over the budgets where the full plan has error
Sweep times are wall seconds in this process (the machine's load is recorded with them).
Writes benchmarks/results/adaptive_front_<name>.json and a plot of the three fronts' measured
error against memory (adaptive_front_<name>.png).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from tqs_common import RESULTS, machine, write_results

FULL_WINDOWS, FULL_HORIZON = 16, 32


def score(model, **settings):
    from edgetqs.tqs.score import ScoreSettings, score_model

    start = time.perf_counter()
    scores = score_model(model.graph, model.card, ScoreSettings(**settings), progress=False)
    return scores, time.perf_counter() - start


def formats_of(plan) -> dict[str, str]:
    return {a.unit: a.format for a in plan.assignments}


def priced(problem, plan) -> float:
    """``plan``'s cost under ``problem``'s scores (units matched by name, formats by name)."""
    chosen = formats_of(plan)
    total = 0.0
    for unit in problem.units:
        fmt = chosen[unit.name]
        # a unit dead under these scores has only its cheapest format, at no cost
        total += unit.costs[unit.formats.index(fmt)] if fmt in unit.formats else 0.0
    return total


def choice_in(problem, plan) -> tuple[int, ...]:
    chosen = formats_of(plan)
    return tuple(u.formats.index(chosen[u.name]) if chosen[u.name] in u.formats else 0 for u in problem.units)


def ratios(values: list[float], reference: list[float]) -> dict:
    pairs = [(v, r) for v, r in zip(values, reference) if r > 0]
    if not pairs:
        return {"geomean": None, "worst": None, "budgets": 0}
    logs = [math.log(max(v, 1e-300) / r) for v, r in pairs]
    return {"geomean": math.exp(sum(logs) / len(logs)), "worst": math.exp(max(logs)), "budgets": len(pairs)}


def compare(model, sweeps: dict, budgets: int, judge_seed: int) -> dict:
    from edgetqs.planner.front import pareto_front
    from edgetqs.planner.plan import build_problem, solve_many
    from edgetqs.planner.search import PlanRollouts
    from edgetqs.runtimes import DEFAULT_HOST_RUNTIME
    from edgetqs.tqs.adaptive import spearman
    from edgetqs.tqs.score import model_contexts

    problems = {name: build_problem(model.graph, s, "-", DEFAULT_HOST_RUNTIME.spec) for name, (s, _) in sweeps.items()}
    full_front = pareto_front(problems["full"], budgets).points
    sizes = [point.budget_bytes for point in full_front]  # the others are planned at the full front's budgets
    plans = {name: [point.plan for point in full_front] if name == "full" else solve_many(problem, sizes)
             for name, problem in problems.items()}
    judge = model_contexts(model.graph, model.card, None, FULL_WINDOWS, FULL_HORIZON, judge_seed)
    rollouts = PlanRollouts(problems["full"], model.card.rollout, judge.windows, FULL_HORIZON)
    measured = {name: [rmse for rmse, _ in rollouts.measure([choice_in(problems["full"], p) for p in ps])]
                for name, ps in plans.items()}
    full_cost = [priced(problems["full"], p) for p in plans["full"]]
    result = {"budgets_bytes": sizes, "measured_rmse": measured,
              "memory_bytes": {n: [p.predicted["memory_bytes"] for p in ps] for n, ps in plans.items()}}
    full_scores = sweeps["full"][0]
    for name in ("repeat", "adaptive"):
        scores, seconds = sweeps[name]
        result[name] = {
            "seconds": seconds, "settings": {k: scores.settings.get(k) for k in ("windows", "horizon", "seed")},
            "work_fraction": (scores.settings.get("adaptive") or {}).get("work_fraction", 1.0),
            **{f"spearman_{probe}": spearman(np.array([u.gamma(probe) for u in full_scores.units]),
                                             np.array([u.gamma(probe) for u in scores.units]))
               for probe in ("quant", "gauss")},
            "identical": f"{sum(formats_of(a) == formats_of(b) for a, b in zip(plans[name], plans['full']))}"
                         f"/{len(sizes)}",
            "predicted": ratios([priced(problems["full"], p) for p in plans[name]], full_cost),
            "measured": ratios(measured[name], measured["full"]),
        }
    result["full"] = {"seconds": sweeps["full"][1]}
    return result


def plot(run: dict, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetqs.files import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for sweep, style in (("full", "o-"), ("repeat", "s--"), ("adaptive", "^:")):
        points = [(m / 2**20, e) for m, e in zip(run["memory_bytes"][sweep], run["measured_rmse"][sweep]) if e > 0]
        label = sweep if sweep == "full" else f"{sweep} (identical {run[sweep]['identical']}, measured " \
                                               f"x{run[sweep]['measured']['geomean']:.3f})"
        ax.plot(*zip(*points), style, label=label, alpha=0.8)
    ax.set(xlabel="predicted memory (MiB)", ylabel="measured rollout RMSE (judge windows)", yscale="log",
           title=f"{title}: front plans rolled out")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--budgets", type=int, default=20)
    parser.add_argument("--judge-seed", type=int, default=2)
    parser.add_argument("--name", default=None, help="results name (default: the model's)")
    args = parser.parse_args()
    from edgetqs import zoo
    from edgetqs.model.intake import load_model

    path = Path(args.model).expanduser()
    model = load_model(path) if path.exists() else zoo.build(args.model)  # build: cached after the first time
    name = args.name or path.name.split(".")[0]
    run = {"machine_start": machine()}
    full = dict(windows=FULL_WINDOWS, horizon=FULL_HORIZON)
    sweeps = {"full": score(model, **full, seed=0), "repeat": score(model, **full, seed=1),
              "adaptive": score(model, **full, seed=0, adaptive=True)}
    run.update(compare(model, sweeps, args.budgets, args.judge_seed), machine_end=machine())
    print(write_results(f"adaptive_front_{name}", run))
    print(plot(run, name, RESULTS / f"adaptive_front_{name}.png"))
    for sweep in ("repeat", "adaptive"):
        r = run[sweep]
        print(f"{sweep:9s} {r['seconds']:7.1f} s  work {r['work_fraction']:.3f}  spearman {r['spearman_quant']:.3f}/"
              f"{r['spearman_gauss']:.3f}  identical {r['identical']}  predicted x{r['predicted']['geomean']:.3f} "
              f"(worst x{r['predicted']['worst']:.3f})  measured x{r['measured']['geomean']:.3f} "
              f"(worst x{r['measured']['worst']:.3f})")


if __name__ == "__main__":
    main()
