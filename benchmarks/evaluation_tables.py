"""The tables of docs/EVALUATION.md, printed as Markdown from evaluation results
(``benchmarks/evaluate.py`` writes them), so every number in the document can be
regenerated from the JSON it came from:

    .venv/bin/python benchmarks/evaluation_tables.py benchmarks/results/evaluation_deep_modes.json
    .venv/bin/python benchmarks/evaluation_tables.py benchmarks/results/evaluation_core_ablations.json --mode dynamic

Reads only what ``edgetqs.evaluation.report.payload`` computed (win rates, Spearman,
search targets, mode comparison); no number is recomputed here but the per-cell
lists of the search's misses and the ablations (both read from the payload's rows).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetqs.evaluation.report import BASELINES, HEADLINE, SEARCH, TQS, rate_text  # noqa: E402

# Columns of the win tables: what each headline method is set against, in this order.
OPPONENTS = ("best-baseline", "tqs-quant", "tqs-saturation", "single-step", "weight-error", "hessian", "random",
             "uniform-at-budget")
PREDICTORS = ("rollout", "single-step", "tqs-quant", "tqs-gauss", "tqs-saturation", "hessian", "weight-error")


def win_table(wins: dict, criterion: str) -> list[str]:
    methods = [m for m in (SEARCH, TQS, "tqs-saturation") if m in wins and criterion in wins[m]]
    lines = ["| vs | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for other in OPPONENTS:
        cells = []
        for m in methods:
            w = wins[m][criterion]["win_rate"].get(other)
            cells.append("—" if m == other else f"{rate_text(w)}, {w['geomean_ratio']:.2f}" if w else "-")
        if any(c not in ("-", "—") for c in cells):
            lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return lines


def spearman_table(correlation: dict) -> list[str]:
    lines = ["| predictor | across sizes, per model | within one budget, per cell |", "|---|---|---|"]
    for name in (p for p in PREDICTORS if p in correlation):
        c = correlation[name]
        lines.append(f"| {name} | {c['all_sizes']['mean']:+.2f} ({c['all_sizes']['groups']}) "
                     f"| {c['within_budget']['mean']:+.2f} ({c['within_budget']['groups']}) |")
    return lines


def targets(payload: dict) -> list[str]:
    t = payload["search_targets"]
    b, o = t["vs_best_baseline"], t["vs_best_other"]
    lines = [f"- at least as good as the best baseline per cell: {b['at_least_as_good']} of {b['cells']} cells "
             f"({b['at_least_as_good'] / b['cells']:.0%}); strictly better: {b['strictly_better']} "
             f"({b['strictly_better'] / b['cells']:.0%})",
             f"- against the best of every other method (TQS variants included): {o['at_least_as_good']} / "
             f"{o['strictly_better']} of {o['cells']}",
             f"- final plans, predicted (search-window rollout) vs measured (LiteRT, held out) Spearman: "
             f"{t['final_plans_spearman']['all_cells']} over all cells; per model "
             + ", ".join(f"{k} {v}" for k, v in t["final_plans_spearman"]["per_model_across_budgets"].items()),
             "- search seconds (all budgets) / TQS sweep seconds: "
             + ", ".join(f"{k} {v}×" for k, v in t["search_over_sweep_seconds"].items())]
    missed = [c for c in t["cells"] if c["vs_best_baseline"] is not None and c["vs_best_baseline"] < 0.5]
    for c in missed:
        if math.isinf(c["search"]):  # the cell's RMSE is inf where some windows blew up: more of the search's did
            what = "its plan blew up on more held-out windows"
        else:
            what = f"search {c['search']:.4g} vs best baseline {c['best_baseline']:.4g} " \
                   f"(+{c['search'] / c['best_baseline'] - 1:.1%})"
        lines.append(f"  - missed: {c['model']} at {c['budget_bits']:g} bits ({c['mode']}): {what}")
    return lines


def ablations(rows: list[dict], mode: str) -> list[str]:
    """Each TQS variant against fixed-T tqs-quant, cell by cell (RMSE vs float, blow-ups first)."""
    from edgetqs.evaluation.report import _cells, _outcome, _quality

    cells = {k: v for k, v in _cells(rows).items() if k[1] == mode}
    variants = sorted({m for v in cells.values() for m in v if m.startswith("tqs-") and m != TQS})
    lines = ["| variant vs tqs-quant | won / tied / lost | cells |", "|---|---|---|"]
    for variant in variants:
        out = [_outcome(_quality(v[variant], "rmse_vs_float"), _quality(v[TQS], "rmse_vs_float"))
               for v in cells.values() if variant in v and TQS in v]
        won, tied = sum(o == 1.0 for o in out), sum(o == 0.5 for o in out)
        lines.append(f"| {variant} | {won} / {tied} / {len(out) - won - tied} | {len(out)} |")
    return lines


def mode_table(comparison: dict) -> list[str]:
    lines = []
    for mode, methods in comparison["modes"].items():
        lines += [f"| method | {mode} / {comparison['reference']} RMSE | memory | {mode} better | cells |",
                  "|---|---|---|---|---|"]
        for method, c in methods.items():
            lines.append(f"| {method} | {c['rmse_ratio']}× | {c['memory_ratio']}× | {c['better']:g} | {c['cells']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="an evaluation JSON from benchmarks/evaluate.py")
    parser.add_argument("--mode", default=None, help="only this activation mode's win tables")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # numpy on cells whose windows all blew up (nan means)
    payload = json.loads(Path(args.results).read_text())
    rows = payload["rows"]
    print(f"# {args.results}: {payload['config']['command']}; {len({r['model'] for r in rows})} models, "
          f"wall {payload['wall_seconds']} s, load at start {payload['machine'].get('load_avg_1min')}\n")
    by_mode = payload.get("win_rates_by_mode") or {"dynamic": payload["win_rates"]}
    for mode, wins in by_mode.items():
        if args.mode and mode != args.mode:
            continue
        for criterion in ("rmse_vs_float", "vpt_vs_float", "rmse_vs_truth"):
            print(f"## {mode}: {criterion}, row method against column: rate (won/tied/lost), error ratio\n")
            print("\n".join(win_table(wins, criterion)) + "\n")
        print(f"## {mode}: TQS variants against fixed-T tqs-quant\n")
        print("\n".join(ablations(rows, mode)) + "\n")
    print("## Predicted vs measured (Spearman, mean over groups with >= 4 plans; groups in brackets)\n")
    print("\n".join(spearman_table(payload["cost_error_correlation"])) + "\n")
    if payload.get("search_targets", {}).get("cells"):
        print("## The search's targets\n")
        print("\n".join(targets(payload)) + "\n")
    if payload.get("mode_comparison", {}).get("modes"):
        print("## Activation modes, same method and average bits\n")
        print("\n".join(mode_table(payload["mode_comparison"])) + "\n")
    baselines_seen = sorted({r["method"] for r in rows if r["method"] in BASELINES})
    print(f"baselines in 'best baseline per cell': {', '.join(baselines_seen)}; headline methods: {', '.join(HEADLINE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
