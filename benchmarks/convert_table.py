"""Converter benchmark: per zoo model, float vs uniform int8 vs the TQS plan at two budgets.

    .venv/bin/python benchmarks/convert_table.py                       # the built lorenz96 + sunspots models
    .venv/bin/python benchmarks/convert_table.py --models mlp-sunspots --runs 500

For each variant the model is converted through ``edgetqs.converter.convert``
(dynamic-range mode, verified) and measured here, in the same run:

- file size of the .tflite (and its ratio to float);
- LiteRT latency of one rollout step (one batch-1 invoke, 1 thread): median of
  ``--runs`` invokes after warm-up, and its ratio to the float model's median;
- rollout error of the exported model run in LiteRT, against the float model
  from the same data-free context windows: RMSE over the horizon and valid
  prediction time (steps until the normalised error passes 0.4; METHOD.md §5).

The TQS plans come from the real pipeline: ``score_model`` (layer units, both
probes) then the planner's exact MCKP at two memory budgets placed between the
uniform int4 and uniform int8 footprints (25% and 75% of the way).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqs_common import machine, write_results  # noqa: E402
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME  # noqa: E402

DEFAULT_MODELS = ["mlp-lorenz96", "gru-lorenz96", "transformer-lorenz96", "tcn-lorenz96", "mlp-sunspots"]
BUDGET_POINTS = (0.25, 0.75)  # of the way from uniform int4 to uniform int8 memory


def step_latency(model_path: Path, window: np.ndarray, runs: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    x = window[None].astype(np.float32)
    for _ in range(20):
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        interpreter.get_tensor(out)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def problem_for(canonical, workdir: Path, horizon: int, windows: int):
    from edgetqs.planner.plan import build_problem
    from edgetqs.tqs.score import ScoreSettings, score_model
    from edgetqs.tqs.scorefile import file_sha256

    scores = score_model(canonical.graph, canonical.card, ScoreSettings(horizon=horizon, windows=windows), progress=False)
    path = scores.save(workdir / "scores.json")
    return build_problem(canonical.graph, scores, file_sha256(path), DEFAULT_HOST_RUNTIME.spec, "dynamic")


def plans_for(problem) -> dict[str, object]:
    """Uniform int8, and the TQS (MCKP) plans at two budgets between uniform int4 and int8."""
    from edgetqs.planner.plan import plan_from_choice, solve, uniform_costs

    uniform = uniform_costs(problem)
    int8_choice = [u.formats.index("int8") for u in problem.units]
    plans = {"uniform int8": plan_from_choice(problem, int8_choice, uniform["int8"][0], "uniform", None)}
    low = uniform["int4"][0] if "int4" in uniform else problem.smallest_memory()
    high = uniform["int8"][0]
    for share in BUDGET_POINTS:
        budget = int(low + share * (high - low))
        plans[f"TQS @{budget / 1024:.0f} KiB"] = solve(problem, budget, "mckp")
    return plans


def measure_model(name: str, args, workdir: Path) -> list[dict]:
    from edgetqs import zoo
    from edgetqs.converter import convert
    from edgetqs.engine.litert import LiteRTRunner
    from edgetqs.metrics import rollout_metrics
    from edgetqs.tqs import contexts as ctx
    from edgetqs.tqs.score import backend_for

    canonical = zoo.build(name)
    spec = canonical.rollout
    contexts = ctx.free_run(backend_for(canonical.graph, canonical.card), spec, args.windows, 0, args.horizon).windows
    float_path = Path(canonical.tflite_path)
    reference = LiteRTRunner(float_path, spec, num_threads=1).rollout(contexts, args.horizon)
    float_latency = step_latency(float_path, contexts[0], args.runs)
    rows = [{"model": name, "variant": "float", "bytes": float_path.stat().st_size, "size_ratio": 1.0,
             "latency_ms": 1e3 * float_latency, "latency_ratio": 1.0, "rmse": 0.0, "vpt": float(args.horizon),
             "formats": "fp32"}]
    problem = problem_for(canonical, workdir, args.horizon, args.windows)
    for variant, plan in plans_for(problem).items():
        out = workdir / f"{name}-{variant.replace(' ', '_').replace('@', '')}.tflite"
        with contextlib.redirect_stdout(io.StringIO()):
            convert(canonical, plan.to_dict(), out, horizon=4, windows=2, overwrite=True)
        rollout = LiteRTRunner(out, spec, num_threads=1).rollout(contexts, args.horizon)
        quality = rollout_metrics(rollout, reference)
        latency = step_latency(out, contexts[0], args.runs)
        counts: dict[str, int] = {}
        for a in plan.assignments:
            counts[a.format] = counts.get(a.format, 0) + 1
        rows.append({"model": name, "variant": variant, "bytes": out.stat().st_size,
                     "size_ratio": out.stat().st_size / rows[0]["bytes"], "latency_ms": 1e3 * latency,
                     "latency_ratio": latency / float_latency,
                     "rmse": float(np.sqrt(np.mean((rollout - reference) ** 2))),
                     "vpt": float(quality.mean_valid_prediction_time),
                     "formats": " ".join(f"{k}x{v}" for k, v in sorted(counts.items()))})
    return rows


def print_table(rows: list[dict], horizon: int) -> None:
    print(f"{'model':22} {'variant':16} {'bytes':>9} {'size':>6} {'us/step':>8} {'vs float':>8} "
          f"{'RMSE':>8} {'VPT/' + str(horizon):>7}  formats")
    for r in rows:
        print(f"{r['model']:22} {r['variant']:16} {r['bytes']:>9,} {r['size_ratio']:>6.2f} {1e3 * r['latency_ms']:>8.1f} "
              f"{r['latency_ratio']:>8.2f} {r['rmse']:>8.4f} {r['vpt']:>7.1f}  {r['formats']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--runs", type=int, default=300, help="invokes per latency median")
    parser.add_argument("--horizon", type=int, default=32, help="rollout steps (model calls) for the error")
    parser.add_argument("--windows", type=int, default=8, help="context windows")
    args = parser.parse_args()
    print("machine:", machine())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows += measure_model(name, args, Path(tmp))
            print_table([r for r in rows if r["model"] == name], args.horizon)
    print()
    print_table(rows, args.horizon)
    path = write_results("convert_table", {"machine": machine(), "settings": vars(args), "rows": rows})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
