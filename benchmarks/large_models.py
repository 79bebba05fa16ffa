"""Every stage at large-model scale: time and peak RSS per stage, as ratios.

    .venv/bin/python benchmarks/large_models.py [--models patchtf-118m,resmlp-23m] [--stages build,intake,...]
        [--target rpi-zero2w] [--work DIR]

Stages (each its own process, timed by /usr/bin/time, peak RSS = its VmHWM):
  build    Keras model with the structured random weights, saved as .keras (edgetqs/zoo/large.py)
  intake   `edgetqs inspect MODEL.keras`: Keras -> canonical TFLite + card, numerically checked
  score    `edgetqs score --adaptive` (both probes, layer units)
  score_full  the full K=16, T=32 sweep (where affordable), compared with the adaptive one:
           Spearman per probe and the share of the adaptive front's plans on the full front
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
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = Path(__file__).resolve().parent.parent

from tqs_common import RESULTS, forward_flops, gemm_gflops, gemm_gflops_per_cpu_second, machine  # noqa: E402

STAGES = ("build", "intake", "score", "score_full", "plan", "convert")
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
    if stage == "score_full":  # the full K=16, T=32 sweep the adaptive one is checked against
        return cli("score", str(keras), "-o", str(work / f"{name}.full.scores.json"), "--json")
    if stage == "plan":
        return cli("plan", str(keras), "--scores", str(scores), "--target", target, "--front", "-o", str(plan), "--json")
    if stage == "convert":
        return cli("convert", str(keras), "--plan", str(plan), "-o", str(out), "--force", "--json")
    raise ValueError(stage)


def collected_stage(log: Path) -> dict:
    """A stage's row from the timing file an earlier run left (--collect: the run stopped before writing)."""
    seconds, kib, user, system = log.with_suffix(".time").read_text().split()[-4:]
    return {"seconds": float(seconds), "cpu_seconds": float(user) + float(system), "peak_rss_bytes": int(kib) * 1024,
            "exit": 0, "load_avg_1min": None, "log": str(log)}


