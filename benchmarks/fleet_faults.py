"""Fleet benchmark: flash and validate a large bundle on many loopback boards
while faults hit some of them, and count what every board is left with.

    .venv/bin/python benchmarks/fleet_faults.py            # 32 boards, 100 MiB model, ~4-5 min under load
    .venv/bin/python benchmarks/fleet_faults.py --quick    # 4 boards, 4 MiB model (what the test runs)

Every board is a real sshd on 127.0.0.1 (edgetqs.remote.local_board), its
root a directory here. All boards first get a small "old" bundle (so each has
a valid ``current``), then the large one, flashed concurrently, with faults:

* ``sshd-killed``: sshd and its sessions SIGKILLed half-way through the upload
  (the board "loses power"); round 2 starts it again and reflashes, which must
  resume from the bytes already there;
* ``disk-too-small``: models/ is a tmpfs smaller than the bundle: refused
  before anything is sent (and still refused in round 2);
* ``disk-fills``: models/ is a tmpfs with room, but another writer fills it
  at 30% of the upload; round 2 deletes that file and reflashes (resuming);
* ``link-drops``: the SSH connection goes through a relay (link_proxy) that
  resets it at 40% of the bundle; the flash reconnects and resumes in-run.

Then every board's ``current`` is checked on disk (must resolve to a slot
whose every file has the sha256 of the old or the new bundle: "invalid" must
be 0), and every board is validated (the runner on the board, one host run
per bundle, edgetqs.remote.validate.judge). The model is a wide float MLP
forecaster (a real TFLite, random weights: no forecast quality is claimed;
validation checks the board computes the host's numbers and does not blow up).
Flash times are wall times of concurrent flashes on a shared 2-core machine;
the load average is printed with them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from edgetqs.bundle import MANIFEST, load_bundle  # noqa: E402
from edgetqs.errors import EdgeTQSError  # noqa: E402
from edgetqs.remote.flash import RUNNER_FILE, flash, runner_path, slot_files  # noqa: E402
from edgetqs.remote.link_proxy import LinkProxy  # noqa: E402
from edgetqs.remote.local_board import LocalBoard, make_keys  # noqa: E402
from edgetqs.remote.transport import Transport  # noqa: E402
from edgetqs.remote.validate import judge, run_locally, run_on_board  # noqa: E402

RESULTS = Path(os.environ.get("EDGETQS_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
MiB = 2**20
FAULTS = ("sshd-killed", "disk-too-small", "disk-fills", "link-drops")
FLASH_PARALLEL = 16  # boards flashed at once (edgetqs.remote.fleet.MAX_PARALLEL)
VALIDATE_PARALLEL = 4  # runner processes at once: each holds the model (+ XNNPACK's packed copy)
console = Console(width=170)
logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # the faults' resets are reported per board instead


@dataclass
class Board:
    index: int
    fault: str
    local: LocalBoard
    proxy: LinkProxy | None = None
    rounds: list[dict] = field(default_factory=list)  # one per flash attempt: ok, cause, seconds, sent, resumed
    current: str = ""  # "new", "old" or "INVALID: why"
    validation: str = ""

    @property
    def name(self) -> str:
        return f"b{self.index:02d}-{self.fault}"

    def connection(self):
        # A few more tries than the tests' boards: 32 sshds on a loaded machine answer slowly.
        settings = dict(name=self.name, retries=3, backoff=0.25)
        if self.proxy is not None:
            return self.local.connection_via(self.proxy.port, **settings)
        return self.local.connection(**settings)


def assign_faults(count: int) -> list[str]:
    """3 of every 8 boards faulted, the faults in turn; under 8 boards, one
    fault-free board and one of each fault but disk-fills."""
    if count < 8:
        return ["none", "sshd-killed", "disk-too-small", "link-drops"][:count]
    faulted = count * 3 // 8
    return ["none"] * (count - faulted) + [FAULTS[i % len(FAULTS)] for i in range(faulted)]


# -- the bundles --------------------------------------------------------------

def build_bundles(work: Path, model_mib: float) -> tuple[Path, Path]:
    """(old, new): a tiny forecaster and a wide float one of about ``model_mib`` MiB."""
    from tests.remote.forecast_bundle import build_forecaster, write_forecast_bundle

    old = write_forecast_bundle(work / "old", build_forecaster(), model_bytes=build_forecaster().float_tflite)
    wide = wide_forecaster(model_mib)
    new = write_forecast_bundle(work / "new", wide, model_bytes=wide.float_tflite)
    return old, new


def wide_forecaster(model_mib: float):
    """The tests' wide float MLP forecaster (w x w float32 weights make the size)."""
    import numpy as np

    from tests.remote.forecast_bundle import FEATURES, ForecasterFiles, wide_float_forecaster

    model = wide_float_forecaster(int((model_mib * MiB / 4) ** 0.5), seed=3)
    return ForecasterFiles(model, model, np.zeros(FEATURES, np.float32))


