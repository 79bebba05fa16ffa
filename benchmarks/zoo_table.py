"""The zoo table for the README: per model its system, parameters, training
time and float rollout quality against the true system (METHOD.md §5).

    .venv/bin/python benchmarks/zoo_table.py              # read the built cards (builds what is missing)
    .venv/bin/python benchmarks/zoo_table.py --retrain    # train everything again, in a temp cache, now

Training seconds depend on how busy the machine is, so the table comes with the
machine, its load, and numpy's GEMM throughput measured in the same run (before
and after): compare training times between runs through that baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqs_common import gemm_gflops, machine, write_results  # noqa: E402


def table_rows(names: list[str]) -> list[dict]:
    from edgetqs import zoo

    rows = []
    for name in names:
        model = zoo.build(name)
        extra = model.card.extra
        quality = extra["float_quality"]
        rows.append({"model": name, "system": extra["system"], "source": model.card.source_format,
                     "params": model.card.total_params, "training_seconds": extra["training_seconds"],
                     "vpt_steps": quality["valid_prediction_time"], "horizon": quality["horizon"],
                     "rmse": quality["rmse"], "rmse_step1": quality["rmse_step1"],
                     "blow_up_fraction": quality["blow_up_fraction"]})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | system | params | training s | VPT (steps) / horizon | RMSE step 1 | RMSE | blow-up |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['system']} | {r['params']:,} | {r['training_seconds']:.1f} | "
                     f"{r['vpt_steps']:.1f} / {r['horizon']} | {r['rmse_step1']:.3f} | {r['rmse']:.3f} | "
                     f"{r['blow_up_fraction']:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="train every model again in a temporary cache")
    parser.add_argument("models", nargs="*", help="zoo model names (default: all)")
    args = parser.parse_args()
    from edgetqs import zoo

    names = args.models or [e.name for e in zoo.list_models()]
    gflops_before = gemm_gflops()
    if args.retrain:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["EDGETQS_CACHE"] = cache
            rows = table_rows(names)
    else:
        rows = table_rows(names)
    gflops_after = gemm_gflops()
    info = machine()
    print(markdown(rows))
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores, load {info['load_avg_1min']:.1f}; "
          f"numpy GEMM {gflops_before:.1f} GFLOP/s before, {gflops_after:.1f} after; "
          f"{'retrained now' if args.retrain else 'training times as recorded in the cards'}")
    print("quality: float model rolled out in LiteRT from 8 test-set windows vs the true continuation, "
          "normalised units; VPT = steps until the normalised error first exceeds 0.4")
    path = write_results("zoo_table", {"machine": info, "gemm_gflops": [gflops_before, gflops_after],
                                       "retrained": args.retrain, "rows": rows})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
