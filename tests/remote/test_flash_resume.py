"""Large bundles over real SSH: an interrupted upload resumes from the bytes
that reached the board (verified by the sha256 of that prefix), not from zero,
and the free-space check counts the old slots it keeps and the ones it prunes.

Bytes on the wire are counted by a TCP relay between host and board
(edgetqs.remote.link_proxy), independently of what flash says it sent."""

from __future__ import annotations

import subprocess

import pytest
from tests.remote.test_flash import assert_current_is, current_slot

from edgetqs.remote.flash import flash, read_state
from edgetqs.remote.link_proxy import LinkProxy
from edgetqs.remote.transport import DiskFull, HostUnreachable, Transport

MiB = 2**20


def incoming_model(board):
    [upload] = (board.root / "models").glob(".incoming-*")
    return upload / "model.tflite"


def test_sshd_killed_mid_upload_resumes_from_the_verified_offset(sshd_board, make_bundle):
    old, new = make_bundle("old", seed=1), make_bundle("new", seed=2, size=8 * MiB)
    with LinkProxy(sshd_board.port) as link:
        board = sshd_board.connection_via(link.port)
        with Transport(board) as t:
            flash(t, old)

        def kill_past_half(sent, total):
            if sent > total * 0.6:
                sshd_board.kill()

        with pytest.raises(HostUnreachable):
            with Transport(board) as t:
                flash(t, new, on_progress=kill_past_half)
        assert_current_is(sshd_board, old)
        partial = incoming_model(sshd_board).stat().st_size
        assert 0 < partial < 8 * MiB  # what reached the disk; under load sshd lags what was sent

        sshd_board.start()
        wire_before = link.to_board
        with Transport(sshd_board.connection_via(link.port, retries=5, backoff=0.5)) as t:  # a loaded machine
            rerun = flash(t, new)
        wire = link.to_board - wire_before

    assert_current_is(sshd_board, new)  # every file of the slot has the bundle's sha256
    assert rerun.resumed_from == {"model.tflite": partial}
    rest = (new / "model.tflite").stat().st_size - partial
    others = sum((new / name).stat().st_size for name in rerun.uploaded_files if name not in ("model.tflite", "runner.py"))
    runner = (sshd_board.root / "current" / "runner.py").stat().st_size
    assert rerun.uploaded_bytes == rest + others + runner
    # What crossed the link: the rest and SSH's framing, far from the 8 MiB a restart sends.
    assert rest <= wire < rest + others + runner + 512 * 1024


def test_a_link_that_drops_mid_upload_resumes_within_the_same_flash(sshd_board, make_bundle):
    bundle = make_bundle("big", seed=3, size=16 * MiB)
    stages = []
    with LinkProxy(sshd_board.port) as link:
        with Transport(sshd_board.connection_via(link.port)) as t:
            link.drop_after(10 * MiB)
            result = flash(t, bundle, on_stage=stages.append)
    assert link.drops == 1
    assert_current_is(sshd_board, bundle)
    resumed = result.resumed_from["model.tflite"]
    assert 0 < resumed < 10 * MiB
    assert any(stage.startswith("resuming model.tflite at") for stage in stages), stages
    total = sum(path.stat().st_size for path in (sshd_board.root / "current").iterdir())
    # Sent: everything once, plus only what was in flight when the link died
    # (up to paramiko's 2 MiB channel window beyond what crossed the relay).
    assert total <= result.uploaded_bytes < total + (10 * MiB - resumed) + 3 * MiB


def test_a_partial_file_whose_bytes_differ_is_sent_again_from_zero(sshd_board, make_bundle):
    new = make_bundle("new", seed=2, size=4 * MiB)

    def kill_past_half(sent, total):
        if sent > total // 2:
            sshd_board.kill()

    board = sshd_board.connection()
    with pytest.raises(HostUnreachable):
        with Transport(board) as t:
            flash(t, new, on_progress=kill_past_half)
    partial = incoming_model(sshd_board)
    data = bytearray(partial.read_bytes())
    data[100] ^= 0xFF  # the prefix on the board no longer matches the host's file
    partial.write_bytes(bytes(data))
    sshd_board.start()
    with Transport(board) as t:
        rerun = flash(t, new)
    assert "model.tflite" not in rerun.resumed_from
    assert rerun.uploaded_bytes >= 4 * MiB
    assert_current_is(sshd_board, new)


@pytest.fixture
def small_card(sshd_board):
    """models/ on a 3 MiB tmpfs: a real file system that fills up."""
    models = sshd_board.root / "models"
    models.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(models)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the free-space test needs one")
    yield sshd_board
    subprocess.run(["umount", str(models)], check=True)


def test_free_space_counts_the_slots_kept_and_prunes_doomed_ones_first(small_card, make_bundle):
    board = small_card
    v = [make_bundle(f"v{i}", seed=i, size=MiB) for i in range(4)]
    with Transport(board.connection()) as t:
        first, second = flash(t, v[0], keep=2), flash(t, v[1], keep=2)
        # Two 1 MiB slots on a 3 MiB card: a third fits only once v0, which
        # keep=2 prunes anyway, is gone; so it goes first, before the upload.
        third = flash(t, v[2], keep=2)
        assert third.pruned_before_upload == [first.slot]
        assert read_state(t).slots == [second.slot, third.slot]
        assert_current_is(board, v[2])

        # keep=3 keeps both old slots: no room, and the error says what is kept and what would fit.
        with pytest.raises(DiskFull) as info:
            flash(t, v[3], keep=3)
        message = str(info.value)
        assert f"{second.slot} 1.0" in message and f"{third.slot} 1.0" in message and "(current)" in message
        assert "--keep 2" in info.value.fix
        assert current_slot(board) == third.slot and read_state(t).slots == [second.slot, third.slot]

        # Only the current slot left to count: it stays until the new one is verified.
        big = make_bundle("big", seed=9, size=int(2.2 * MiB))
        with pytest.raises(DiskFull) as info:
            flash(t, big, keep=1)
        assert "current version stays" in info.value.fix
        assert_current_is(board, v[2])


def test_boards_without_sha256sum_hash_with_python_in_chunks(tmp_path):
    """The board-side fallback (no coreutils): same digests as the host's, read 1 MiB at a time."""
    import hashlib
    import os
    import sys

    from edgetqs.remote.flash import _hash_function, _parse_hashes

    files = {"model.tflite": os.urandom(3 * MiB + 5), "manifest.json": b"{}"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    bin_dir = tmp_path / "bin"  # a PATH with python3 and nothing else: no sha256sum
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    script = _hash_function([*files, "absent.bin"]) + "h"
    done = subprocess.run(["/bin/sh", "-c", script], cwd=tmp_path, env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, check=True)
    assert _parse_hashes(done.stdout.splitlines()) == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    assert "f.read(1<<20)" in script and 'open(n,"rb").read()' not in script  # never the whole file
