"""The on-device runner's step latency: host vs the emulated Raspberry Pi 4.

    .venv/bin/python benchmarks/remote_runner.py

Builds the test forecaster bundle (tests/remote/forecast_bundle.py: MLP, AEQ
int8 dynamic), runs remote/runner.py on this machine's LiteRT and on the
emulated Pi (qemu-aarch64 -cpu cortex-a72, LiteRT 2.3.0), each with 1 thread
and with XNNPACK on and off, and prints p50/p90/p99 per step and the ratios
to the host run with XNNPACK measured in the same run. The emulated numbers
are qemu's speed, not a Pi's: the point is the relative cost of the options
and that the board path works, not absolute Pi latency.
Writes benchmarks/results/remote_runner.json.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "remote"))

from forecast_bundle import build_forecaster, write_forecast_bundle  # noqa: E402
from tqs_common import machine, write_results  # noqa: E402

from edgetqs.remote import emulated_board  # noqa: E402
from edgetqs.remote.validate import RUNNER, RunOutput  # noqa: E402


def run(python: list[str], bundle: Path, out: Path, *flags: str) -> dict:
    cmd = [*python, str(RUNNER), "--bundle", str(bundle), "--out", str(out), "--threads", "1", *flags]
    subprocess.run(cmd, check=True, capture_output=True, timeout=1800)
    results = RunOutput.load(out).results
    return {"latency_ms": results["latency_ms"], "peak_memory_kib": results["peak_memory_kib"],
            "xnnpack": results["runtime"]["xnnpack"]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = write_forecast_bundle(tmp / "bundle", build_forecaster())
        pi = emulated_board.python_command(emulated_board.build_root())
        rows = {}
        for name, python in (("host", [sys.executable]), ("emulated-pi4", pi)):
            for flags in ((), ("--no-xnnpack",)):
                label = f"{name}{' no-xnnpack' if flags else ''}"
                rows[label] = run(python, bundle, tmp / label.replace(" ", "-"), *flags)
    base = rows["host"]["latency_ms"]["p50"]
    print(f"machine: {machine()}")
    print(f"{'run':24} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'p50/host':>9} {'VmHWM MiB':>10}")
    for label, row in rows.items():
        lat = row["latency_ms"]
        row["p50_ratio_to_host"] = lat["p50"] / base
        print(f"{label:24} {lat['p50']:9.4f} {lat['p90']:9.4f} {lat['p99']:9.4f} "
              f"{row['p50_ratio_to_host']:9.1f} {row['peak_memory_kib'] / 1024:10.1f}")
    write_results("remote_runner", {"machine": machine(), "runs": rows})


if __name__ == "__main__":
    main()
