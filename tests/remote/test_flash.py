"""Atomic flashing over real SSH: slots, the current link, pruning, rollback,
and the faults that must never leave current on a partial or unverified model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.remote.flash import ChecksumMismatch, FlashHooks, flash, read_state, rollback
from edgetqs.remote.transport import DiskFull, HostUnreachable, Transport


def current_slot(board) -> str:
    return os.readlink(board.root / "current").rsplit("/", 1)[-1]


def assert_current_is(board, bundle_dir) -> None:
    """current resolves to a slot holding exactly this bundle's files."""
    live = board.root / "current"
    for name in os.listdir(bundle_dir):
        assert _sha(live / name) == _sha(bundle_dir / name), name


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_flash_fills_a_slot_points_current_at_it_and_is_idempotent(sshd_board, make_bundle):
    bundle = make_bundle("a")
    with Transport(sshd_board.connection()) as t:
        first = flash(t, bundle)
        again = flash(t, bundle)
    assert first.slot.startswith("0001-") and first.previous is None
    assert current_slot(sshd_board) == first.slot
    assert_current_is(sshd_board, bundle)
    assert os.readlink(sshd_board.root / "current") == f"models/{first.slot}"  # relative: survives a moved root
    assert again.already_current and again.uploaded_files == []


def test_keeps_the_newest_versions_and_rolls_back(sshd_board, make_bundle):
    bundles = [make_bundle(f"v{i}", seed=i) for i in range(3)]
    with Transport(sshd_board.connection()) as t:
        results = [flash(t, b, keep=2) for b in bundles]
        assert read_state(t).slots == [results[1].slot, results[2].slot]
        assert results[2].pruned == [results[0].slot]
        assert rollback(t) == (results[2].slot, results[1].slot)
        assert_current_is(sshd_board, bundles[1])
        with pytest.raises(EdgeTQSError, match="oldest version"):
            rollback(t)
        assert rollback(t, to=results[2].slot) == (results[1].slot, results[2].slot)
        with pytest.raises(EdgeTQSError, match="no version"):
            rollback(t, to="0001-000000000000")
        # keep=1 leaves only the new current.
        newest = flash(t, make_bundle("v3", seed=3), keep=1)
        assert read_state(t).slots == [newest.slot]


@pytest.mark.parametrize("moment", ["mid-upload", "after-upload", "before-switch"])
def test_sshd_killed_never_leaves_current_on_a_partial_model(sshd_board, make_bundle, moment):
    old, new = make_bundle("old", seed=1), make_bundle("new", seed=2, size=3 * 2**20)
    board = sshd_board.connection()
    with Transport(board) as t:
        flash(t, old)

    def kill_at_half(sent, total):
        if moment == "mid-upload" and sent > total // 2:
            sshd_board.kill()

    def kill(*_):
        sshd_board.kill()

    hooks = FlashHooks(
        after_upload=kill if moment == "after-upload" else None,
        before_switch=kill if moment == "before-switch" else None,
    )
    with pytest.raises(HostUnreachable):
        with Transport(board) as t:
            flash(t, new, on_progress=kill_at_half, hooks=hooks)
    assert_current_is(sshd_board, old)

    sshd_board.start()
    with Transport(board) as t:
        rerun = flash(t, new)
    assert_current_is(sshd_board, new)
    if moment != "mid-upload":
        assert rerun.uploaded_files == []  # everything already there and verified: resumed
    assert not list((sshd_board.root / "models").glob(".incoming-*"))


def test_corrupted_upload_is_caught_by_checksum_and_current_untouched(sshd_board, make_bundle):
    old, new = make_bundle("old", seed=1), make_bundle("new", seed=2)

    def corrupt(_t, incoming):
        model = sshd_board.root / "models" / incoming.rsplit("/", 1)[-1] / "model.tflite"
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))

    with Transport(sshd_board.connection()) as t:
        flash(t, old)
        with pytest.raises(ChecksumMismatch, match="model.tflite"):
            flash(t, new, hooks=FlashHooks(after_upload=corrupt))
        assert_current_is(sshd_board, old)
        rerun = flash(t, new)
    assert rerun.uploaded_files == ["model.tflite"]  # only the damaged file is sent again
    assert_current_is(sshd_board, new)


def test_full_disk_is_refused_before_upload(sshd_board, make_bundle):
    models = sshd_board.root / "models"
    models.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(models)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the full-disk test needs one")
    try:
        with Transport(sshd_board.connection()) as t:
            with pytest.raises(DiskFull) as info:
                flash(t, make_bundle("big", size=2 * 2**20))
        assert "MiB free" in str(info.value) and "needs 2.0" in str(info.value)
        assert not (sshd_board.root / "current").exists()
        assert os.listdir(models) == []  # nothing was sent
    finally:
        subprocess.run(["umount", str(models)], check=True)


def test_disk_filling_up_during_the_upload_is_disk_full_and_current_untouched(sshd_board, make_bundle):
    """df said there was room, then something else filled the card mid-upload."""
    models = sshd_board.root / "models"
    models.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(models)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the full-disk test needs one")
    filler = models / "filler"
    try:
        with Transport(sshd_board.connection()) as t:
            small = make_bundle("small", seed=1, size=16 * 1024)
            flash(t, small)

            def fill_the_disk(sent, total):
                if not filler.exists():
                    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)

            big = make_bundle("big", seed=2, size=1024 * 1024)
            with pytest.raises(DiskFull, match="ran out of disk space"):
                flash(t, big, on_progress=fill_the_disk)
            assert_current_is(sshd_board, small)
            filler.unlink()
            flash(t, big)
            assert_current_is(sshd_board, big)
    finally:
        subprocess.run(["umount", str(models)], check=True)


def test_archive_bundle_flashes_like_a_directory(sshd_board, make_bundle):
    archive = make_bundle("packed.tar.gz", seed=5)
    with Transport(sshd_board.connection()) as t:
        result = flash(t, archive)
    live = sshd_board.root / "current"
    assert current_slot(sshd_board) == result.slot
    assert {"manifest.json", "model.tflite", "probes.npz", "contexts.npz"} <= set(os.listdir(live))
    manifest = json.loads((live / "manifest.json").read_text())
    assert _sha(live / "model.tflite") == manifest["model"]["sha256"]
