"""benchmarks/fleet_faults.py --quick: 4 loopback boards, a 4 MiB model, one
fault-free board and one each killed mid-upload, with too small a disk, and
with a link that drops. Every board ends with a valid current, every failure
has its cause, and the killed board resumes in round 2."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "fleet_faults.py"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="the disk faults mount tmpfs: needs root")]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("fleet_faults", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_fleet_under_faults_leaves_no_invalid_current(tmp_path, ssh_keys):
    assert load_benchmark().main(["--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "fleet_faults_quick.json").read_text())
    boards = {b["fault"]: b for b in summary["boards_detail"]}
    assert summary["invalid_current"] == 0 and summary["failed_unexpectedly"] == 0
    assert summary["validated_pass"] == 4

    assert [r["ok"] for r in boards["none"]["rounds"]] == [True]
    dropped = boards["link-drops"]["rounds"]
    assert [r["ok"] for r in dropped] == [True] and dropped[0]["resumed"] > 0  # resumed within the flash

    killed = boards["sshd-killed"]["rounds"]
    assert killed[0]["cause"].startswith("HostUnreachable")
    assert killed[1]["ok"] and killed[1]["resumed"] > 0  # round 2 went on from the bytes already there
    assert killed[1]["sent"] < summary["bundle_bytes"] - killed[1]["resumed"] + 2**20

    full = boards["disk-too-small"]
    assert all(r["cause"].startswith("DiskFull") and "free" in r["cause"] for r in full["rounds"])
    assert full["current"] == "old"  # refused before anything was sent; the old model still runs
    assert {b["current"] for f, b in boards.items() if f != "disk-too-small"} == {"new"}
    assert (tmp_path / "fleet_faults_quick.png").stat().st_size > 10_000
