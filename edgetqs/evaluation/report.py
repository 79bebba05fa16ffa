"""The evaluation's outputs: win rates per (model, mode, budget) cell, the results
table (JSON + CSV), the Pareto plots (error vs bytes, a line per method, a panel
per model and activation mode) and a self-contained HTML report, which also lists
what was skipped (a mode the planner refuses for a model, a method that cannot
run a mode) and why.

A method beats another in a cell when its rollouts blow up less often, or as
often with a better score, under three criteria: RMSE over the horizon against
the float model, RMSE against the truth, and valid prediction time against the
float model (steps until the normalised error passes 0.4 — the one that does
not saturate once a chaotic rollout has decorrelated). Equal within 1e-9
relative is a tie (half a win).
Random allocation enters as its mean over seeds. Fixed-size methods (uniform
int8/int4, first/last at 8 bits) enter a cell only when they fit its budget.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgetqs.files import write_atomically
from edgetqs.htmlpage import image, table
from edgetqs.quant.modes import Mode

TQS = "tqs-quant"
# The methods a win table is made for (each against every other method and the best baseline).
HEADLINE = ("tqs-quant", "tqs-saturation", "verified-search")
BASELINES = ("uniform-at-budget", "uniform-int8", "uniform-int4", "first-last-8", "weight-error", "single-step",
             "hessian", "random")
# criterion -> (reference, metric, +1 lower is better / -1 higher is better)
CRITERIA = {"rmse_vs_float": ("float", "rmse", 1.0), "rmse_vs_truth": ("truth", "rmse", 1.0),
            "vpt_vs_float": ("float", "valid_prediction_time", -1.0)}


def _cells(rows: list[dict]) -> dict[tuple[str, str, float], dict[str, dict]]:
    """(model, mode, bits) -> method -> its judged numbers (random: mean over seeds)."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    fixed = defaultdict(list)
    for r in rows:
        if r["budget_bits"] is None:
            fixed[(r["model"], r["mode"])].append(r)
        else:
            cells[(r["model"], r["mode"], r["budget_bits"])][r["method"]].append(r)
    result = {}
    for (model, mode, bits), methods in cells.items():
        budget = next((rs[0]["budget_bytes"] for rs in methods.values() if rs[0].get("budget_bytes")), None)
        merged = {m: _mean_row(rs) for m, rs in methods.items()}
        for r in fixed[(model, mode)]:
            if budget is not None and r["memory_bytes"] <= budget:
                merged[r["method"]] = _mean_row([r])
        result[(model, mode, bits)] = merged
    return result


def _mean_row(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k.startswith(("float_", "truth_")) or k == "memory_bytes"]
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    if len(rows) > 1:
        out.update({f"{k}_std": float(np.std([r[k] for r in rows])) for k in keys})
    return out


def _quality(row: dict, criterion: str) -> tuple[float, float]:
    """(blow-up fraction, signed score): lower is better in both."""
    reference, metric, sign = CRITERIA[criterion]
    value = sign * row[f"{reference}_{metric}"]
    return row[f"{reference}_blow_up_fraction"], value if math.isfinite(value) else math.inf


def _outcome(a: tuple, b: tuple) -> float:
    """1 win, 0.5 tie, 0 loss for ``a`` against ``b`` (lower is better)."""
    if abs(a[0] - b[0]) > 1e-12:
        return 1.0 if a[0] < b[0] else 0.0
    if abs(a[1] - b[1]) <= 1e-9 * max(abs(a[1]), abs(b[1]), 1e-30):
        return 0.5
    return 1.0 if a[1] < b[1] else 0.0


def win_rates(rows: list[dict], tqs: str = TQS) -> dict:
    """TQS's win rate against every other method and against the best baseline, per reference."""
    cells = _cells(rows)
    result = {}
    judged = [c for c, (ref, metric, _) in CRITERIA.items() if all(f"{ref}_{metric}" in r for r in rows)]
    for reference in judged:
        tally: dict = defaultdict(lambda: [0.0, 0, 0])  # wins (ties count half), cells, ties
        per_cell = []
        for (model, mode, bits), methods in sorted(cells.items()):
            if tqs not in methods:
                continue
            mine = _quality(methods[tqs], reference)
            cell = {"model": model, "mode": mode, "budget_bits": bits, "tqs": abs(mine[1])}
            for method, row in methods.items():
                if method != tqs:
                    _count(tally[method], _outcome(mine, _quality(row, reference)))
                    cell[method] = abs(_quality(row, reference)[1])
            baselines = [_quality(row, reference) for m, row in methods.items() if m in BASELINES]
            if baselines:
                best = min(baselines)
                _count(tally["best-baseline"], _outcome(mine, best))
                cell["best-baseline"] = abs(best[1])  # picked per cell after measuring: an oracle
            per_cell.append(cell)
        result[reference] = {"win_rate": {m: {"wins": w, "ties": t, "cells": n, "rate": round(w / n, 3),
                                              "geomean_ratio": _geomean_ratio(per_cell, m),
                                              "sign_test_p": _sign_test(w - t / 2, n - t - (w - t / 2))}
                                          for m, (w, n, t) in sorted(tally.items())},
                             "cells": per_cell}
    return result


