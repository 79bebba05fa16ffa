"""`edgetqs provision | flash | rollback | validate`: boards over SSH.

Every command takes one board (``--target NAME`` and/or ``--host user@ADDR``),
several (``--target a --target b``) or a group file (``--fleet FILE``); boards
are worked on concurrently, a summary table is printed, and the exit code is
non-zero if any board failed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from edgetqs.cli.common import add_command, add_json_flag, console, line, print_json, styled
from edgetqs.errors import EdgeTQSError
from edgetqs.remote.connection import BoardConnection, resolve_board
from edgetqs.remote.fleet import load_group, run_fleet, summary_table

BOARD_EXAMPLE = "--target rpi4 --host pi@192.168.1.42"


def add_board_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("board (one, several, or a fleet)")
    group.add_argument("--target", action="append", default=[], metavar="NAME",
                       help="board profile from targets/ (repeat for several boards)")
    group.add_argument("--host", metavar="USER@ADDR[:PORT]", help="address; overrides the profile's, or stands alone")
    group.add_argument("--key", metavar="FILE", help="private key (default: the profile's, else ssh-agent)")
    group.add_argument("--known-hosts", metavar="FILE", help="known_hosts to check the board's host key against")
    group.add_argument("--jump", metavar="USER@ADDR[:PORT]", help="reach the board through this SSH jump host")
    group.add_argument("--root", metavar="DIR", help="edgetqs directory on the board (default ~/edgetqs)")
    group.add_argument("--firmware", metavar="NAME", help="firmware config (default: the profile's)")
    group.add_argument("--fleet", metavar="FILE", help="group file of boards ([[board]] tables, see edgetqs.remote.fleet)")
    group.add_argument("--connect-timeout", type=float, default=10.0, metavar="S", help="seconds (default 10)")
    group.add_argument("--retries", type=int, default=3, help="reconnect attempts on network faults (default 3)")
    add_json_flag(parser)


def boards_from_args(args: argparse.Namespace) -> list[BoardConnection]:
    common = dict(key=args.key, known_hosts=args.known_hosts, root=args.root, jump=args.jump, firmware=args.firmware)
    boards = load_group(args.fleet) if args.fleet else []
    if len(args.target) > 1 and args.host:
        raise EdgeTQSError("--host names one board but several --target were given",
                           "use a fleet file (--fleet FILE) to give each board its own address")
    boards += [resolve_board(target=target, host=args.host, **common) for target in args.target]
    if not args.target and args.host:
        boards.append(resolve_board(host=args.host, **common))
    if not boards:
        raise EdgeTQSError("no board given", f"name one: {BOARD_EXAMPLE}, several: --target a --target b, "
                                             "or a group: --fleet FILE")
    return [replace(b, connect_timeout=args.connect_timeout, retries=args.retries) for b in boards]


def finish(args, outcomes, title: str) -> int:
    if len(outcomes) == 1 and outcomes[0].error and not args.json:
        raise outcomes[0].error  # one board: the plain error message reads better than a table
    if args.json:
        print_json([outcome.to_json() for outcome in outcomes])
    else:
        console.print(summary_table(outcomes, title))
    failed = [outcome.board for outcome in outcomes if not outcome.ok]
    if failed and not args.json:
        console.print(line(styled(f"{len(failed)} of {len(outcomes)} board(s) failed:", "bold red"), f" {', '.join(failed)}"))
    return 1 if failed else 0


# -- provision ----------------------------------------------------------------

def cmd_provision(args) -> int:
    from edgetqs.remote.provision import provision

    def action(t):
        if t.board.firmware is None:
            raise EdgeTQSError(f"{t.board.name} has no firmware config to check against",
                               "give --firmware NAME (see firmware_configs/) or use --target")
        return provision(t, t.board.firmware, install=args.install, min_free=args.min_free_mib * 2**20,
                         apply_settings=args.apply_settings,
                         on_line=(lambda line: console.print(styled(f"  {t.board.name}: {line}", "dim"))) if args.verbose else None)

    outcomes = run_fleet(boards_from_args(args), action, lambda report: (report.ok, report.summary()))
    if not args.json:
        for outcome in outcomes:
            if outcome.result is not None:
                console.print(checks_table(outcome.result))
                if outcome.result.settings:
                    console.print(settings_table(outcome.result))
    return finish(args, outcomes, "provision")


def checks_table(report):
    from rich.table import Table

    table = Table(title=f"{report.board} against firmware {report.firmware}")
    for column in ("check", "wanted", "found", "", "fix"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        table.add_row(check.name, check.wanted, check.found, styled("ok", "green") if check.ok else styled("NO", "bold red"),
                      "" if check.ok else check.fix)
    return table


def settings_table(report):
    from rich.table import Table

    table = Table(title=f"{report.board}: firmware {report.firmware} [settings]")
    for column in ("setting", "wanted", "before", "after", ""):
        table.add_column(column, overflow="fold")
    for change in report.settings:
        table.add_row(change.name, change.wanted, change.before, change.after,
                      styled("changed", "yellow") if change.changed else styled("already set", "green"))
    return table


# -- flash / rollback ---------------------------------------------------------

def cmd_flash(args) -> int:
    from edgetqs.api import flash

    boards = boards_from_args(args)
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, disable=args.json, transient=True) as progress:
        tasks = {board.name: progress.add_task(board.name, total=None) for board in boards}
        outcomes = flash(args.bundle, boards, keep=args.keep,
                         on_progress=lambda name, sent, total: progress.update(tasks[name], completed=sent, total=total),
                         on_stage=lambda name, stage: progress.update(tasks[name], description=f"{name}: {stage}"))
    return finish(args, outcomes, f"flash {args.bundle}")


def cmd_rollback(args) -> int:
    from edgetqs.remote.flash import read_state, rollback

    if args.list:
        def listing(state):
            kept = ", ".join(f"{slot} (current)" if slot == state.current else slot for slot in state.slots)
            return True, f"kept: {kept or '(none)'}"

        outcomes = run_fleet(boards_from_args(args), read_state, listing)
        return finish(args, outcomes, "model versions on the board (oldest first)")

    def describe(switch):
        before, after = switch
        return True, f"current: {before} -> {after}"

    outcomes = run_fleet(boards_from_args(args), lambda t: rollback(t, to=args.to), describe)
    return finish(args, outcomes, "rollback")


# -- validate -----------------------------------------------------------------

def cmd_validate(args) -> int:
    from edgetqs.api import validate

    outcomes = validate(args.bundle, boards_from_args(args), args.out, contexts=args.contexts, horizon=args.horizon,
                        threads=args.threads, python=args.python, timeout=args.timeout)
    if not args.json:
        for outcome in outcomes:
            if outcome.result is not None:
                console.print(outcome.result.message(), highlight=False)
    return finish(args, outcomes, "validate")


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "provision", "check a board against its firmware config (--install sets up the runtime)",
        ["edgetqs provision --target rpi4", f"edgetqs provision {BOARD_EXAMPLE} --install",
         "edgetqs provision --target jetson-orin-nano --apply-settings",
         "edgetqs provision --fleet lab.toml --json"], cmd_provision)
    add_board_options(parser)
    parser.add_argument("--install", action="store_true", help="create the venv and pip-install what is missing")
    parser.add_argument("--apply-settings", action="store_true",
                        help="apply the firmware's [settings] (CPU governor, nvpmodel mode, jetson_clocks): "
                             "only what differs; needs root or a NOPASSWD sudo rule on the board")
    parser.add_argument("--min-free-mib", type=int, default=200, help="free disk the board must have (default 200)")
    parser.add_argument("--verbose", action="store_true", help="show the board's output (pip) as it runs")

    parser = add_command(
        subparsers, "flash", "upload a bundle, verify it on the board, and switch to it atomically",
        ["edgetqs flash out/bundle --target rpi4", "edgetqs flash out/bundle.tar.gz --target rpi4 --target rpi5 --keep 2",
         "edgetqs flash out/bundle --host pi@10.0.0.7 --key ~/.ssh/id_ed25519 --firmware rpios-bookworm-arm64"],
        cmd_flash)
    parser.add_argument("bundle", metavar="BUNDLE", help="bundle directory or .tar.gz from `edgetqs convert`")
    add_board_options(parser)
    parser.add_argument("--keep", type=int, default=3, help="model versions kept on the board (default 3)")

    parser = add_command(
        subparsers, "rollback", "point the board's current model back at the previous version",
        ["edgetqs rollback --target rpi4", "edgetqs rollback --target rpi4 --list",
         "edgetqs rollback --target rpi4 --to 0003-1a2b3c4d5e6f"], cmd_rollback)
    add_board_options(parser)
    parser.add_argument("--to", metavar="SLOT", help="a specific kept version (default: the one before current)")
    parser.add_argument("--list", action="store_true", help="only list the kept versions and which is current")

    parser = add_command(
        subparsers, "validate", "run the flashed model's rollouts on the board and judge them on the host",
        ["edgetqs validate out/bundle --target rpi4", "edgetqs validate --target rpi4 --target rpi5 --out runs/"],
        cmd_validate)
    parser.add_argument("bundle", metavar="BUNDLE", nargs="?",
                        help="the host's copy of the flashed bundle (default: fetch the board's current one)")
    add_board_options(parser)
    parser.add_argument("--out", default="validation", help="directory for results and report.html, one per board")
    parser.add_argument("--contexts", type=int, help="rollouts to run (default: all in the bundle)")
    parser.add_argument("--horizon", type=int, help="steps per rollout (default: the bundle's)")
    parser.add_argument("--threads", type=int, help="interpreter threads on the board")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the run may take on the board")
    parser.add_argument("--python", help="the board's interpreter (default: the one provision found the runtime in)")
