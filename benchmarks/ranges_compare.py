"""Static vs dynamic vs probabilistic activation ranges (issue #8, METHOD.md §4).

For each model: calibrate on a few training windows, roll out the float model
and the weight-int8 model with int8 and int4 activations under each range mode
from the same test contexts, and report rollout error against the float
rollout, per-layer miss rates of the probabilistic ranges, the estimator's
cost per step next to the layers' own cost (both timed in this run), and the
working memory each mode needs.

    .venv/bin/python benchmarks/ranges_compare.py                     # built zoo models, else stand-ins
    .venv/bin/python benchmarks/ranges_compare.py zoo:tcn-lorenz96 --horizon 30 --granularity channel

Writes benchmarks/results/ranges_compare.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# One thread for BLAS and numba: timings then compare work, not thread contention on a
# shared machine, and a single core is the edge board's situation anyway.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ranges"))

from edgetqs.engine.registry import lookup  # noqa: E402
from edgetqs.ranges.compare import compare_modes, table  # noqa: E402
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig  # noqa: E402

DEFAULT_ZOO = ["mlp-lorenz96", "gru-lorenz96", "tcn-lorenz96", "transformer-lorenz96", "mlp-ks", "mlp-sunspots",
               "tcn-sunspots", "tcn-co2", "transformer-co2"]


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} threads=1 "
            f"load={os.getloadavg()[0]:.1f} python={platform.python_version()} numpy={np.__version__}")


def zoo_case(name: str, horizon_cap: int, count: int, calib: int):
    from edgetqs import zoo

    model = zoo.build(name)
    spec = model.rollout
    horizon = min(zoo.entry(name).horizon, horizon_cap)
    contexts, _ = zoo.true_trajectories(name, spec.window, horizon, count=count)
    train = zoo.system_data(name).train
    starts = np.linspace(0, len(train) - spec.window - 1, calib).astype(int)
    calibration = np.stack([train[s : s + spec.window] for s in starts]).astype(np.float32)
    return model.graph, spec, calibration, contexts, horizon


def standin_case(name: str, horizon_cap: int, count: int, calib: int):
    import standins

    from edgetqs.model.card import RolloutSpec
    from edgetqs.model.tflite_graph import TFLiteGraph

    cache = Path(os.environ.get("EDGETQS_CACHE", Path.home() / ".cache" / "edgetqs")) / "ranges-standins"
    graph = TFLiteGraph.load(standins.build_tflite(name, cache, epochs=2))
    spec = RolloutSpec(window=standins.WINDOW, features=standins.FEATURES, output_rank=2)
    w = standins.WINDOW

    def windows(seed, n, step):
        traj = standins.system_trajectory(n * step + w + 1, seed)
        return np.stack([traj[i * step : i * step + w] for i in range(n)])

    return graph, spec, windows(11, calib, 7), windows(23, count, 13), horizon_cap


def estimator_cost(graph, spec, contexts, stride: int = 1, repeats: int = 20) -> dict:
    """Per weighted layer: the estimator's rule vs the layer's own kernel, on the same input batch."""
    engine = FakeQuantEngine(graph, spec, QuantConfig("probabilistic", 8, 8), stride=stride)
    inputs_seen = {}
    original = engine.estimator._linear

    def recording(node, x):
        inputs_seen[node.index] = (node, x)
        return original(node, x)

    engine.estimator._linear = recording
    engine.estimator.sites = {}
    engine.forward(contexts)
    engine.estimator._linear = original
    est_total = layer_total = 0.0
    est_flops = layer_flops = 0
    for node, x in inputs_seen.values():
        stats = engine.estimator.weight_stats[node.index]
        outputs = int(np.prod(engine.graph.tensors[node.outputs[0]].shape))
        positions = outputs // len(stats.mean)
        # per sampled position: S and Q over the fan-in (2 adds + 1 mul each value), then a few ops per channel
        est_flops += 3 * stats.fan_in * -(-positions // engine.estimator.stride) + 6 * len(stats.mean)
        layer_flops += 2 * stats.fan_in * outputs
        kernel_inputs = [x] + [engine.constants.get(i) for i in node.inputs[1:]]
        linear_part = engine.pre_activation_node(node)  # the layer's GEMM/conv without its fused activation
        layer_total += _best_time(lambda: lookup(node.opcode).kernel(linear_part, kernel_inputs), repeats)
        est_total += _best_time(lambda: engine.estimator._linear(node, x), repeats)
    return {"weighted_layers": len(inputs_seen), "estimator_ms": 1000 * est_total, "layers_ms": 1000 * layer_total,
            "share": est_total / max(layer_total, 1e-12), "batch": int(len(contexts)),
            "flop_share": est_flops / max(layer_flops, 1)}


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="zoo:NAME or standin:mlp|tcn|gru|attention (default: built zoo models)")
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--contexts", type=int, default=8)
    parser.add_argument("--calibration-windows", type=int, default=8)
    parser.add_argument("--granularity", default="tensor", choices=["tensor", "channel"])
    parser.add_argument("--weight-stats", default="channel", choices=["channel", "layer"],
                        help="estimator weight statistics per output channel (the paper) or one pair per layer")
    parser.add_argument("--stride", type=int, default=1, help="estimator sampling stride over output positions")
    parser.add_argument("--exact-mean", action="store_true",
                        help="estimator mean from the layer's weights (W E[x] + b) instead of the i.i.d. surrogate")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ranges_compare.json"))
    args = parser.parse_args()

    models = args.models or _default_models()
    print(f"machine: {machine()}")
    results = []
    for model in models:
        kind, _, name = model.partition(":")
        case = (zoo_case if kind == "zoo" else standin_case)(name, args.horizon, args.contexts, args.calibration_windows)
        graph, spec, calibration, contexts, horizon = case
        start = time.perf_counter()
        comparison = compare_modes(graph, spec, calibration, contexts, horizon, granularity=args.granularity,
                                   per_channel_weights=args.weight_stats == "channel", exact_mean=args.exact_mean,
                                   stride=args.stride)
        cost = estimator_cost(graph, spec, contexts, stride=args.stride)
        miss = [m["miss_rate"] for m in comparison.miss]
        result = {"model": model, "horizon": horizon, "contexts": len(contexts), "calibration_windows": len(calibration),
                  "granularity": args.granularity, "weight_stats": args.weight_stats,
                  "exact_mean": args.exact_mean, "stride": args.stride, "table": table(comparison),
                  "memory_bytes": comparison.memory,
                  "miss_rate_mean": float(np.mean(miss)), "miss_rate_max": float(np.max(miss)),
                  "miss_per_site": comparison.miss, "fallback_sites": comparison.fallback_sites,
                  "sites": comparison.sites, "estimator_cost": cost, "seconds": time.perf_counter() - start}
        results.append(result)
        _print_result(result)
    summary = _summary(results)
    print("\n" + summary)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": results, "summary": summary}, indent=2, default=float))
    print(f"\nwrote {out}")
    return 0


def _default_models() -> list[str]:
    from edgetqs import zoo

    built = [f"zoo:{n}" for n in DEFAULT_ZOO if zoo.is_built(n)]
    return built or [f"standin:{n}" for n in ("mlp", "tcn", "gru", "attention")]


def _print_result(r: dict) -> None:
    print(f"\n## {r['model']}  (horizon {r['horizon']}, {r['contexts']} contexts, "
          f"{r['calibration_windows']} calibration windows, {r['granularity']} ranges, "
          f"weight statistics per {r['weight_stats']}, {'exact' if r['exact_mean'] else 'surrogate'} mean)")
    print("| mode | act bits | rmse vs float | rmse step 1 | VPT | blow-up | ms/step |")
    print("|---|---|---|---|---|---|---|")
    for row in r["table"]:
        print(f"| {row['mode']} | {row['act_bits']} | {row['rmse']} | {row['rmse_step1']} | {row['vpt']} | "
              f"{row['blow_up']} | {row['ms_per_step']} |")
    c = r["estimator_cost"]
    print(f"miss rate mean {r['miss_rate_mean']:.4f} max {r['miss_rate_max']:.4f}; fallback sites "
          f"{r['fallback_sites']}/{r['sites']}; memory {r['memory_bytes']}; estimator {c['estimator_ms']:.3f} ms vs "
          f"layers {c['layers_ms']:.3f} ms per step (batch {c['batch']}), share {c['share']:.2f} "
          f"(by operation count {c['flop_share']:.3f})")


def _summary(results: list[dict]) -> str:
    lines = ["| model | int8 static | int8 dynamic | int8 prob. | int8 hybrid | int4 static | int4 dynamic | "
             "int4 prob. | int4 hybrid | miss mean/max | est./layer time (ops) | mem static/dyn/prob/hybrid (B) |",
             "|---" * 12 + "|"]
    for r in results:
        rmse = {(row["mode"], row["act_bits"]): row["rmse"] for row in r["table"]}
        cells = [f"{rmse[(m, b)]:.4g}" for b in (8, 4) for m in ("static", "dynamic", "probabilistic", "hybrid")]
        mem = r["memory_bytes"]
        lines.append(f"| {r['model']} | " + " | ".join(cells) +
                     f" | {r['miss_rate_mean']:.3f}/{r['miss_rate_max']:.3f} | {r['estimator_cost']['share']:.2f} "
                     f"({r['estimator_cost']['flop_share']:.3f}) | "
                     f"{mem['static']}/{mem['dynamic']}/{mem['probabilistic']}/{mem['hybrid']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
