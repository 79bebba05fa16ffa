"""The engine's rate on a large model's score workload, and where its CPU time goes.

    .venv/bin/python benchmarks/engine_rate.py [--model PATH.keras] [--chunks 2] [--windows 4] [--horizon 8]
        [--profile] [--label after] [--results engine_rate]

Workload: what `edgetqs score --adaptive` runs on the model (both probes, layer
units), for its first ``--chunks`` chunks of jobs: K=4 free-run windows, T=8
calls — the adaptive sweep's first stage, and on patchtf-118m its only one
(the ranking settles there: 292 jobs x 4 x 8 = 9,344 calls, see
large_models.json). The chunks run through the score's own LocalRunner, so
group sizes, deltas and batch rows are the score's.

Rate = calls x the model's batch-1 forward FLOPs / CPU seconds of the sweep —
the same count benchmarks/large_models.py divides by the whole score process's
CPU seconds (which add start-up, model load and the free run's burn-in: those
are timed here apart). CPU seconds, not wall time: the 2-core box is shared,
and CPU time does not count waiting for a core. The reference is numpy's
float32 512^3 GEMM on one OpenBLAS thread, per CPU-second, measured before and
after the workload in this run (the better of the two).

--profile: CPU and wall seconds per op type (through the engine's op hooks,
so the perturbed ops count too), the GEMM calls on their own (per shape), and
the share of CPU the numba worker threads used (process minus main thread).
Writes benchmarks/results/<--results>.json, one entry per --label (kept across runs), e.g.
the code before a change (``PYTHONPATH=<old checkout>`` runs this script on that engine) and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tqs_common import RESULTS, forward_flops, gemm_gflops_per_cpu_second, machine, write_results  # noqa: E402

DEFAULT_MODEL = Path.home() / ".cache" / "edgetqs" / "bench-large" / "patchtf-118m.keras"
BUILD_HINT = ("build it with: benchmarks/large_models.py --models patchtf-118m --stages build,intake "
              "--work ~/.cache/edgetqs/bench-large")


class Clock:
    """CPU (all threads), main-thread CPU and wall seconds, summed per key."""

    def __init__(self):
        self.totals = defaultdict(lambda: [0.0, 0.0, 0.0, 0])

    def timed(self, key, fn, *args):
        cpu, main, wall = time.process_time(), time.thread_time(), time.perf_counter()
        try:
            return fn(*args)
        finally:
            row = self.totals[key]
            row[0] += time.process_time() - cpu
            row[1] += time.thread_time() - main
            row[2] += time.perf_counter() - wall
            row[3] += 1

    def table(self) -> dict:
        return {key: {"cpu_s": c, "main_thread_cpu_s": m, "wall_s": w, "calls": n}
                for key, (c, m, w, n) in sorted(self.totals.items(), key=lambda kv: -kv[1][0])}


class ProfileHooks:
    """OpHooks that time every op (perturbed ones included) by opcode."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def on_input(self, x):
        return x

    def run_op(self, node, inputs, kernel):
        return self.clock.timed(node.opcode, kernel, node, inputs)


def profile_gemm(clock: Clock):
    """Time every engine GEMM call by shape (rows, K, N); returns the undo."""
    from edgetqs.engine import gemm

    original = gemm.matmul

    def matmul(a, w_t):
        rows = a.size // a.shape[-1]
        return clock.timed(("gemm", rows, a.shape[-1], w_t.shape[1]), original, a, w_t)

    gemm.matmul = matmul
    return lambda: setattr(gemm, "matmul", original)


