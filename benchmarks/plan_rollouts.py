"""Whole-plan rollouts on the fake-quant backend: P plans batched in one engine call
(``FakeQuantEngine.rollout_plans``) vs the same P plans rolled out one after another
(a fake-quantized copy of the weights per plan, then ``rollout``) — the baseline, measured in
the same run. Both give the same trajectories (checked); the ratio is what batching buys.

    .venv/bin/python benchmarks/plan_rollouts.py [ZOO_NAME] [--plans P] [--windows K] [--horizon T]

Plans are seeded random {tensor: format} over int8/int4/fp16 for the model's linear weights;
activations stay float (mode "float"), as the verified plan search rolls weight-only plans.
Best of REPEATS, interleaved; the numba kernels are warmed up first. Writes
benchmarks/results/plan_rollouts.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tqs_common import machine, write_results

REPEATS = 3
FORMATS = ("int8", "int4", "fp16")


def one_at_a_time(graph, spec, contexts, horizon, plans, config):
    from edgetqs.ranges.executor import FakeQuantEngine

    runs = []
    for plan in plans:
        engine = FakeQuantEngine(graph, spec, config)
        for name, delta in engine.plan_deltas(plan).items():
            index = next(i for i in engine.constants if engine.tensor_name(i) == name)
            engine.set_constant(index, engine.weight(name) + delta)
        runs.append(engine.rollout(contexts, horizon))
    return np.stack(runs)


def main() -> None:
    from edgetqs import zoo
    from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
    from edgetqs.tqs.contexts import free_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="mlp-lorenz96")
    parser.add_argument("--plans", type=int, default=8)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=16)
    args = parser.parse_args()

    model = zoo.build(args.model)
    graph, spec = model.graph, model.card.rollout
    config = QuantConfig("float", weight_bits=None)
    batched_engine = FakeQuantEngine(graph, spec, config)
    weights = [op.inputs[1] for op in batched_engine.ops() if op.opcode in ("FULLY_CONNECTED", "CONV_2D")
               and op.inputs[1] in op.weights]
    rng = np.random.default_rng(0)
    plans = [{w: FORMATS[rng.integers(len(FORMATS))] for w in weights} for _ in range(args.plans)]
    contexts = free_run(batched_engine, spec, args.windows, 0, args.horizon).windows

    batched_engine.rollout_plans(contexts, 2, plans[:2])  # warm-up: numba compiles (cached) kernels
    best = {"batched": float("inf"), "one at a time": float("inf")}
    for _ in range(REPEATS):
        start = time.perf_counter()
        batched = batched_engine.rollout_plans(contexts, args.horizon, plans)
        best["batched"] = min(best["batched"], time.perf_counter() - start)
        start = time.perf_counter()
        serial = one_at_a_time(graph, spec, contexts, args.horizon, plans, config)
        best["one at a time"] = min(best["one at a time"], time.perf_counter() - start)
    error = float(np.max(np.abs(batched - serial)) / max(np.max(np.abs(serial)), 1e-12))
    result = {"model": args.model, "plans": args.plans, "windows": args.windows, "horizon": args.horizon,
              "batched_s": best["batched"], "one_at_a_time_s": best["one at a time"],
              "speedup": best["one at a time"] / best["batched"], "max_relative_difference": error,
              "machine": machine()}
    for name, seconds in best.items():
        print(f"{name:14s} {seconds:8.3f} s")
    print(f"speedup {result['speedup']:.2f}x; trajectories agree to {error:.1e} (relative); "
          f"load {result['machine']['load_avg_1min']:.1f}")
    write_results("plan_rollouts", result)


if __name__ == "__main__":
    main()
