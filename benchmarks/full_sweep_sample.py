"""The full sweep on a random sample of units, against an adaptive score of the same model.

    .venv/bin/python benchmarks/full_sweep_sample.py MODEL SCORES.json [--units 24] [--seed 0]

For a model whose full K=16, T=32 sweep is out of reach here (patchtf-118m: ~16x its adaptive
score, hours on 2 cores), its ranking check runs on a seeded random sample of its units: each
sampled unit's full-sweep gammas (both probes) are exactly what the whole sweep would give it —
a job's distances depend only on its own rows of the engine's batch and its probe on the
tensor's name (tqs/sweep.py, tqs/probes.py), never on which other units ran — so Spearman
between the sample's full-sweep gammas and the adaptive file's gammas of the same units is the
whole sweep's Spearman estimated on that sample (with a bootstrap interval over the units).
The sweep's time per unit gives the whole full sweep's time by measurement, not by guess.
Writes benchmarks/results/full_sweep_sample_<model>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tqs_common import machine, write_results

FULL_WINDOWS, FULL_HORIZON, BOOTSTRAP = 16, 32, 2000


def sampled_full_sweep(model, count: int, seed: int):
    from edgetqs.tqs.score import ScoreSettings, _Sweep, _runner_for, backend_for, make_contexts
    from edgetqs.tqs.units import build_units

    settings = ScoreSettings(windows=FULL_WINDOWS, horizon=FULL_HORIZON).validate()
    units = build_units(model.card, model.graph, settings.granularity, settings.block_regex)
    picked = sorted(np.random.default_rng(seed).choice(len(units), min(count, len(units)), replace=False))
    backend = backend_for(model.graph, model.card)
    start = time.perf_counter()
    contexts = make_contexts(backend, model.card, settings)  # the windows the whole full sweep would use
    sweep = _Sweep(_runner_for(settings, backend, model.graph, model.card), [units[i] for i in picked], contexts,
                   settings, model.card.rollout.patch)
    scores, _ = sweep.run(True)
    return scores, len(units), time.perf_counter() - start


def bootstrap_spearman(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    from edgetqs.tqs.adaptive import spearman

    rng = np.random.default_rng(seed)
    draws = [spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(BOOTSTRAP))]
    return float(np.percentile(draws, 5)), float(np.percentile(draws, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("scores", help="the adaptive score file of the same model")
    parser.add_argument("--units", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0, help="which units are sampled")
    args = parser.parse_args()
    from edgetqs.model.intake import load_model
    from edgetqs.tqs.adaptive import spearman
    from edgetqs.tqs.scorefile import load_scores

    model, adaptive = load_model(Path(args.model).expanduser()), load_scores(Path(args.scores).expanduser())
    run = {"machine_start": machine(), "adaptive_settings": adaptive.settings}
    full, total_units, seconds = sampled_full_sweep(model, args.units, args.seed)
    by_name = {u.name: u for u in adaptive.units}
    run.update(units_sampled=[u.name for u in full], units_total=total_units, seconds=seconds,
               whole_sweep_seconds_estimate=seconds * total_units / len(full))
    for probe in ("quant", "gauss"):
        a = np.array([u.gamma(probe) for u in full])
        b = np.array([by_name[u.name].gamma(probe) for u in full])
        run[f"spearman_{probe}"] = spearman(a, b)
        run[f"spearman_{probe}_90pct_bootstrap"] = bootstrap_spearman(a, b, args.seed)
        run[f"gammas_{probe}"] = {"full": a.tolist(), "adaptive": b.tolist()}
    run["machine_end"] = machine()
    name = Path(args.model).name.split(".")[0]
    print(write_results(f"full_sweep_sample_{name}", run))
    print(f"{len(full)} of {total_units} units, full sweep {seconds:.0f} s (whole sweep ~"
          f"{run['whole_sweep_seconds_estimate'] / 60:.0f} min); Spearman vs adaptive: quant "
          f"{run['spearman_quant']:.3f} {run['spearman_quant_90pct_bootstrap']}, gauss {run['spearman_gauss']:.3f} "
          f"{run['spearman_gauss_90pct_bootstrap']}")


if __name__ == "__main__":
    main()