def cost_error_correlation(rows: list[dict], criterion: str = "rmse_vs_float") -> dict:
    """Does a sensitivity's predicted cost order plans by their measured error?

    Per predictor: Spearman rank correlation between the cost its sensitivities
    predict for a plan and the plan's measured error (a blown-up plan ranks
    worst), over the distinct plans of every method in one group: ``all_sizes``
    groups by (model, mode) (size dominates: more bits, less of both),
    ``within_budget`` by (model, mode, budget) cell — the question an allocator
    faces. Mean over groups with at least 4 distinct plans.
    """
    from scipy.stats import spearmanr

    predictors = sorted({k.removeprefix("predicted_cost_") for r in rows for k in r if k.startswith("predicted_cost_")})
    groupings = {"all_sizes": lambda r: (r["model"], r["mode"]),
                 "within_budget": lambda r: (r["model"], r["mode"], r["budget_bits"])
                 if r["budget_bits"] is not None else None}
    result = {}
    for predictor in predictors:
        result[predictor] = {}
        for grouping, group_of in groupings.items():
            groups: dict = defaultdict(dict)
            for r in rows:
                if group_of(r) is not None and r.get(f"predicted_cost_{predictor}") is not None:
                    groups[group_of(r)][r["formats"] + str(r["memory_bytes"])] = r
            rhos = []
            for distinct in groups.values():
                if len(distinct) < 4:
                    continue
                error = [_quality(r, criterion) for r in distinct.values()]
                rho = spearmanr([r[f"predicted_cost_{predictor}"] for r in distinct.values()],
                                [sorted(error).index(e) for e in error]).statistic
                if math.isfinite(rho):
                    rhos.append(float(rho))
            result[predictor][grouping] = {"mean": round(float(np.mean(rhos)), 3) if rhos else None,
                                           "groups": len(rhos)}
    return result


def _geomean_ratio(cells: list[dict], method: str) -> float | None:
    """Geometric mean over cells of TQS's score / the method's (< 1: TQS lower), finite cells only."""
    logs = [math.log(c["tqs"] / c[method]) for c in cells
            if method in c and 0 < c["tqs"] < math.inf and 0 < c[method] < math.inf]
    return round(math.exp(float(np.mean(logs))), 3) if logs else None


def _sign_test(won: float, lost: float) -> float | None:
    """Two-sided sign test over the cells that differ (ties dropped): how surprising the
    split is if neither method were better. Cells of one model are not independent: a guide."""
    from scipy.stats import binomtest

    decided = int(round(won + lost))
    return round(float(binomtest(int(round(won)), decided).pvalue), 4) if decided else None


def _count(tally: list, outcome: float) -> None:
    tally[0] += outcome
    tally[1] += 1
    tally[2] += outcome == 0.5


def payload(rows: list[dict], notes: list[str], config: dict, timings: dict, searches: list[dict],
            plans: dict | None = None, skipped: list[dict] | None = None) -> dict:
    """Everything a report shows: rows, win tables of the headline methods, correlations, searches,
    every plan's formats (model -> plan_sha -> {unit: format}) so a cell can be re-rolled later, and
    what was skipped (model, mode, method or None for the whole mode, reason)."""
    present = {r["method"] for r in rows}
    result = {"config": config, "notes": notes, "seconds_per_model": timings, "searches": searches, "rows": rows,
              "plans": plans or {}, "skipped": skipped or [],
              "win_rates": {m: win_rates(rows, m) for m in HEADLINE if m in present},
              "cost_error_correlation": cost_error_correlation(rows)}
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    if len(modes) > 1:
        result["win_rates_by_mode"] = {
            mode: {m: win_rates(mine, m) for m in HEADLINE if m in {r["method"] for r in mine}}
            for mode in modes for mine in [[r for r in rows if r["mode"] == mode]]}
        result["mode_comparison"] = mode_comparison(rows)
    if SEARCH in present:
        result["search_targets"] = search_targets(rows, searches, timings)
    return result


