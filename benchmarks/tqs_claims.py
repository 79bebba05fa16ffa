"""The paper's TQS claims (METHOD.md §3), checked on our zoo.

    .venv/bin/python benchmarks/tqs_claims.py [ZOO_NAME ...]

Per model, with data-free contexts (K=16 windows, T=32 model calls):
- Spearman of gamma_gauss vs gamma_quant over units, at layer and at block level;
- where the input and output projections (the first and last weighted ops)
  rank by gamma_quant among the layers (1 = most sensitive);
- prediction: each layer alone is quantized (reference quantizer, per channel)
  at 4 and at 2 bits and the model rolled out from K *held-out data windows*
  (the system's test series — not the contexts gamma was scored on); the
  measured error is the RMSE over the horizon against the float rollout, mean
  over windows. Reported: Spearman of that error vs gamma_quant, and vs the
  planner's predicted cost exp(gamma * T) * ||delta_b||.
Writes benchmarks/results/tqs_claims.json and prints a table.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr

from tqs_common import machine, write_results, zoo_names

HORIZON, WINDOWS, SEED = 32, 16, 0


def rank_correlation(a, b) -> float | None:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def held_out_windows(model):
    from edgetqs import zoo
    from edgetqs.tqs.contexts import from_series

    data = zoo.system_data(model.card.extra.get("system", model.card.name), model.card.extra.get("seed", 0))
    return from_series(data.denormalise(data.test), model.card.rollout, WINDOWS, HORIZON, source="test-series").windows


def measured_errors(backend, model, units, windows, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: rollout RMSE (vs float) with only that unit quantized at ``bits``; and ||delta||."""
    from edgetqs.tqs.probes import delta_norm, unit_delta

    weights = {t: model.graph.float_constant(model.graph.tensor_by_name(t)) for u in units for t in u.weight_tensors}
    deltas = [unit_delta(u, weights, "quant", bits, SEED) for u in units]
    runs = backend.rollout_probes(windows, HORIZON, [{}] + deltas).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        rmse = np.sqrt(np.mean((runs[1:] - runs[0]) ** 2, axis=(2, 3))).mean(axis=1)
    rmse = np.where(np.isfinite(rmse), rmse, np.finfo(np.float32).max)  # a blow-up ranks as the worst error
    return rmse, np.array([delta_norm(d) for d in deltas])


def evaluate(name: str) -> dict:
    from edgetqs import zoo
    from edgetqs.tqs.contexts import free_run
    from edgetqs.tqs.score import ScoreSettings, backend_for, score_model
    from edgetqs.tqs.units import build_units

    model = zoo.build(name)
    backend = backend_for(model.graph, model.card, "numba")
    contexts = free_run(backend, model.card.rollout, WINDOWS, SEED)
    result = {"model": name, "engine": backend.name}
    by_level = {}
    for level in ("layer", "block"):
        settings = ScoreSettings(probe="both", granularity=level, horizon=HORIZON, windows=WINDOWS, seed=SEED)
        scores = score_model(model.graph, model.card, settings, backend=backend, contexts=contexts, progress=False)
        live = [u for u in scores.units if not u.dead]
        by_level[level] = scores
        result[f"{level}_units"] = len(scores.units)
        result[f"spearman_gauss_quant_{level}"] = rank_correlation([u.gamma_gauss for u in live],
                                                                   [u.gamma_quant for u in live])
    layers = by_level["layer"].units
    gamma = np.array([u.gamma_quant for u in layers])
    order = list(np.argsort(-gamma))
    result["dead_layers"] = [u.name for u in layers if u.dead]
    # The input and output projections: the first and the last weighted op in the graph.
    op_index = {layer.name: layer.op_index for layer in model.card.layers}
    first = min(range(len(layers)), key=lambda i: op_index[layers[i].name])
    last = max(range(len(layers)), key=lambda i: op_index[layers[i].name])
    result["input_proj"], result["output_proj"] = layers[first].name, layers[last].name
    result["input_proj_rank"], result["output_proj_rank"] = order.index(first) + 1, order.index(last) + 1
    result["io_are_top2"] = {first, last} == set(order[:2])
    result["most_sensitive"] = layers[order[0]].name
    units = build_units(model.card, model.graph, "layer")
    windows = held_out_windows(model)
    for bits in (4, 2):
        error, norms = measured_errors(backend, model, units, windows, bits)
        cost = np.exp(np.clip(gamma * HORIZON, -700, 700)) * norms
        result[f"spearman_gamma_vs_error_int{bits}"] = rank_correlation(gamma, error)
        result[f"spearman_cost_vs_error_int{bits}"] = rank_correlation(cost, error)
    return result


COLUMNS = [("model", "model", 22), ("L", "layer_units", 3), ("B", "block_units", 3),
           ("ρ g/q layer", "spearman_gauss_quant_layer", 11), ("ρ g/q block", "spearman_gauss_quant_block", 11),
           ("in rank", "input_proj_rank", 7), ("out rank", "output_proj_rank", 8),
           ("ρ γ/err4", "spearman_gamma_vs_error_int4", 8), ("ρ cost/err4", "spearman_cost_vs_error_int4", 11),
           ("ρ γ/err2", "spearman_gamma_vs_error_int2", 8), ("ρ cost/err2", "spearman_cost_vs_error_int2", 11)]


def _cell(value, width) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:{width}.2f}"
    return str(value).rjust(width) if not isinstance(value, str) else value.ljust(width)


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for _, key, _ in COLUMNS:
        values = [r[key] for r in rows if isinstance(r.get(key), float)]
        if values and key.startswith("spearman"):
            summary[f"mean_{key}"] = float(np.mean(values))
    if rows:
        summary["io_top2_fraction"] = float(np.mean([r["io_are_top2"] for r in rows]))
        summary["output_proj_top1_fraction"] = float(np.mean([r["output_proj_rank"] == 1 for r in rows]))
        summary["input_proj_top2_fraction"] = float(np.mean([r["input_proj_rank"] <= 2 for r in rows]))
    summary["models"] = len(rows)
    return summary


def main(argv: list[str]) -> int:
    info = machine()
    rows = []
    print("  ".join(title.rjust(w) if i else title.ljust(w) for i, (title, _, w) in enumerate(COLUMNS)))
    for name in zoo_names(argv):
        try:
            row = evaluate(name)
        except Exception as exc:  # keep going: one model's failure is a result too
            row = {"model": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            print(f"{name:22s}  failed: {row['error']}", flush=True)
            rows.append(row)
            continue
        rows.append(row)
        print("  ".join(_cell(row.get(key), w) for _, key, w in COLUMNS), flush=True)
    good = [r for r in rows if "error" not in r]
    summary = summarise(good)
    path = write_results("tqs_claims", {"machine": info, "horizon": HORIZON, "windows": WINDOWS, "seed": SEED,
                                        "models": rows, "summary": summary})
    print("\nmeans over models: " + ", ".join(f"{k.removeprefix('mean_')} {v:.3f}" for k, v in summary.items()
                                             if k.startswith("mean_")))
    if good:
        print(f"of {summary['models']} models: output projection most sensitive in {summary['output_proj_top1_fraction']:.0%}, "
              f"input projection in the top 2 in {summary['input_proj_top2_fraction']:.0%}, "
              f"both the top two in {summary['io_top2_fraction']:.0%}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