def bundle_hashes(bundle: Path) -> dict[str, str]:
    """What a slot of this bundle holds: its files' sha256 and the runner's."""
    loaded = load_bundle(bundle)
    hashes = {name: meta["sha256"] for name, meta in loaded.manifest["files"].items()}
    hashes[MANIFEST] = sha256(bundle / MANIFEST)
    hashes[RUNNER_FILE] = sha256(runner_path())
    return hashes


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- faults -------------------------------------------------------------------

def set_up_fault(board: Board, old_bytes: int, new_bytes: int) -> None:
    models = board.local.root / "models"
    if board.fault in ("disk-too-small", "disk-fills"):
        size = old_bytes * 2 + new_bytes // 2 if board.fault == "disk-too-small" else old_bytes * 2 + new_bytes * 3 // 2
        models.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size // 1024 + 1}k", "tmpfs", str(models)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            raise EdgeTQSError(f"cannot mount a tmpfs for the {board.fault} fault: {mounted.stderr.strip()}",
                               "run as root (the disk faults need a real, small file system)")
    if board.fault == "link-drops":
        board.proxy = LinkProxy(board.local.port).start()


def tear_down_fault(board: Board) -> None:
    if board.proxy is not None:
        board.proxy.stop()
    models = board.local.root / "models"
    if board.fault.startswith("disk-"):
        subprocess.run(["umount", str(models)], capture_output=True)


def fault_hook(board: Board, new_bytes: int):
    """on_progress for round 1: the fault strikes at its moment, once."""
    struck = threading.Event()

    def on_progress(sent: int, total: int) -> None:
        if struck.is_set():
            return
        if board.fault == "sshd-killed" and sent > total // 2:
            struck.set()
            board.local.kill()
        elif board.fault == "disk-fills" and sent > total * 3 // 10:
            struck.set()
            subprocess.run(["dd", "if=/dev/zero", f"of={board.local.root / 'models' / 'filler'}", "bs=1M"],
                           capture_output=True)

    if board.fault == "link-drops":
        board.proxy.drop_after(int(new_bytes * 0.4))
    return on_progress


def clear_fault(board: Board) -> None:
    """Between rounds: the board comes back, the other writer's file goes."""
    if board.fault == "sshd-killed":
        board.local.start()
    if board.fault == "disk-fills":
        (board.local.root / "models" / "filler").unlink(missing_ok=True)


# -- flashing, checking, validating ------------------------------------------------

def flash_round(boards: list[Board], content, hooks: dict[str, object]) -> None:
    def one(board: Board) -> None:
        started = time.monotonic()
        record = {"ok": False, "cause": "", "sent": 0, "resumed": 0}
        transport = Transport(board.connection())
        try:
            with transport:
                result = flash(transport, content, keep=2, on_progress=hooks.get(board.name))
            record.update(ok=True, resumed=sum(result.resumed_from.values()))
        except EdgeTQSError as exc:
            record["cause"] = f"{type(exc).__name__}: {exc.problem}"
        except Exception as exc:  # a bug, not a clean failure: the table shows it as such
            record["cause"] = f"UNEXPECTED {type(exc).__name__}: {exc}"
        record["sent"] = transport.sent_bytes  # file bytes put on the wire, a failed attempt's too
        record["seconds"] = time.monotonic() - started
        board.rounds.append(record)

    with ThreadPoolExecutor(FLASH_PARALLEL) as pool:
        list(pool.map(one, boards))


def check_current(board: Board, old: dict[str, str], new: dict[str, str]) -> str:
    """Which bundle ``current`` holds, read from the board's disk; INVALID unless complete and verified."""
    live = board.local.root / "current"
    if not live.is_symlink():
        return "INVALID: no current"
    try:
        found = {name: sha256(live / name) for name in new}
    except OSError as exc:
        return f"INVALID: {exc}"
    for label, hashes in (("new", new), ("old", old)):
        if found == hashes:
            return label
    return "INVALID: files do not match either bundle"


