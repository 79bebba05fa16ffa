"""Rollout throughput: the numba engine vs the LiteRT interpreter, and the
engine's GEMM efficiency on the largest zoo model.

    .venv/bin/python benchmarks/engine_speed.py [--windows 16] [--horizon 32] [ZOO_NAME ...]

Workload per model (the shape of a TQS sweep): K true context windows, T model
calls, G probe groups = the reference + one Gaussian kick per weight tensor.
  engine     Engine.rollout_probes: all G*K trajectories in one batch (default: row-exact numba GEMM)
  blas       the same with Engine(gemm_kernel="blas"): BLAS GEMMs, one call per probe group
  litert     the same G*K trajectories batched in one interpreter, no perturbation
             (the interpreter's best case: a pure executor comparison)
  blackbox   one patched .tflite + interpreter per group, K windows each (what
             the TQS black-box path does)
Throughput is steps x trajectories / s. FLOPs count the linear ops of every
trajectory plus the engine's extra x_rows·delta products. Ratios come from one
run: every path (and numpy's 512^3 GEMM) is timed --repeats times, interleaved,
and each keeps its best, so all compare their least disturbed runs; the
machine is shared, so the load average is printed with them.
Writes benchmarks/results/engine_speed.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tqs_common import forward_flops, gemm_gflops, machine, write_results  # noqa: E402

DEFAULT_MODELS = ["mlp-lorenz96", "gru-lorenz96", "transformer-lorenz96", "tcn-lorenz96", "mlp-ks"]


REPEATS = 3


def timed(fn, repeats: int | None = None):
    """Best of ``repeats`` runs: the machine is shared, and the minimum is the least disturbed run."""
    best, result = float("inf"), None
    for _ in range(repeats or REPEATS):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def gaussian_deltas(engine, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    groups = [{}]
    for name in engine.weight_names():
        w = engine.weight(name)
        if w.size > 1:
            groups.append({name: (0.01 * np.sqrt(np.mean(w**2)) * rng.standard_normal(w.shape)).astype(np.float32)})
    return groups


def delta_flops(model, deltas, windows: int) -> int:
    """Extra multiply-adds of x_rows·delta: each group's perturbed weight's op, for its K rows, per call."""
    graph = model.graph
    per_weight = {}
    for op in graph.operators:
        if op.opcode in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"):
            flops = _op_flops(graph, op)
            for i in op.inputs[1:2]:
                if i >= 0:
                    per_weight[graph.tensors[i].name] = flops
    return sum(per_weight.get(name, 0) for group in deltas for name in group) * windows


def _op_flops(graph, op) -> int:
    class OneOp:
        tensors, operators = graph.tensors, [op]

    return forward_flops(OneOp)


def blackbox_rollout(model, engine, contexts, horizon, deltas):
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.model.tflite_graph import replace_constants

    runs = []
    for group in deltas:
        patched = {name: engine.weight(name) + d for name, d in group.items()}
        content = replace_constants(model.graph, patched) if patched else model.tflite_path
        runs.append(LiteRTRunner(content, model.card.rollout).rollout(contexts, horizon))
    return np.stack(runs)


def measure(name: str, windows: int, horizon: int, with_blackbox: bool, rounds: int) -> dict:
    """Time every path ``rounds`` times, interleaved, and keep each path's best:
    on a shared machine that compares the least disturbed run of each."""
    from edgetqs import zoo
    from edgetqs.engine import Engine
    from edgetqs.engine.litert import LiteRTRunner

    model = zoo.build(name)
    spec = model.card.rollout
    engine, blas_engine = Engine(model.graph, spec), Engine(model.graph, spec, gemm_kernel="blas")
    contexts, _ = zoo.true_trajectories(zoo.entry(name).system, spec.window, 1, count=windows)
    contexts = np.asarray(contexts, np.float32)
    deltas = gaussian_deltas(engine)
    groups = len(deltas)
    batch = np.tile(contexts, (groups, 1, 1))
    runtime = LiteRTRunner(model.tflite_path, spec)
    for warm in (engine, blas_engine):  # load the cached numba kernels
        warm.rollout_probes(contexts[:2], 2, deltas[:2])
    runtime.forward(batch)  # warm-up and batch check
    paths = {
        "engine": lambda: engine.rollout_probes(contexts, horizon, deltas),
        "blas_gemm": lambda: blas_engine.rollout_probes(contexts, horizon, deltas),
        "litert_batched": lambda: runtime.rollout(batch, horizon),
        "numpy_gemm": lambda: gemm_gflops(repeats=3),
    }
    if with_blackbox:
        paths["blackbox"] = lambda: blackbox_rollout(model, engine, contexts, horizon, deltas)
    best = {path: float("inf") for path in paths}
    numpy_gemm = 0.0
    for _ in range(rounds):
        for path, run in paths.items():
            seconds, result = timed(run, 1)
            if path == "numpy_gemm":
                numpy_gemm = max(numpy_gemm, result)
            else:
                best[path] = min(best[path], seconds)
    steps = groups * windows * horizon * spec.patch
    flops = forward_flops(model.graph) * groups * windows * horizon + delta_flops(model, deltas, windows) * horizon
    row = {"model": name, "params": int(sum(engine.weight(n).size for n in engine.weight_names())),
           "groups": groups, "windows": windows, "horizon": horizon, "numpy_gemm_gflops": numpy_gemm}
    for path, seconds in best.items():
        if path != "numpy_gemm":
            row[f"{path}_s"] = seconds
            row[f"{path}_steps_per_s"] = steps / seconds
    row["engine_vs_litert_batched"] = best["litert_batched"] / best["engine"]
    row["engine_gflops"] = flops / best["engine"] / 1e9
    row["blas_gemm_gflops"] = flops / best["blas_gemm"] / 1e9
    if with_blackbox:
        row["engine_vs_blackbox"] = best["blackbox"] / best["engine"]
    return row


def engine_gemm_gflops(n: int = 512, repeats: int = 10) -> float:
    from edgetqs.engine import gemm

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    token = gemm.KERNEL.set("numba")
    try:
        best = timed(lambda: gemm.matmul(a, b), repeats)[0]
    finally:
        gemm.KERNEL.reset(token)
    return 2 * n**3 / best / 1e9


def main() -> int:
    global REPEATS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--no-blackbox", action="store_true", help="skip the slow per-group LiteRT path")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="time each path as the best of this many runs")
    args = parser.parse_args()
    REPEATS = args.repeats
    info = machine()
    numpy_gemm = gemm_gflops()
    own_gemm = engine_gemm_gflops()
    print(f"machine: {info['cpu']}, {info['cores']} cores, load avg {info['load_avg_1min']:.1f}, "
          f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    print(f"numpy float32 GEMM (512^3): {numpy_gemm:.1f} GFLOP/s; engine's numba GEMM (512^3): {own_gemm:.1f} GFLOP/s")
    rows = []
    for name in args.models:
        row = measure(name, args.windows, args.horizon, not args.no_blackbox, args.repeats)
        numpy_gemm = max(numpy_gemm, row["numpy_gemm_gflops"])
        rows.append(row)
    # The fraction is taken against the best numpy GEMM seen anywhere in the run (the conservative choice).
    print(f"best numpy GEMM over the run: {numpy_gemm:.1f} GFLOP/s")
    print(f"{'model':22s} {'params':>8s} {'G':>3s} {'engine st/s':>12s} {'litert st/s':>12s} {'x litert':>9s} "
          f"{'x blackbox':>10s} {'GFLOP/s':>8s} {'% GEMM':>7s} {'BLAS-mode GFLOP/s':>18s} {'% GEMM':>7s}")
    for row in rows:
        row["fraction_of_numpy_gemm"] = row["engine_gflops"] / numpy_gemm
        print(f"{row['model']:22s} {row['params']:8d} {row['groups']:3d} {row['engine_steps_per_s']:12.0f} "
              f"{row['litert_batched_steps_per_s']:12.0f} {row['engine_vs_litert_batched']:9.2f} "
              f"{row.get('engine_vs_blackbox', float('nan')):10.2f} {row['engine_gflops']:8.2f} "
              f"{100 * row['fraction_of_numpy_gemm']:6.1f}% {row['blas_gemm_gflops']:18.2f} "
              f"{100 * row['blas_gemm_gflops'] / numpy_gemm:6.1f}%")
    largest = max(rows, key=lambda r: r["params"])
    print(f"largest model {largest['model']} ({largest['params']} params): engine at "
          f"{100 * largest['fraction_of_numpy_gemm']:.0f}% (numba GEMM) / "
          f"{100 * largest['blas_gemm_gflops'] / numpy_gemm:.0f}% (BLAS per group) of numpy's GEMM throughput")
    info["load_avg_1min_end"] = os.getloadavg()[0]
    path = write_results("engine_speed", {"machine": info, "numpy_gemm_gflops": numpy_gemm,
                                          "engine_gemm_gflops": own_gemm, "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
