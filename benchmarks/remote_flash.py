"""Flash benchmark: what atomic, verified flashing costs over plain SFTP.

    .venv/bin/python benchmarks/remote_flash.py              # 8 MiB model, 3 repeats
    .venv/bin/python benchmarks/remote_flash.py --mib 32 --repeats 5

Against a real sshd on 127.0.0.1 (edgetqs.remote.local_board, the tests' board), in one run:

* baseline: SFTP put of the bundle's files into a directory, nothing else;
* flash: survey + upload + sha256 on the board + slot rename + current switch + prune;
* re-flash of the current bundle: survey and hashes only (nothing sent);
* rollback: one round trip.

Ratios are against the baseline measured in the same run; loopback has no
network cost, so the ratio shows the overhead of the safety steps (round trips,
a login shell per command, hashing on the board) at its largest. The last
row is one bare command: the fixed cost of a round trip through the login
user's shell start-up (on this machine root's .bashrc runs `pyenv init`).
Flash runs four such commands (survey, verify, rename, switch+prune); re-flash
one, rollback two.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edgetqs.bundle import write_bundle  # noqa: E402
from edgetqs.remote.flash import flash, rollback, slot_files  # noqa: E402
from edgetqs.remote.local_board import LocalBoard, make_keys  # noqa: E402
from edgetqs.remote.transport import Transport  # noqa: E402


def make_bundle(out: Path, model_bytes: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_bundle(
        out, model=rng.bytes(model_bytes), rollout={"window": 8, "features": 3, "patch": 1},
        probes_x=rng.standard_normal((4, 8, 3)).astype("float32"), probes_y=rng.standard_normal((4, 3)).astype("float32"),
        contexts=rng.standard_normal((2, 8, 3)).astype("float32"), horizon=5,
        reference_float=rng.standard_normal((2, 5, 3)).astype("float32"),
        reference_host=rng.standard_normal((2, 5, 3)).astype("float32"),
    )


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=8, help="model size in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with LocalBoard(workdir=tmp / "board", keys=make_keys(tmp / "keys")) as board:
            run(board, tmp, int(args.mib * 2**20), args.repeats)


def run(board: LocalBoard, tmp: Path, model_bytes: int, repeats: int) -> None:
    bundles = [make_bundle(tmp / f"bundle{i}", model_bytes, i) for i in range(repeats + 1)]
    total = slot_files(bundles[0], tmp).total_bytes
    times = {"baseline SFTP put": [], "flash (verified, atomic)": [], "re-flash current": [], "rollback": [],
             "one remote command (true)": []}
    with Transport(board.connection()) as t:
        flash(t, bundles[0])
        for i, bundle in enumerate(bundles[1:], 1):
            files = slot_files(bundle, tmp).paths
            plain = f"{board.root}/plain{i}"
            t.makedirs(plain)
            times["baseline SFTP put"].append(timed(lambda: [t.put(p, f"{plain}/{n}") for n, p in files.items()]))
            times["flash (verified, atomic)"].append(timed(lambda: flash(t, bundle, keep=2)))
            times["re-flash current"].append(timed(lambda: flash(t, bundle, keep=2)))
            times["rollback"].append(timed(lambda: rollback(t)))
            flash(t, bundle, keep=2)  # back to the newest for the next round
            times["one remote command (true)"].append(timed(lambda: t.run("true")))
    baseline = statistics.median(times["baseline SFTP put"])
    print(f"bundle: {total / 2**20:.1f} MiB in {len(files)} files; median of {repeats} runs")
    print(f"{'step':28s} {'seconds':>9s} {'MiB/s':>8s} {'vs baseline':>12s}")
    for name, samples in times.items():
        median = statistics.median(samples)
        rate = f"{total / 2**20 / median:8.1f}" if "put" in name or "verified" in name else f"{'':8s}"
        print(f"{name:28s} {median:9.3f} {rate} {median / baseline:11.2f}x")


if __name__ == "__main__":
    main()
