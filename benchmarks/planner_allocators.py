"""Planner benchmark: allocator speed on a synthetic front, and on the zoo the exact
optimum vs greedy, plus predicted vs AEQ-produced model size.

    .venv/bin/python benchmarks/planner_allocators.py            # synthetic + every zoo model
    .venv/bin/python benchmarks/planner_allocators.py --synthetic-only
    .venv/bin/python benchmarks/planner_allocators.py --models mlp-sunspots,tcn-sunspots

Synthetic: 1,000 units x 6 formats x 20 budgets, the whole front with each
allocator; greedy is the baseline measured in the same run. Zoo: each model is
scored (small horizon), its front planned with both allocators, the front plot
written to benchmarks/results/planner_front_<model>.png, and three plans
quantized by AEQ through the converter's recipe to compare sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgetqs.planner.allocators import Option, allocate_front, smallest_bytes, totals  # noqa: E402
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME  # noqa: E402

from tqs_common import RESULTS  # noqa: E402
FORMAT_BITS = (2, 4, 8, 16, 32)


def machine() -> str:
    from tqs_common import machine as machine_facts  # the benchmarks' shared machine description

    facts = machine_facts()
    return f"{facts['cpu']}, {facts['cores']} cores, Python {facts['python']}, load {facts['load_avg_1min']:.1f}"


def synthetic_instance(rng, units: int = 1000) -> list[list[Option]]:
    """Weight-like units: int2/int4/int8 channelwise, int4_b32, fp16, fp32 (6 formats), byte-exact style sizes."""
    options = []
    for _ in range(units):
        out, fan_in = int(rng.integers(8, 256)), int(rng.choice([32, 64, 128, 256]))
        n = out * fan_in
        amplification = np.exp(rng.normal(0, 1.5))
        spread = np.sqrt(n) * rng.uniform(0.02, 0.1)
        unit = [Option(n * b // 8 + 12 * out, amplification * spread * 2.0 ** -(b - 1)) for b in (2, 4, 8)]
        unit.append(Option(n // 2 + 2 * out * fan_in // 32 + 94, amplification * spread * 2.0**-3.6))  # int4_b32
        unit.append(Option(2 * n + 80, amplification * spread * 2.0**-11))  # fp16
        unit.append(Option(4 * n, 0.0))  # fp32
        options.append(unit)
    return options


def time_front(options, allocator: str, budgets: int = 20) -> tuple[float, list[float]]:
    low, high = smallest_bytes(options), sum(max(o.bytes for o in u) for u in options)
    capacities = [int(c) for c in np.linspace(low, high, budgets)]
    start = time.perf_counter()
    choices = allocate_front(allocator, options, capacities)
    elapsed = time.perf_counter() - start
    objectives = []
    for capacity, choice in zip(capacities, choices):
        size, cost = totals(options, choice)
        assert size <= capacity
        objectives.append(cost)
    return elapsed, objectives


def synthetic(repeats: int = 3) -> None:
    rng = np.random.default_rng(0)
    options = synthetic_instance(rng)
    print("synthetic: 1000 units x 6 formats x 20 budgets (whole front)")
    results = {}
    for name in ("greedy", "mckp"):
        times, objectives = [], None
        for _ in range(repeats):
            elapsed, objectives = time_front(options, name)
            times.append(elapsed)
        results[name] = (min(times), objectives)
        print(f"  {name:6s}: best of {repeats} {min(times):.3f} s for the front")
    ratio = results["mckp"][0] / results["greedy"][0]
    gaps = [(g - e) / g for e, g in zip(results["mckp"][1], results["greedy"][1]) if g > 0]
    print(f"  exact/greedy time ratio {ratio:.2f}; greedy objective above the optimum by "
          f"mean {100 * np.mean(gaps):.3f}%, max {100 * np.max(gaps):.3f}% (over the 20 budgets)")


def zoo(names: list[str]) -> None:
    from ai_edge_quantizer import quantizer

    from edgetqs.quant.aeq import build_recipe
    from edgetqs.zoo.resolve import load_model
    from edgetqs.planner.conformance import CapabilityMatrix
    from edgetqs.planner.front import pareto_front, plot_front
    from edgetqs.planner.plan import build_problem, solve
    from edgetqs.tqs.score import ScoreSettings, score_model

    RESULTS.mkdir(parents=True, exist_ok=True)
    matrix = CapabilityMatrix.load()
    print("\nzoo: exact vs greedy predicted error on a 10-budget front; predicted vs AEQ file size")
    print(f"  {'model':24s} {'units':>5s} {'float B':>9s} {'greedy/exact (mean, max)':>26s} "
          f"{'size error max':>15s} {'front s':>8s}")
    for name in names:
        model = load_model(f"zoo:{name}")
        scores = score_model(model.graph, model.card, ScoreSettings(horizon=20, windows=4), progress=False)
        problem = build_problem(model.graph, scores, "bench", DEFAULT_HOST_RUNTIME.spec, "dynamic", matrix)
        start = time.perf_counter()
        front = pareto_front(problem, budgets=10)
        elapsed = time.perf_counter() - start
        ratios = []
        for point in front.points:
            greedy = solve(problem, point.budget_bytes, "greedy").predicted["total_cost"]
            if point.total_cost > 0:
                ratios.append(greedy / point.total_cost)
        plot_front(front, problem, RESULTS / f"planner_front_{name}.png")
        size_errors = []
        for point in (front.points[0], front.points[front.knee], front.points[len(front.points) // 2]):
            recipe = build_recipe(model.graph, point.plan.formats(), "dynamic")
            with contextlib.redirect_stdout(io.StringIO()):  # AEQ prints a summary per run
                actual = len(quantizer.Quantizer(str(model.tflite_path), recipe).quantize().quantized_model)
            size_errors.append(abs(point.plan.predicted["model_bytes"] - actual) / actual)
        ratio_text = f"{np.mean(ratios):.4f}, {np.max(ratios):.4f}" if ratios else "-"
        print(f"  {name:24s} {len(problem.units):5d} {model.graph.size_bytes:9d} {ratio_text:>26s} "
              f"{100 * max(size_errors):14.3f}% {elapsed:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic-only", action="store_true")
    parser.add_argument("--models", help="comma-separated zoo names (default: all)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    synthetic()
    if not args.synthetic_only:
        from edgetqs import zoo as zoo_registry

        names = args.models.split(",") if args.models else [e.name for e in zoo_registry.list_models()]
        zoo(names)


if __name__ == "__main__":
    main()
