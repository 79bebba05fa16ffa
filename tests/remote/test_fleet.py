"""Fleets over real SSH: several boards at once, one board's failure kept to
itself, group files, and the CLI commands end to end."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from edgetqs.cli.app import main
from edgetqs.errors import EdgeTQSError
from edgetqs.remote.connection import resolve_board
from edgetqs.remote.fleet import load_group, run_fleet
from edgetqs.remote.flash import flash


def write_group(path, boards) -> None:
    path.write_text("".join(
        f'[[board]]\nname = "{name}"\nhost = "{b.user}@{b.host}:{b.port}"\nkey = "{b.keys.client_key}"\n'
        f'known_hosts = "{b.known_hosts}"\nroot = "{b.root}"\n\n'
        for name, b in boards.items()
    ))


def cli_args(board) -> list[str]:
    return ["--host", f"{board.user}@{board.host}:{board.port}", "--key", str(board.keys.client_key),
            "--known-hosts", str(board.known_hosts), "--root", str(board.root), "--retries", "1"]


def test_one_dead_board_does_not_stop_the_others(sshd_board_factory, make_bundle):
    alive = [sshd_board_factory(f"pi{i}") for i in range(3)]
    dead = sshd_board_factory("dead")
    dead.kill()
    boards = [replace(b.connection(), name=f"pi{i}") for i, b in enumerate(alive)]
    boards.insert(1, replace(dead.connection(), name="dead", retries=1))
    bundle = make_bundle("fleet")
    outcomes = run_fleet(boards, lambda t: flash(t, bundle), lambda r: (True, r.summary()))
    assert [o.board for o in outcomes] == ["pi0", "dead", "pi1", "pi2"]
    assert [o.ok for o in outcomes] == [True, False, True, True]
    assert "cannot reach dead" in outcomes[1].detail
    for board in alive:
        assert (board.root / "current" / "model.tflite").exists()


def test_group_file_gives_each_board_its_own_address(sshd_board_factory, tmp_path):
    boards = {"left": sshd_board_factory("left"), "right": sshd_board_factory("right")}
    group = tmp_path / "lab.toml"
    write_group(group, boards)
    loaded = load_group(group)
    assert [(b.name, b.port, b.root) for b in loaded] == [
        ("left", boards["left"].port, str(boards["left"].root)),
        ("right", boards["right"].port, str(boards["right"].root)),
    ]
    group.write_text('[[board]]\nhost = "pi@a"\npasword = "x"\n')
    with pytest.raises(EdgeTQSError, match="unknown field"):
        load_group(group)


def test_profile_defaults_are_overridden_by_ad_hoc_options():
    board = resolve_board(target="rpi4", host="admin@10.1.2.3:2222", key="/k", known_hosts="/kh")
    assert (board.user, board.host, board.port, board.key_path, board.known_hosts) == (
        "admin", "10.1.2.3", 2222, "/k", "/kh")
    assert board.firmware is not None and board.firmware.setup.arch == "aarch64"
    profile_only = resolve_board(target="rpi4")
    assert (profile_only.host, profile_only.user, profile_only.port) == ("rpi4.local", "pi", 22)
    with pytest.raises(EdgeTQSError, match="unknown target"):
        resolve_board(target="no-such-board")


def test_cli_flash_rollback_and_fleet_exit_codes(sshd_board_factory, make_bundle, tmp_path, capsys):
    board = sshd_board_factory("cli")
    first, second = make_bundle("one", seed=1), make_bundle("two", seed=2)
    assert main(["flash", str(first), *cli_args(board)]) == 0
    table = capsys.readouterr().out
    assert "127.0.0.1" in table and "ok" in table and "FAILED" not in table
    assert main(["flash", str(second), *cli_args(board), "--json"]) == 0
    flashed = json.loads(capsys.readouterr().out)
    assert flashed[0]["ok"] and flashed[0]["result"]["slot"].startswith("0002-")
    assert main(["rollback", *cli_args(board)]) == 0
    assert "0002-" in capsys.readouterr().out
    assert main(["rollback", *cli_args(board), "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)[0]
    assert listed["result"]["current"].startswith("0001-") and len(listed["result"]["slots"]) == 2
    assert os.readlink(board.root / "current").startswith("models/0001-")

    dead = sshd_board_factory("gone")
    dead.kill()
    group = tmp_path / "group.toml"
    write_group(group, {"cli": board, "gone": dead})
    assert main(["flash", str(second), "--fleet", str(group), "--retries", "0", "--json"]) == 1
    outcomes = json.loads(capsys.readouterr().out)
    assert [(o["board"], o["ok"]) for o in outcomes] == [("cli", True), ("gone", False)]


def test_boards_are_worked_on_at_the_same_time(sshd_board_factory):
    import threading

    boards = [replace(sshd_board_factory(f"c{i}").connection(), name=f"c{i}") for i in range(3)]
    # Each board's action waits until all three are inside it: sequential work would time out.
    everyone_in = threading.Barrier(len(boards), timeout=60)

    def action(t):
        t.run("true")
        everyone_in.wait()
        return threading.current_thread().name

    outcomes = run_fleet(boards, action, lambda name: (True, name))
    assert all(o.ok for o in outcomes), [o.detail for o in outcomes]
    assert len({o.detail for o in outcomes}) == 3  # three worker threads