def validate_all(boards: list[Board], bundles: dict[str, Path], work: Path) -> None:
    hosts = {label: run_locally(path, work / f"host-{label}", contexts=2, horizon=6) for label, path in bundles.items()}
    loaded = {label: load_bundle(path) for label, path in bundles.items()}

    def one(board: Board) -> None:
        label = board.current
        if label not in bundles:
            board.validation = "skipped (invalid current)"
            return
        try:
            with Transport(board.connection()) as t:
                run = run_on_board(t, work / board.name, python=sys.executable, contexts=2, horizon=6)
            verdict = judge(loaded[label], run, hosts[label], board_name=board.name)
            board.validation = "PASS" if verdict.passed else "FAIL: " + "; ".join(c.name for c in verdict.failures)
        except EdgeTQSError as exc:
            board.validation = f"ERROR: {exc.problem}"

    with ThreadPoolExecutor(VALIDATE_PARALLEL) as pool:
        list(pool.map(one, boards))


# -- the run -------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run(count: int, model_mib: float, out: Path, name: str) -> dict:
    load_start = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgetqs-fleet-") as work_name:
        work = Path(work_name)
        console.print(f"building the bundles (model ~{model_mib:g} MiB) ...")
        old, new = build_bundles(work / "bundles", model_mib)
        old_hashes, new_hashes = bundle_hashes(old), bundle_hashes(new)
        old_bytes = sum((old / n).stat().st_size for n in old_hashes if n != RUNNER_FILE) + runner_path().stat().st_size
        new_bytes = sum((new / n).stat().st_size for n in new_hashes if n != RUNNER_FILE) + runner_path().stat().st_size
        build_seconds = time.monotonic() - started

        keys = make_keys(work / "keys")
        boards = [Board(i, fault, LocalBoard(work / f"board{i:02d}", keys)) for i, fault in enumerate(assign_faults(count))]
        try:
            for board in boards:
                board.local.start()
                set_up_fault(board, old_bytes, new_bytes)
            with tempfile.TemporaryDirectory(prefix="edgetqs-flash-") as staging_old, \
                    tempfile.TemporaryDirectory(prefix="edgetqs-flash-") as staging_new:
                old_content, new_content = slot_files(old, Path(staging_old)), slot_files(new, Path(staging_new))
                console.print(f"{count} boards up; flashing the old bundle ({old_bytes / MiB:.2f} MiB) everywhere ...")
                flash_round(boards, old_content, {})
                for board in boards:
                    board.rounds.clear()
                    assert check_current(board, old_hashes, new_hashes) == "old", board.name

                console.print(f"round 1: the new bundle ({new_bytes / MiB:.1f} MiB) with faults ...")
                hooks = {board.name: fault_hook(board, new_bytes) for board in boards}
                round_1 = time.monotonic()
                flash_round(boards, new_content, hooks)
                round_1 = time.monotonic() - round_1
                load_flash = os.getloadavg()

                retry = [board for board in boards if not board.rounds[-1]["ok"]]
                for board in retry:
                    clear_fault(board)
                console.print(f"round 2: reflashing the {len(retry)} boards that failed ...")
                flash_round(retry, new_content, {})

            for board in boards:
                board.current = check_current(board, old_hashes, new_hashes)
            console.print("validating every board ...")
            validate_all(boards, {"old": old, "new": new}, work / "validation")
        finally:
            for board in boards:
                tear_down_fault(board)
                board.local.kill()
    return summarise(boards, name, out, count, model_mib, new_bytes, round_1, build_seconds,
                     load_start, load_flash, os.getloadavg(), time.monotonic() - started)


def summarise(boards, name, out, count, model_mib, new_bytes, round_1, build_seconds,
              load_start, load_flash, load_end, seconds) -> dict:
    first = [b.rounds[0] for b in boards]
    ok_times = [r["seconds"] for r in first if r["ok"]]
    summary = {
        "boards": count, "model_mib": model_mib, "bundle_bytes": new_bytes,
        "ok_first_round": sum(r["ok"] for r in first),
        "failed_cleanly_first_round": sum(not r["ok"] and not r["cause"].startswith("UNEXPECTED") for r in first),
        "failed_unexpectedly": sum(r["cause"].startswith("UNEXPECTED") for b in boards for r in b.rounds),
        "ok_after_round_2": sum(b.rounds[-1]["ok"] for b in boards),
        "current_new": sum(b.current == "new" for b in boards),
        "current_old": sum(b.current == "old" for b in boards),
        "invalid_current": sum(b.current.startswith("INVALID") for b in boards),
        "validated_pass": sum(b.validation == "PASS" for b in boards),
        "flash_p50_s": percentile(ok_times, 0.5), "flash_p99_s": percentile(ok_times, 0.99),
        "round_1_wall_s": round_1, "throughput_mib_s": sum(r["sent"] for r in first) / MiB / round_1,
        "build_s": build_seconds, "total_s": seconds,
        "load_start": load_start, "load_during_flash": load_flash, "load_end": load_end,
        "boards_detail": [{"board": b.name, "fault": b.fault, "rounds": b.rounds, "current": b.current,
                           "validation": b.validation} for b in boards],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2, default=float))
    print_tables(boards, summary)
    plot(boards, summary, out / f"{name}.png")
    return summary