def run_stage(command: list[str], log: Path) -> dict:
    timing = log.with_suffix(".time")
    load = os.getloadavg()[0]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with open(log, "w") as out:
        code = subprocess.call(["/usr/bin/time", "-f", "%e %M %U %S", "-o", str(timing), *command], stdout=out,
                               stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    seconds, kib, user, system = timing.read_text().split()[-4:]
    # CPU seconds say more than wall time on a shared machine: they do not count waiting for a core.
    return {"seconds": float(seconds), "cpu_seconds": float(user) + float(system), "peak_rss_bytes": int(kib) * 1024,
            "exit": code, "load_avg_1min": load, "log": str(log)}


def engine_rate(work: Path, name: str, facts: dict, row: dict) -> dict:
    """The score stage's engine throughput: model calls it ran x forward FLOPs per CPU-second."""
    scores = json.loads((work / f"{name}.scores.json").read_text())
    adaptive = scores["settings"].get("adaptive")
    if not adaptive or not row.get("cpu_seconds"):
        return {}
    calls = adaptive["work_calls"]
    return {"work_calls": calls, "full_sweep_calls": adaptive["full_sweep_calls"],
            "work_fraction": adaptive["work_fraction"],
            "engine_gflops_per_cpu_second": calls * facts["forward_flops"] / row["cpu_seconds"] / 1e9}


def model_facts(work: Path, name: str) -> dict:
    from edgetqs.model.intake import load_model

    model = load_model(work / f"{name}.keras")
    return {"params": model.card.total_params, "float_bytes": sum(l.float_bytes for l in model.card.layers),
            "units": len(model.card.layers), "forward_flops": forward_flops(model.graph)}


def compare_scores(work: Path, name: str, target: str) -> dict:
    """Adaptive vs full sweep: Spearman per probe, work, and front plans in common."""
    from scipy.stats import spearmanr

    from edgetqs.model.intake import load_model
    from edgetqs.planner.front import pareto_front
    from edgetqs.planner.plan import build_problem
    from edgetqs.runtimes import DEFAULT_HOST_RUNTIME
    from edgetqs.tqs.scorefile import load_scores

    model = load_model(work / f"{name}.keras")
    full, adaptive = load_scores(work / f"{name}.full.scores.json"), load_scores(work / f"{name}.scores.json")
    result = {"work_fraction": adaptive.settings["adaptive"]["work_fraction"],
              "adaptive_stages": adaptive.settings["adaptive"]["stages"]}
    for probe in ("quant", "gauss"):
        result[f"spearman_{probe}"] = float(spearmanr([u.gamma(probe) for u in full.units],
                                                      [u.gamma(probe) for u in adaptive.units]).statistic)
    def front(scores) -> list[tuple]:
        problem = build_problem(model.graph, scores, "-", DEFAULT_HOST_RUNTIME.spec)
        return [tuple(sorted((a.unit, a.format) for a in p.plan.assignments))
                for p in pareto_front(problem, 20).points]

    def in_common(a: list, b: list) -> str:
        return f"{sum(p in set(a) for p in b)}/{len(b)}"

    full_front = front(full)
    # The adaptive file is priced at the horizon it ran (exp(gamma_t * t), t < T); the same gammas priced
    # at the full sweep's T separate a change of ranking from a change of error scale between the fronts.
    same_horizon = replace(adaptive, settings={**adaptive.settings, "horizon": full.settings["horizon"]})
    result["front_plans_in_common"] = in_common(full_front, front(adaptive))
    result["front_plans_in_common_priced_at_full_T"] = in_common(full_front, front(same_horizon))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="patchtf-118m,resmlp-23m")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--target", default="rpi-zero2w")
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "edgetqs" / "bench-large"))
    parser.add_argument("--score-args", default="--adaptive", help="extra `edgetqs score` arguments")
    parser.add_argument("--results", default="large_models", help="results file name (several runs at once: one each)")
    parser.add_argument("--collect", action="store_true", help="only gather the stages' timing files of an earlier run")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.results}.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    gemm_before, gemm_cpu_before = gemm_gflops(), gemm_gflops_per_cpu_second()
    ran = []  # this run's rows: their time ratios use this run's GEMM rate, earlier rows keep theirs
    for name in args.models.split(","):
        for stage in args.stages.split(","):
            command = stage_command(stage, name, work, args.target, args.score_args.split())
            print(f"{name} {stage}: {' '.join(command[-6:])}", flush=True)
            log = work / f"{name}.{stage}.log"
            row = collected_stage(log) if args.collect else run_stage(command, log)
            row.update(command=" ".join(command[1:]), when=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            print(f"  {row['seconds']:.1f} s, peak {row['peak_rss_bytes'] / 2**30:.2f} GiB, exit {row['exit']}, "
                  f"load {row['load_avg_1min']}", flush=True)
            results["runs"].setdefault(name, {})[stage] = row
            ran.append(row)
            if row["exit"]:
                break
        if (work / f"{name}.keras").exists():
            results["runs"][name]["model"] = model_facts(work, name)
        if (work / f"{name}.full.scores.json").exists() and (work / f"{name}.scores.json").exists():
            results["runs"][name]["adaptive_vs_full"] = compare_scores(work, name, args.target)
    gemm_after, gemm_cpu_after = gemm_gflops(), gemm_gflops_per_cpu_second()
    for row in ran:
        row["gemm_gflops"] = min(gemm_before, gemm_after)
    results["machine"] = machine() | {"gemm_gflops_before": gemm_before, "gemm_gflops_after": gemm_after,
                                      "gemm_gflops_per_cpu_second": max(gemm_cpu_before, gemm_cpu_after)}
    for name in args.models.split(","):
        runs = results["runs"].get(name, {})
        # Only a score row of this run: an earlier one keeps the rate of its own run's GEMM reference.
        if "model" in runs and any(row is runs.get("score") for row in ran) and (work / f"{name}.scores.json").exists():
            runs["score"].update(engine_rate(work, name, runs["model"], runs["score"]))
            if "engine_gflops_per_cpu_second" in runs["score"]:
                runs["score"]["engine_over_gemm_rate"] = (runs["score"]["engine_gflops_per_cpu_second"]
                                                         / results["machine"]["gemm_gflops_per_cpu_second"])
    add_ratios(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print_table(results)


def add_ratios(results: dict) -> None:
    """Ratios of every row; the time ratio with the GEMM rate of the row's own run (rows from before
    rows carried it keep the ratio they were written with: "machine" is the latest run's)."""
    for runs in results["runs"].values():
        facts = runs.get("model")
        if not facts:
            continue
        for stage, row in runs.items():
            if stage not in ("model", "adaptive_vs_full"):
                row["rss_over_float_bytes"] = row["peak_rss_bytes"] / facts["float_bytes"]
                if "gemm_gflops" in row:
                    row["forward_passes_at_gemm_rate"] = row["seconds"] * row["gemm_gflops"] * 1e9 / facts["forward_flops"]


def print_table(results: dict) -> None:
    print(f"GEMM {results['machine']['gemm_gflops_before']:.1f}/{results['machine']['gemm_gflops_after']:.1f} GFLOP/s")
    for name, runs in results["runs"].items():
        facts = runs.get("model", {})
        print(f"{name}: {facts.get('params', 0):,} params, {facts.get('units')} units, "
              f"{facts.get('float_bytes', 0) / 2**20:.0f} MiB float")
        for stage in STAGES:
            row = runs.get(stage)
            if row:
                print(f"  {stage:10s} {row['seconds']:8.1f} s ({row.get('cpu_seconds', 0):7.1f} CPU s) "
                      f"{row['peak_rss_bytes'] / 2**30:6.2f} GiB "
                      f"({row.get('rss_over_float_bytes', 0):.2f}x float)  load {row['load_avg_1min']}")
        if "adaptive_vs_full" in runs:
            print(f"  adaptive vs full: {runs['adaptive_vs_full']}")


if __name__ == "__main__":
    main()
