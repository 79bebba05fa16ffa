"""The TQS sweep on a real Dask cluster on loopback: speed-up with 1 and 2 workers.

    .venv/bin/python benchmarks/dask_sweep.py [--model PATH|zoo:NAME] [--windows 4] [--horizon 8]

Starts `dask scheduler` on 127.0.0.1 and N `dask worker` processes (one thread
each; the workers' numba threads share the machine's cores: 2 threads for one
worker, 1 each for two), runs the same sweep in-process and on the cluster,
checks the scores are identical bit for bit, and times each. The machine is
shared: the load average is printed next to each time. Writes
benchmarks/results/dask_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).parent / "dask")

from tqs_common import RESULTS, machine  # noqa: E402


def start_cluster(workers: int, work: Path, numba_threads: int) -> tuple[str, list[subprocess.Popen]]:
    scheduler_file = work / f"scheduler-{workers}-{numba_threads}.json"
    env = dict(os.environ, NUMBA_NUM_THREADS=str(numba_threads),
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": work}
    processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], **quiet)]
    while not scheduler_file.exists():
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    for _ in range(workers):
        processes.append(subprocess.Popen([DASK, "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
                                           "--nthreads", "1", "--no-dashboard"], **quiet))
    return address, processes


def stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zoo:mlp-ks")
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--numba-threads", type=int, default=0,
                        help="numba threads per worker (default: the cores shared out: 2 for one worker, 1 each for two); "
                             "1 measures how the cluster scales apart from numba's own threads")
    args = parser.parse_args()
    from distributed import Client

    from edgetqs.tqs.distributed import DaskRunner
    from edgetqs.tqs.score import ScoreSettings, score_model
    from edgetqs.zoo.resolve import load_model

    model = load_model(args.model)
    settings = ScoreSettings(windows=args.windows, horizon=args.horizon)
    score_model(model.graph, model.card, ScoreSettings(windows=2, horizon=2), progress=False)  # compile numba once
    rows = {}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    local = score_model(model.graph, model.card, settings, progress=False)
    rows["in-process"] = {"seconds": time.perf_counter() - start, "load_avg_1min": load}
    print(f"in-process: {rows['in-process']['seconds']:.1f} s (load {load:.1f})", flush=True)
    reference = json.dumps(local.to_dict(), sort_keys=True)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        for workers in map(int, args.workers.split(",")):
            threads = args.numba_threads or max(cores // workers, 1)
            address, processes = start_cluster(workers, Path(tmp), threads)
            try:
                client = Client(address, timeout=30)
                client.wait_for_workers(workers, timeout=120)
                runner = DaskRunner(client, model.graph, model.card, settings.probe_bits, settings.seed)
                score_model(model.graph, model.card, ScoreSettings(windows=2, horizon=2), progress=False, runner=runner)
                load = os.getloadavg()[0]
                start = time.perf_counter()
                remote = score_model(model.graph, model.card, settings, progress=False, runner=runner)
                seconds = time.perf_counter() - start
                client.close()
            finally:
                stop(processes)
            same = json.dumps(remote.to_dict(), sort_keys=True) == reference
            rows[f"dask-{workers}"] = {"seconds": seconds, "load_avg_1min": load, "identical": same,
                                       "numba_threads_per_worker": threads}
            print(f"dask, {workers} worker(s) x {threads} numba thread(s): {seconds:.1f} s (load {load:.1f}), "
                  f"identical: {same}", flush=True)
    if "dask-1" in rows and "dask-2" in rows:
        rows["speedup_2_over_1"] = rows["dask-1"]["seconds"] / rows["dask-2"]["seconds"]
        print(f"speed-up 2 vs 1 worker: {rows['speedup_2_over_1']:.2f}x")
    payload = {"machine": machine(), "model": model.card.name, "params": model.card.total_params,
               "units": len(model.card.layers), "windows": args.windows, "horizon": args.horizon, "runs": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"_threads{args.numba_threads}" if args.numba_threads else ""
    (RESULTS / f"dask_sweep{suffix}.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
