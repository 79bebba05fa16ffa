"""Run every benchmark's quick variant (what `make bench` does), one after another.

    .venv/bin/python benchmarks/run_all.py                 # quick variants, ~5-10 min on 2 idle cores
    .venv/bin/python benchmarks/run_all.py --only tqs_speed,remote_flash
    .venv/bin/python benchmarks/run_all.py --list          # what would run, nothing run

Each benchmark runs as its own process (so one crash does not stop the rest)
on one small zoo model or a small size, with its results written under
``benchmarks/results/quick/`` (``EDGETQS_BENCH_RESULTS``) so a quick run never
overwrites the full results committed in ``benchmarks/results/``. Each one's
output goes to ``quick/<name>.log``; the summary table gives status, wall time
and the machine's load before each run (numbers taken under load are not
comparable). The full runs are the scripts themselves, without arguments; their
docstrings say how long they take.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HERE = Path(__file__).resolve().parent
QUICK_RESULTS = HERE / "results" / "quick"
QUICK_MODEL = "mlp-lorenz96"  # the smallest zoo model; cached after its first build


@dataclass(frozen=True)
class Benchmark:
    name: str  # the script is benchmarks/<name>.py
    args: tuple[str, ...]  # its quick variant
    timeout: float = 600

    @property
    def script(self) -> Path:
        return HERE / f"{self.name}.py"


QUICK = (
    Benchmark("tqs_speed", (QUICK_MODEL,)),
    Benchmark("tqs_claims", (QUICK_MODEL,)),
    Benchmark("engine_speed", (QUICK_MODEL, "--windows", "4", "--horizon", "8", "--no-blackbox", "--repeats", "1")),
    Benchmark("engine_agreement", (QUICK_MODEL, "--horizon", "100", "--windows", "2")),
    Benchmark("adaptive_front", (QUICK_MODEL, "--budgets", "8")),
    Benchmark("plan_rollouts", (QUICK_MODEL, "--plans", "8", "--windows", "4", "--horizon", "8")),
    Benchmark("planner_allocators", ("--synthetic-only",)),
    Benchmark("ranges_compare", (f"zoo:{QUICK_MODEL}", "--horizon", "10", "--contexts", "2",
                                 "--calibration-windows", "2", "--out", str(QUICK_RESULTS / "ranges_compare.json"))),
    Benchmark("remote_flash", ("--mib", "1", "--repeats", "1")),
    Benchmark("fleet_faults", ("--quick",)),
    Benchmark("evaluate", ("--quick",), timeout=900),
)


def run(bench: Benchmark, log_dir: Path) -> dict:
    """Run one benchmark; its stdout+stderr go to ``log_dir/<name>.log``."""
    env = {**os.environ, "EDGETQS_BENCH_RESULTS": str(QUICK_RESULTS)}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    log = log_dir / f"{bench.name}.log"
    with log.open("w") as handle:
        try:
            code = subprocess.run([sys.executable, str(bench.script), *bench.args], stdout=handle,
                                  stderr=subprocess.STDOUT, env=env, cwd=HERE.parent, timeout=bench.timeout).returncode
            status = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            status = f"timed out ({bench.timeout:.0f} s)"
    return {"name": bench.name, "status": status, "seconds": time.perf_counter() - start, "load": load,
            "log": str(log.relative_to(HERE.parent))}


def select(only: str | None) -> list[Benchmark]:
    if not only:
        return list(QUICK)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {b.name: b for b in QUICK}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in wanted]


def summary(rows: list[dict]) -> Table:
    table = Table(title=f"quick benchmarks (results in {QUICK_RESULTS})")
    for column in ("benchmark", "status", "seconds", "load before", "log"):
        table.add_column(column, justify="right" if column in ("seconds", "load before") else "left")
    for row in rows:
        style = "green" if row["status"] == "ok" else "red"
        table.add_row(row["name"], f"[{style}]{row['status']}[/]", f"{row['seconds']:.1f}", f"{row['load']:.1f}",
                      row["log"])
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    benches = select(args.only)
    console = Console()
    if args.list:
        for bench in benches:
            print(bench.script.relative_to(HERE.parent), *bench.args)  # plain: one command per line
        return 0
    QUICK_RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("benchmarks", total=len(benches))
        for bench in benches:
            progress.update(task, description=f"running {bench.name}")
            rows.append(run(bench, QUICK_RESULTS))
            progress.advance(task)
    console.print(summary(rows))
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