SEARCH = "verified-search"


def mode_comparison(rows: list[dict], reference: str = Mode.DYNAMIC, criterion: str = "rmse_vs_float") -> dict:
    """Each other mode against ``reference``, per method, over the (model, budget bits) cells both have:
    geometric means of the other mode's RMSE and memory over the reference's, and how often it is
    better (fewer blow-ups, or as many and lower RMSE; ties half)."""
    cells = _cells(rows)
    result = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        if mode == reference:
            continue
        score = "{}_{}".format(*CRITERIA[criterion][:2])
        per_method: dict = defaultdict(lambda: {"rmse": [], "memory": [], "outcomes": []})
        for (model, m, bits), methods in cells.items():
            base = cells.get((model, reference, bits)) if m == mode else None
            for method, row in (methods.items() if base else []):
                if method in base:
                    tally = per_method[method]
                    tally["rmse"].append((row[score], base[method][score]))
                    tally["memory"].append((row["memory_bytes"], base[method]["memory_bytes"]))
                    tally["outcomes"].append(_outcome(_quality(row, criterion), _quality(base[method], criterion)))
        result[mode] = {method: {"cells": len(t["outcomes"]), "better": sum(t["outcomes"]),
                                 "rmse_ratio": _geomean(t["rmse"]), "memory_ratio": _geomean(t["memory"])}
                        for method, t in sorted(per_method.items())}
    return {"reference": reference, "criterion": criterion, "modes": result}


def _geomean(pairs: list[tuple[float, float]]) -> float | None:
    logs = [math.log(a / b) for a, b in pairs if 0 < a < math.inf and 0 < b < math.inf]
    return round(math.exp(float(np.mean(logs))), 3) if logs else None


def search_targets(rows: list[dict], searches: list[dict], timings: dict) -> dict:
    """Issue 13's three targets for the verified search, measured (RMSE vs float on held-out windows):

    - per cell, against the best baseline (BASELINES, picked after measuring) and against the best of
      every other method: at least as good (no more blow-ups, RMSE no higher) / strictly better;
    - Spearman between the search's prediction of its final plans (their rollout RMSE on the search
      windows) and LiteRT's measurement, over all cells, and per model and mode (across budgets);
    - search seconds (all budgets) / TQS sweep seconds (both probes), per model.
    """
    from scipy.stats import spearmanr

    cells = _cells(rows)
    per_cell = []
    for (model, mode, bits), methods in sorted(cells.items()):
        if SEARCH not in methods:
            continue
        mine = _quality(methods[SEARCH], "rmse_vs_float")
        baseline = [_quality(r, "rmse_vs_float") for m, r in methods.items() if m in BASELINES]
        others = [_quality(r, "rmse_vs_float") for m, r in methods.items() if m != SEARCH]
        per_cell.append({"model": model, "mode": mode, "budget_bits": bits, "search": mine[1],
                         "best_baseline": min(baseline)[1] if baseline else None,
                         "vs_best_baseline": _outcome(mine, min(baseline)) if baseline else None,
                         "best_other": min(others)[1] if others else None,
                         "vs_best_other": _outcome(mine, min(others)) if others else None})
    summary = {}
    for key in ("vs_best_baseline", "vs_best_other"):
        outcomes = [c[key] for c in per_cell if c[key] is not None]
        summary[key] = {"cells": len(outcomes), "at_least_as_good": sum(o >= 0.5 for o in outcomes),
                        "strictly_better": sum(o == 1.0 for o in outcomes)}
    finals = [r for r in rows if r["method"] == SEARCH and r.get("predicted_cost_rollout") is not None]
    pairs = [(r["predicted_cost_rollout"], r["float_rmse"] if r["float_blow_up_fraction"] == 0 else math.inf)
             for r in finals]
    rho_all = spearmanr(*zip(*pairs)).statistic if len(pairs) >= 3 else None
    per_model = {}
    for model, mode in dict.fromkeys((r["model"], r["mode"]) for r in finals):
        mine = [(r["predicted_cost_rollout"], r["float_rmse"]) for r in finals if (r["model"], r["mode"]) == (model, mode)]
        if len(mine) >= 3:
            per_model[f"{model} ({mode})"] = round(float(spearmanr(*zip(*mine)).statistic), 3)
    time_ratio = {m: round(t["search_seconds"] / t["tqs_sweep_seconds"], 2) for m, t in timings.items()
                  if t.get("search_seconds") and t.get("tqs_sweep_seconds")}
    return {"cells": per_cell, **summary,
            "final_plans_spearman": {"all_cells": round(float(rho_all), 3) if rho_all is not None else None,
                                     "per_model_across_budgets": per_model},
            "search_over_sweep_seconds": time_ratio}