def run(model_path: Path, chunks: int, windows: int, horizon: int, profile: bool) -> dict:
    from edgetqs.engine import Engine
    from edgetqs.model.intake import load_model
    from edgetqs.tqs import contexts as ctx
    from edgetqs.tqs.sweep import LocalRunner, chunk_jobs, make_jobs
    from edgetqs.tqs.units import build_units

    clock, setup = Clock(), Clock()
    model = setup.timed("load model", load_model, model_path)
    spec = model.card.rollout
    engine = Engine(model.graph, spec, hooks=ProfileHooks(clock) if profile else None)
    jobs = make_jobs(build_units(model.card, model.graph, "layer"), "both")
    all_chunks = chunk_jobs(jobs, windows, horizon, spec.patch, spec.features)
    picked = [job for chunk in all_chunks[:chunks] for job in chunk]
    contexts = setup.timed("free-run contexts", ctx.free_run, engine, spec, windows, 0, horizon)
    runner = LocalRunner(engine, model.graph, bits=4, seed=0, patch=spec.patch)
    undo = profile_gemm(clock) if profile else (lambda: None)
    clock.totals.clear()  # the sweep's ops only
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        runner.run(picked, contexts.windows, horizon)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        undo()
    ops = clock.table()
    flops_per_call = forward_flops(model.graph)
    calls = len(picked) * windows * horizon
    return {"model": str(model_path), "params": int(model.card.total_params), "forward_flops": flops_per_call,
            "jobs": len(picked), "of_jobs": len(jobs), "chunks": chunks, "of_chunks": len(all_chunks),
            "groups_per_chunk": [len(c) + (i == 0) for i, c in enumerate(all_chunks[:chunks])],
            "windows": windows, "horizon": horizon, "calls": calls, "sweep_cpu_s": cpu, "sweep_wall_s": wall,
            "engine_gflops_per_cpu_second": calls * flops_per_call / cpu / 1e9,
            "outside_the_sweep": {key: {"cpu_s": v["cpu_s"], "wall_s": v["wall_s"]} for key, v in setup.table().items()},
            "profile": _profile_summary(ops, cpu) if profile else None}


