"""Every stage at large-model scale: time and peak RSS per stage, as ratios.

    .venv/bin/python benchmarks/large_models.py [--models patchtf-118m,resmlp-23m] [--stages build,intake,...]
        [--target rpi-zero2w] [--work DIR]

Stages (each its own process, timed by /usr/bin/time, peak RSS = its VmHWM):
  build    Keras model with the structured random weights, saved as .keras (edgetqs/zoo/large.py)
  intake   `edgetqs inspect MODEL.keras`: Keras -> canonical TFLite + card, numerically checked
  score    `edgetqs score --adaptive` (both probes, layer units)
  plan     `edgetqs plan --target T --front`
  convert  `edgetqs convert` (dynamic mode, verification on)
Ratios: peak RSS / the model's float bytes; time x the GEMM rate (numpy 512^3
float32, measured in this run, before and after) / the model's forward FLOPs,
i.e. how many batch-1 forward passes of the model the stage's time is worth.
The machine is shared: the load average is recorded at the start of every stage.
Writes benchmarks/results/large_models.json (merged with earlier runs by model+stage).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = Path(__file__).resolve().parent.parent

from tqs_common import RESULTS, forward_flops, gemm_gflops, machine  # noqa: E402

STAGES = ("build", "intake", "score", "plan", "convert")
PY = sys.executable


def cli(*args: str) -> list[str]:
    return [PY, "-m", "edgetqs.cli.app", *args]


def stage_command(stage: str, name: str, work: Path, target: str, score_args: list[str]) -> list[str]:
    keras = work / f"{name}.keras"
    scores, plan, out = work / f"{name}.scores.json", work / f"{name}.plan.json", work / f"{name}.bundle"
    if stage == "build":
        code = ("import sys; from pathlib import Path; from edgetqs.zoo import large; "
                f"large.save_keras(large.entry({name!r}), Path({str(keras)!r}))")
        return [PY, "-c", code]
    if stage == "intake":
        return cli("inspect", str(keras), "--json")
    if stage == "score":
        return cli("score", str(keras), "-o", str(scores), "--json", *score_args)
    if stage == "plan":
        return cli("plan", str(keras), "--scores", str(scores), "--target", target, "--front", "-o", str(plan), "--json")
    if stage == "convert":
        return cli("convert", str(keras), "--plan", str(plan), "-o", str(out), "--force", "--json")
    raise ValueError(stage)


def run_stage(command: list[str], log: Path) -> dict:
    timing = log.with_suffix(".time")
    load = os.getloadavg()[0]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with open(log, "w") as out:
        code = subprocess.call(["/usr/bin/time", "-f", "%e %M", "-o", str(timing), *command], stdout=out,
                               stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    seconds, kib = timing.read_text().split()[-2:]
    return {"seconds": float(seconds), "peak_rss_bytes": int(kib) * 1024, "exit": code, "load_avg_1min": load,
            "log": str(log)}


def model_facts(work: Path, name: str) -> dict:
    from edgetqs.model.intake import load_model

    model = load_model(work / f"{name}.keras")
    return {"params": model.card.total_params, "float_bytes": sum(l.float_bytes for l in model.card.layers),
            "units": len(model.card.layers), "forward_flops": forward_flops(model.graph)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="patchtf-118m,resmlp-23m")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--target", default="rpi-zero2w")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "edgetqs" / "bench-large"))
    parser.add_argument("--score-args", default="--adaptive", help="extra `edgetqs score` arguments")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "large_models.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    gemm_before = gemm_gflops()
    for name in args.models.split(","):
        for stage in args.stages.split(","):
            command = stage_command(stage, name, work, args.target, args.score_args.split())
            print(f"{name} {stage}: {' '.join(command[-6:])}", flush=True)
            row = run_stage(command, work / f"{name}.{stage}.log")
            row.update(command=" ".join(command[1:]), when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            print(f"  {row['seconds']:.1f} s, peak {row['peak_rss_bytes'] / 2**30:.2f} GiB, exit {row['exit']}, "
                  f"load {row['load_avg_1min']:.1f}", flush=True)
            results["runs"].setdefault(name, {})[stage] = row
            if row["exit"]:
                break
        if (work / f"{name}.keras").exists():
            results["runs"][name]["model"] = model_facts(work, name)
    gemm_after = gemm_gflops()
    results["machine"] = machine() | {"gemm_gflops_before": gemm_before, "gemm_gflops_after": gemm_after}
    add_ratios(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print_table(results)


def add_ratios(results: dict) -> None:
    gemm = min(results["machine"]["gemm_gflops_before"], results["machine"]["gemm_gflops_after"]) * 1e9
    for runs in results["runs"].values():
        facts = runs.get("model")
        if not facts:
            continue
        for stage, row in runs.items():
            if stage != "model":
                row["rss_over_float_bytes"] = row["peak_rss_bytes"] / facts["float_bytes"]
                row["forward_passes_at_gemm_rate"] = row["seconds"] * gemm / facts["forward_flops"]


def print_table(results: dict) -> None:
    print(f"GEMM {results['machine']['gemm_gflops_before']:.1f}/{results['machine']['gemm_gflops_after']:.1f} GFLOP/s")
    for name, runs in results["runs"].items():
        facts = runs.get("model", {})
        print(f"{name}: {facts.get('params', 0):,} params, {facts.get('units')} units, "
              f"{facts.get('float_bytes', 0) / 2**20:.0f} MiB float")
        for stage in STAGES:
            row = runs.get(stage)
            if row:
                print(f"  {stage:8s} {row['seconds']:8.1f} s  {row['peak_rss_bytes'] / 2**30:6.2f} GiB "
                      f"({row.get('rss_over_float_bytes', 0):.2f}x float)  load {row['load_avg_1min']:.1f}")


if __name__ == "__main__":
    main()