def write_all(directory: Path, name: str, payload: dict) -> list[Path]:
    """``name``.json, .csv, .png (the fronts) and .html (all of it, plots inlined)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, csv_path, png_path, html_path = (directory / f"{name}.{ext}" for ext in ("json", "csv", "png", "html"))
    write_atomically(json_path, json.dumps(payload, indent=1, default=float))
    rows = payload["rows"]
    text = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(csv_path, text.getvalue())
    pareto_plot(rows, png_path)
    write_atomically(html_path, html_report(payload, png_path.read_bytes()))
    return [json_path, csv_path, png_path, html_path]


def html_report(payload: dict, png: bytes) -> str:
    """One HTML file with no outside references: the fronts as an inlined PNG and every table."""
    esc = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>edgetqs evaluation</title>",
             "<style>body{font:14px sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
             "th{background:#eee}td:first-child{text-align:left}</style>",
             "<h1>edgetqs evaluation</h1>"]
    config = payload.get("config", {})
    parts.append(f"<p>{esc(json.dumps({k: v for k, v in config.items() if k != 'settings'}, default=str))}</p>")
    skipped = payload.get("skipped", [])
    if skipped:
        parts.append("<h2>Skipped (not evaluated, and why)</h2>")
        parts.append(table([[s["model"], s["mode"], s["method"] or "every method", s["reason"], s["fix"]]
                            for s in skipped], ["model", "mode", "what", "reason", "fix"]))
    parts.append("<h2>Rollout error vs memory, per method (exported .tflite in LiteRT)</h2>")
    parts.append(image(png, "error vs bytes"))
    for method, block in payload.get("win_rates", {}).items():
        parts.append(f"<h2>Win table of {esc(method)}</h2>")
        parts.append(table([[vs] + [rate_text(block[c]["win_rate"].get(vs)) for c in block]
                           for vs in block["rmse_vs_float"]["win_rate"]],
                          ["vs"] + list(block)))
    for mode, blocks in payload.get("win_rates_by_mode", {}).items():
        for method, block in blocks.items():
            parts.append(f"<h3>Win table of {esc(method)}, {esc(mode)} cells only</h3>")
            parts.append(table([[vs] + [rate_text(block[c]["win_rate"].get(vs)) for c in block]
                               for vs in block["rmse_vs_float"]["win_rate"]], ["vs"] + list(block)))
    comparison = payload.get("mode_comparison")
    if comparison:
        parts.append(f"<h2>Modes against {esc(comparison['reference'])} at the same average bits "
                     f"({esc(comparison['criterion'])}; ratios are geometric means, other / reference)</h2>")
        parts.append(table([[mode, method, c["cells"], c["better"], c["rmse_ratio"], c["memory_ratio"]]
                            for mode, methods in comparison["modes"].items() for method, c in methods.items()],
                           ["mode", "method", "cells", "better (ties half)", "RMSE ratio", "memory ratio"]))
    corr = payload.get("cost_error_correlation", {})
    if corr:
        parts.append("<h2>Predicted vs measured (Spearman, mean over groups)</h2>")
        parts.append(table([[p, c["all_sizes"]["mean"], c["within_budget"]["mean"]]
                           for p, c in corr.items()],
                          ["predictor", "across sizes", "within a budget"]))
    searches = payload.get("searches", [])
    if searches:
        parts.append("<h2>Verified search: knapsack start vs best found (search windows)</h2>")
        parts.append(table([[s["model"], s["budget_bits"], s["evaluations"], s["seconds"], s["stopped"],
                            s["knapsack"]["rmse"], s["best"]["rmse"]] for s in searches],
                          ["model", "bits", "evaluations", "seconds", "stopped", "knapsack RMSE", "best RMSE"]))
    targets = payload.get("search_targets")
    if targets:
        parts.append("<h2>Verified search against the issue's targets (RMSE vs float, held-out windows)</h2>")
        parts.append(table([[k, targets[k]["cells"], targets[k]["at_least_as_good"], targets[k]["strictly_better"]]
                           for k in ("vs_best_baseline", "vs_best_other")],
                          ["against", "cells", "at least as good", "strictly better"]))
        parts.append(f"<p>Spearman(search prediction, LiteRT measurement) of the final plans: "
                     f"{esc(json.dumps(targets['final_plans_spearman']))}; search/sweep seconds: "
                     f"{esc(json.dumps(targets['search_over_sweep_seconds']))}</p>")
    rows = payload.get("rows", [])
    columns = ["model", "mode", "method", "budget_bits", "memory_bytes", "file_bytes", "formats", "float_rmse",
               "float_valid_prediction_time", "float_blow_up_fraction", "predicted_cost_rollout", "truth_rmse",
               "int8_activations"]
    parts.append("<h2>Every plan</h2>")
    parts.append(table([[r.get(c) for c in columns] for r in rows], columns))
    for note in payload.get("notes", []):
        parts.append(f"<p>note: {esc(note)}</p>")
    return "\n".join(parts)


def rate_text(w: dict | None) -> str:
    if not w:
        return "-"
    strict = w["wins"] - w["ties"] / 2
    return f"{w['rate']:.2f} ({strict:g}/{w['ties']}/{w['cells'] - w['ties'] - strict:g})"


def pareto_plot(rows: list[dict], path: Path, reference: str = "float") -> None:
    """Per model and mode: RMSE of the exported model's rollout vs memory bytes, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys((r["model"], r["mode"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    cols = min(4, len(models))
    rows_n = -(-len(models) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
    for ax, (model, mode) in zip(axes.flat, models):
        mine = [r for r in rows if (r["model"], r["mode"]) == (model, mode)]
        for method in dict.fromkeys(r["method"] for r in mine):
            points = defaultdict(list)
            for r in mine:
                if r["method"] == method:
                    points[r["budget_bits"]].append((r["memory_bytes"], r[f"{reference}_rmse"]))
            xs = [np.mean([p[0] for p in ps]) for _, ps in sorted(points.items(), key=lambda kv: kv[0] or 0)]
            ys = [np.mean([p[1] for p in ps]) for _, ps in sorted(points.items(), key=lambda kv: kv[0] or 0)]
            style = "o" if None in points else (".--" if method.startswith("tqs-") and method != TQS else ".-")
            ax.plot(np.array(xs) / 1024, ys, style, label=method, lw=2.4 if method == TQS else 1,
                    color="black" if method == TQS else colors[method], zorder=5 if method == TQS else 2)
        ax.set_title(f"{model} ({mode})", fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("memory (KiB)", fontsize=8)
        ax.set_ylabel(f"rollout RMSE vs {reference}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.08 if len(labels) > 6 else 0.05, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_summary(payload: dict) -> None:
    if "wall_seconds" in payload:
        print(f"wall time: {payload['wall_seconds']} s on {payload['machine']['cpu']} "
              f"({payload['machine']['cores']} cores)")
    for note in payload["notes"]:
        print("note:", note)
    for s in payload.get("skipped", []):
        print(f"skipped: {s['model']} {s['mode']} {s['method'] or 'every method'}: {s['reason']}")
    for headline, blocks in payload["win_rates"].items():
        for reference, block in blocks.items():
            print(f"{headline} win rate per (model, mode, budget) cell, {reference}:")
            for method, w in block["win_rate"].items():
                strict = w["wins"] - w["ties"] / 2
                ratio = w.get("geomean_ratio")
                print(f"  vs {method:24} {w['rate']:.2f}  (won {strict:g}, tied {w['ties']}, lost "
                      f"{w['cells'] - w['ties'] - strict:g} of {w['cells']}; it/them {ratio if ratio else '-'}; "
                      f"sign test p {w['sign_test_p']})")
    comparison = payload.get("mode_comparison")
    if comparison:
        print(f"modes against {comparison['reference']} at the same average bits ({comparison['criterion']}; "
              "geometric means, other / reference):")
        for mode, methods in comparison["modes"].items():
            for method, c in methods.items():
                print(f"  {mode:8} {method:20} better in {c['better']:g} of {c['cells']} cells; RMSE x{c['rmse_ratio']}, "
                      f"memory x{c['memory_ratio']}")
    print("Spearman(predicted cost, measured RMSE vs float) over distinct plans, mean over groups:")
    for predictor, c in payload.get("cost_error_correlation", {}).items():
        print(f"  {predictor:16} " + "  ".join(f"{g}: {v['mean'] if v['mean'] is not None else float('nan'):+.3f} "
                                                f"({v['groups']} groups)" for g, v in c.items()))
