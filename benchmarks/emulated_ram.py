"""The emulated Pi's RAM limit on cold and warm page caches (issue #14, item 3).

    .venv/bin/python benchmarks/emulated_ram.py [--repeats 2] [--drop-caches]

Three bundles (the tiny calibration model, and tests/remote/test_emulated_ram.py's
wide MLP forecaster in int8 and float32) are run with the host's LiteRT
natively (peak RSS, what a board's budget counts) and on the emulated Pi
(edgetqs.remote.emulated_board) in a memory cgroup: first without a binding
limit (peak cgroup charge), then under the limit of the test's board (88 MiB
for the process + qemu's measured overhead: OOM-killed or not, seconds). Each
emulated run is made on a warm page cache and on a cold one: the root, qemu and
the bundles evicted with posix_fadvise (default; only this benchmark's files)
or the whole page cache dropped (--drop-caches; root only, and it slows
everything else on the machine). A run's charge minus the tiny model's should
equal its native RSS minus the tiny model's, cold or warm: that is what makes
the limit the board's. ~3 min on 2 idle cores; writes
benchmarks/results/emulated_ram.json (emulated_ram_drop_caches.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqs_common import RESULTS, machine  # noqa: E402

MiB = 2**20
BOARD_BYTES = 88 * MiB  # tests/remote/test_emulated_ram.py's small Pi: 352 MiB x share 0.25


def bundles(work: Path) -> dict[str, Path]:
    import numpy as np
    from tests.remote.forecast_bundle import (FEATURES, ForecasterFiles, aeq_int8_dynamic, wide_float_forecaster,
                                              write_forecast_bundle)
    from tests.remote.test_emulated_ram import WIDTH

    from edgetqs.remote import emulated_board

    float_tflite = wide_float_forecaster(WIDTH)
    files = ForecasterFiles(float_tflite, aeq_int8_dynamic(float_tflite), np.zeros(FEATURES, np.float32))
    return {"tiny": emulated_board.calibration_bundle(work / "tiny"),
            "int8": write_forecast_bundle(work / "int8", files),
            "float32": write_forecast_bundle(work / "float32", files, model_bytes=files.float_tflite)}


def make_cold(root: Path, bundle: Path, drop_caches: bool) -> None:
    if drop_caches:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3")
        return
    from tests.remote.test_emulated_ram import evict_from_page_cache

    files = [p for p in [*root.rglob("*"), *bundle.iterdir()] if p.is_file() and not p.is_symlink()]
    evict_from_page_cache([*files, shutil.which("qemu-aarch64-static")])


def run(python: str, bundle: Path, out: Path) -> tuple[int, float, dict | None]:
    from edgetqs.remote import runner

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([python, runner.__file__, "--bundle", str(bundle), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    results = out / runner.RESULTS_JSON
    return done.returncode, seconds, json.loads(results.read_text()) if results.exists() else None


def emulated(work: Path, root: Path, board_bytes: int, name: str, bundle: Path, cache: str, drop: bool) -> dict:
    from edgetqs.remote import emulated_board

    with emulated_board.limit_ram(work / "pi-python", root, board_bytes) as ram:
        if cache == "cold":
            make_cold(root, bundle, drop)
        load = os.getloadavg()[0]
        code, seconds, _ = run(str(work / "pi-python" / "bin" / "python"), bundle, work / "out")
        return {"bundle": name, "cache": cache, "limit_mib": round(ram.limit_bytes / MiB, 1),
                "peak_charge_mib": round(ram.peak_bytes() / MiB, 1), "exit": code, "oom_kills": ram.oom_kills(),
                "seconds": round(seconds, 1), "load_1min": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="cold and warm runs per bundle and limit")
    parser.add_argument("--drop-caches", action="store_true", help="cold = the whole page cache dropped")
    args = parser.parse_args(argv)
    from edgetqs.remote import emulated_board

    root = emulated_board.build_root()
    overhead = emulated_board.qemu_overhead_bytes(root)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgetqs-emulated-ram-") as tmp:
        work = Path(tmp)
        made = bundles(work)
        native = {name: run(sys.executable, bundle, work / "native")[2]["peak_memory_kib"] * 1024 / MiB
                  for name, bundle in made.items()}
        for board_bytes, kind in ((1 << 30, "unbound"), (BOARD_BYTES, "board")):
            for name, bundle in made.items():
                for _ in range(args.repeats):
                    for cache in ("cold", "warm"):
                        row = {"limit": kind, **emulated(work, root, board_bytes, name, bundle, cache, args.drop_caches)}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    unbound = {(r["bundle"], r["cache"]): r["peak_charge_mib"] for r in rows if r["limit"] == "unbound"}
    growth = {name: {"native_rss_mib": round(native[name] - native["tiny"], 1),
                     **{f"emulated_{cache}_mib": round(unbound[name, cache] - unbound["tiny", "warm"], 1)
                        for cache in ("cold", "warm")}}
              for name in made if name != "tiny"}
    result = {"board_mib": BOARD_BYTES / MiB, "qemu_overhead_mib": round(overhead / MiB, 1),
              "cold": "drop_caches" if args.drop_caches else "posix_fadvise",
              "native_peak_rss_mib": {k: round(v, 1) for k, v in native.items()},
              "growth_over_tiny": growth, "runs": rows, "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"emulated_ram{'_drop_caches' if args.drop_caches else ''}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "machine")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