def print_tables(boards: list[Board], s: dict) -> None:
    table = Table(title="every board")
    for column in ("board", "round 1", "round 2", "s (r1)", "sent MiB", "resumed MiB", "current", "validation"):
        table.add_column(column, overflow="fold")
    for b in boards:
        def cell(r):
            return "[green]ok[/]" if r["ok"] else f"[red]failed[/] {short(r['cause'])}"

        last = b.rounds[-1]
        table.add_row(b.name, cell(b.rounds[0]), cell(b.rounds[1]) if len(b.rounds) > 1 else "",
                      f"{b.rounds[0]['seconds']:.1f}", f"{sum(r['sent'] for r in b.rounds) / MiB:.1f}",
                      f"{last['resumed'] / MiB:.1f}", b.current, b.validation[:60])
    console.print(table)
    summary = Table(title=f"fleet: {s['boards']} boards, bundle {s['bundle_bytes'] / MiB:.1f} MiB")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for label, value in (
        ("boards ok (round 1)", s["ok_first_round"]),
        ("boards failed cleanly, with their cause (round 1)", s["failed_cleanly_first_round"]),
        ("boards ok after round 2 (faults cleared, resumed)", s["ok_after_round_2"]),
        ("unexpected errors (bugs)", s["failed_unexpectedly"]),
        ("current = new / old bundle", f"{s['current_new']} / {s['current_old']}"),
        ("boards with an invalid current", s["invalid_current"]),
        ("validation PASS", s["validated_pass"]),
        ("flash time p50 / p99 (ok in round 1)", f"{s['flash_p50_s']:.1f} s / {s['flash_p99_s']:.1f} s"),
        ("round 1 wall time, SFTP throughput", f"{s['round_1_wall_s']:.1f} s, {s['throughput_mib_s']:.0f} MiB/s"),
        ("load average start / flash / end", " / ".join(f"{x[0]:.1f}" for x in
                                                      (s["load_start"], s["load_during_flash"], s["load_end"]))),
        ("total wall time (build bundles)", f"{s['total_s']:.0f} s ({s['build_s']:.0f} s)"),
    ):
        summary.add_row(label, str(value))
    console.print(summary)


def short(cause: str) -> str:
    """The cause without the board's long root path, cut at 100 characters."""
    words = [w for w in cause.split() if not w.startswith("/tmp/")]
    text = " ".join(words)
    return text if len(text) <= 100 else text[:99] + "…"


def plot(boards: list[Board], s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.25 * len(boards) + 1.5))
    for row, b in enumerate(boards):
        left = 0.0
        for number, r in enumerate(b.rounds):
            colour = "tab:green" if r["ok"] else "tab:red"
            ax.barh(row, r["seconds"], left=left, color=colour, alpha=1.0 if number == 0 else 0.5, edgecolor="black")
            left += r["seconds"]
    ax.set_yticks(range(len(boards)), [b.name for b in boards], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("flash wall time, s (solid: round 1, faded: round 2; green ok, red failed cleanly)")
    ax.set_title(f"{s['boards']} loopback boards, {s['bundle_bytes'] / MiB:.0f} MiB bundle: invalid current "
                 f"{s['invalid_current']}, p50 {s['flash_p50_s']:.1f} s, p99 {s['flash_p99_s']:.1f} s "
                 f"(load {s['load_during_flash'][0]:.1f})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=32, help="loopback boards, one sshd each (at most 48)")
    parser.add_argument("--model-mib", type=float, default=100, help="size of the large model")
    parser.add_argument("--quick", action="store_true", help="4 boards, 4 MiB model")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for fleet_faults[_quick].json/.png")
    args = parser.parse_args(argv)
    if args.quick:
        args.boards, args.model_mib = 4, 4
    if not 1 <= args.boards <= 48:
        raise SystemExit("--boards must be 1..48 (the machine is shared)")
    if shutil.which("mount") is None or os.geteuid() != 0:
        raise SystemExit("the disk faults mount small tmpfs file systems: run as root")
    summary = run(args.boards, args.model_mib, args.out, "fleet_faults_quick" if args.quick else "fleet_faults")
    return 0 if summary["invalid_current"] == 0 and summary["failed_unexpectedly"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