def _profile_summary(ops: dict, sweep_cpu: float) -> dict:
    """Per opcode (the GEMMs inside FULLY_CONNECTED / CONV_2D also on their own) and per GEMM shape."""
    gemms = {k: v for k, v in ops.items() if isinstance(k, tuple)}
    by_op = {k: v for k, v in ops.items() if not isinstance(k, tuple)}
    gemm_cpu = sum(v["cpu_s"] for v in gemms.values())
    shapes = []
    for (_, rows, k, n), v in sorted(gemms.items(), key=lambda kv: -kv[1]["cpu_s"]):
        flops = 2 * rows * k * n * v["calls"]
        shapes.append({"rows": rows, "k": k, "n": n, **v, "gflops_per_cpu_s": flops / max(v["cpu_s"], 1e-9) / 1e9,
                       "threads_busy": v["cpu_s"] / max(v["wall_s"], 1e-9)})
    op_cpu = sum(v["cpu_s"] for v in by_op.values())
    return {"ops": {k: {**v, "share_of_sweep_cpu": v["cpu_s"] / sweep_cpu} for k, v in by_op.items()},
            "gemm_cpu_s": gemm_cpu, "gemm_share_of_sweep_cpu": gemm_cpu / sweep_cpu,
            "gemm_gflops_per_cpu_s": sum(2 * s["rows"] * s["k"] * s["n"] * s["calls"] for s in shapes) / gemm_cpu / 1e9,
            "outside_ops_cpu_s": sweep_cpu - op_cpu, "gemm_shapes": shapes[:12],
            "worker_thread_cpu_s": sum(v["cpu_s"] - v["main_thread_cpu_s"] for v in by_op.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a .keras (or any intake source) to score")
    parser.add_argument("--chunks", type=int, default=2, help="how many of the score's chunks of jobs to run")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="time every op type and GEMM shape")
    parser.add_argument("--label", default="latest", help="this run's entry in the results file")
    parser.add_argument("--results", default="engine_rate", help="results file name in benchmarks/results")
    args = parser.parse_args()
    model_path = Path(args.model).expanduser()
    if not model_path.exists():
        print(f"{model_path} is not there; {BUILD_HINT}", file=sys.stderr)
        return 2
    import edgetqs.engine  # noqa: F401  (sets OMP_WAIT_POLICY before numba's threads start)

    info = machine()
    gemm_before = gemm_gflops_per_cpu_second()
    row = run(model_path, args.chunks, args.windows, args.horizon, args.profile)
    gemm_after = gemm_gflops_per_cpu_second()
    reference = max(gemm_before, gemm_after)
    row["numpy_gemm_gflops_per_cpu_second"] = {"before": gemm_before, "after": gemm_after}
    row["engine_over_gemm_rate"] = row["engine_gflops_per_cpu_second"] / reference
    info["load_avg_1min_end"] = os.getloadavg()[0]
    print(f"load {info['load_avg_1min']:.1f} -> {info['load_avg_1min_end']:.1f}; numpy 1-thread GEMM "
          f"{gemm_before:.1f} / {gemm_after:.1f} GFLOP per CPU-s (before/after)")
    print(f"{row['jobs']}/{row['of_jobs']} jobs ({row['chunks']}/{row['of_chunks']} chunks), K={row['windows']}, "
          f"T={row['horizon']}: {row['calls']} calls in {row['sweep_cpu_s']:.1f} CPU-s ({row['sweep_wall_s']:.1f} s wall)"
          f" -> engine {row['engine_gflops_per_cpu_second']:.1f} GFLOP per CPU-s = "
          f"{100 * row['engine_over_gemm_rate']:.0f}% of numpy's GEMM rate")
    for key, value in row["outside_the_sweep"].items():
        print(f"  (outside the sweep) {key}: {value['cpu_s']:.1f} CPU-s, {value['wall_s']:.1f} s wall")
    if row["profile"]:
        print_profile(row["profile"], row["sweep_cpu_s"])
    import edgetqs

    row["edgetqs"] = str(Path(edgetqs.__file__).parent)  # which checkout's engine ran, at which commit
    row["commit"] = subprocess.run(["git", "-C", row["edgetqs"], "rev-parse", "--short", "HEAD"], capture_output=True,
                                   text=True).stdout.strip()
    path = RESULTS / f"{args.results}.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results["runs"].setdefault(args.label, []).append({"machine": info, **row})
    path = write_results(args.results, results)
    print(f"results: {path}")
    return 0


def print_profile(profile: dict, sweep_cpu: float) -> None:
    print(f"GEMM: {profile['gemm_cpu_s']:.1f} CPU-s ({100 * profile['gemm_share_of_sweep_cpu']:.0f}% of the sweep) "
          f"at {profile['gemm_gflops_per_cpu_s']:.1f} GFLOP per CPU-s; worker threads "
          f"{profile['worker_thread_cpu_s']:.1f} CPU-s; outside ops (deltas, distances, Python) "
          f"{profile['outside_ops_cpu_s']:.1f} CPU-s")
    print(f"  {'op':20s} {'CPU s':>8s} {'share':>6s} {'wall s':>8s} {'calls':>7s}")
    for op, v in profile["ops"].items():
        print(f"  {op:20s} {v['cpu_s']:8.2f} {100 * v['share_of_sweep_cpu']:5.1f}% {v['wall_s']:8.2f} {v['calls']:7d}")
    print(f"  {'GEMM rows x K x N':22s} {'CPU s':>8s} {'GFLOP/CPU-s':>12s} {'CPU/wall':>9s} {'calls':>7s}")
    for s in profile["gemm_shapes"]:
        print(f"  {s['rows']:6d} x {s['k']:5d} x {s['n']:5d} {s['cpu_s']:8.2f} {s['gflops_per_cpu_s']:12.1f} "
              f"{s['threads_busy']:9.2f} {s['calls']:7d}")


if __name__ == "__main__":
    raise SystemExit(main())
