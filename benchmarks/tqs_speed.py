"""Full TQS sweep per zoo model: the numba engine vs the black-box LiteRT path.

    .venv/bin/python benchmarks/tqs_speed.py [ZOO_NAME ...]

Each path runs REPEATS times, interleaved, and keeps its best (the machine is
shared and timings swing by a third; the minimum is the least disturbed run).
The
engine's numba kernels are compiled (cached) by a short warm-up sweep that is
not timed. The sweep is the default `edgetqs score` setting: layer units,
both probes, T=32 model calls, K=16 windows. Its FLOPs count every rollout
(reference + one per unit and probe) through the linear ops; the engine's
achieved GFLOP/s is compared with numpy's own float32 GEMM measured here.
Writes benchmarks/results/tqs_speed.json and prints a table.
"""

from __future__ import annotations

import sys
import time

from tqs_common import forward_flops, gemm_gflops, machine, write_results, zoo_names

HORIZON, WINDOWS = 32, 16
REPEATS = 3


def sweep(model, backend, contexts, settings):
    from edgetqs.tqs.score import score_model

    start = time.perf_counter()
    scores = score_model(model.graph, model.card, settings, backend=backend, contexts=contexts, progress=False)
    return time.perf_counter() - start, scores


def measure(name: str) -> dict:
    from edgetqs import zoo
    from edgetqs.engine import Engine
    from edgetqs.engine.blackbox import LiteRTRollout
    from edgetqs.tqs.contexts import free_run
    from edgetqs.tqs.score import ScoreSettings

    model = zoo.build(name)
    settings = ScoreSettings(horizon=HORIZON, windows=WINDOWS, probe="both", granularity="layer")
    try:
        engine = Engine(model.graph, model.card.rollout)
    except Exception as exc:  # an op the engine lacks: only the black-box path runs
        return {"model": name, "engine_error": str(exc).splitlines()[0]}
    contexts = free_run(engine, model.card.rollout, WINDOWS, settings.seed)
    warm = ScoreSettings(horizon=2, windows=2, probe="quant")
    sweep(model, engine, type(contexts)(contexts.windows[:2], "warm-up"), warm)
    blackbox = LiteRTRollout(model.graph, model.card.rollout)
    engine_s = blackbox_s = float("inf")
    for _ in range(REPEATS):
        seconds, scores = sweep(model, engine, contexts, settings)
        engine_s = min(engine_s, seconds)
        blackbox_s = min(blackbox_s, sweep(model, blackbox, contexts, settings)[0])
    rollouts = 1 + 2 * len(scores.units)
    flops = forward_flops(model.graph) * WINDOWS * HORIZON * rollouts
    return {"model": name, "units": len(scores.units), "params": sum(u.params for u in scores.units),
            "rollouts": rollouts, "sweep_gflop": flops / 1e9, "engine_s": engine_s, "blackbox_s": blackbox_s,
            "speedup": blackbox_s / engine_s, "engine_gflops": flops / engine_s / 1e9}


def main(argv: list[str]) -> int:
    info = machine()
    gemm = gemm_gflops()
    rows = []
    for name in zoo_names(argv):
        row = measure(name)
        if "engine_gflops" in row:
            row["gemm_fraction"] = row["engine_gflops"] / gemm
        rows.append(row)
        print(_line(row), flush=True)
    timed = [r for r in rows if "speedup" in r]
    largest = max(timed, key=lambda r: r["params"]) if timed else None
    payload = {"machine": info, "numpy_gemm_gflops": gemm, "horizon": HORIZON, "windows": WINDOWS,
               "repeats": REPEATS, "models": rows,
               "largest_model": largest and largest["model"],
               "min_speedup": min((r["speedup"] for r in timed), default=None)}
    path = write_results("tqs_speed", payload)
    print(f"\nmachine: {info['cpu']} x{info['cores']} (load {info['load_avg_1min']:.1f}); numpy GEMM {gemm:.1f} GFLOP/s")
    if largest:
        print(f"largest model {largest['model']}: engine {largest['engine_gflops']:.2f} GFLOP/s = "
              f"{100 * largest['gemm_fraction']:.1f}% of GEMM")
    print(f"min speedup {payload['min_speedup']:.1f}x (target >= 20x); wrote {path}")
    return 0


def _line(r: dict) -> str:
    if "speedup" not in r:
        return f"{r['model']:24s} engine unavailable: {r.get('engine_error')}"
    return (f"{r['model']:24s} units {r['units']:3d}  params {r['params']:8d}  engine {r['engine_s']:7.2f}s  "
            f"black-box {r['blackbox_s']:8.2f}s  speedup {r['speedup']:6.1f}x  {r['engine_gflops']:6.2f} GFLOP/s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
