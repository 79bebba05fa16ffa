"""`edgetqs demo`: the whole pipeline end to end on a built-in example.

It runs the same commands a user would type — zoo model, inspect, score, plan,
convert, then provision, flash and validate on a *local board*: a throwaway
OpenSSH server on 127.0.0.1 with its own host key, client key and known_hosts
(host-key checking stays on; the demo trusts the one key it generated). The
board's runtime is this project's own virtual environment.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.rule import Rule

from edgetqs.cli.app import main  # app loads the stage modules by name when it builds its parser: no cycle
from edgetqs.cli.common import add_command, console, styled
from edgetqs.errors import EdgeTQSError

DEFAULT_MODEL = "zoo:mlp-lorenz96"


def _step(title: str, argv: list[str]) -> None:
    """Run one `edgetqs` command as the user would, and stop the demo if it fails."""
    console.print(Rule(styled(title, "bold")))
    console.print(f"$ edgetqs {' '.join(argv)}", style="cyan", highlight=False)
    code = main(argv)
    if code != 0:
        raise EdgeTQSError(f"demo step '{title}' failed (exit {code})", "read the step's message above")


def _demo_budget(model: str, scores: Path, fraction: float) -> int:
    """A memory budget part-way between the smallest plan and the float model,
    so the plan has to mix formats rather than keep or drop everything."""
    from edgetqs.zoo.resolve import load_model
    from edgetqs.planner.plan import build_problem
    from edgetqs.runtimes import DEFAULT_HOST_RUNTIME
    from edgetqs.tqs.scorefile import file_sha256, load_scores

    graph = load_model(model).graph
    problem = build_problem(graph, load_scores(scores), file_sha256(scores), DEFAULT_HOST_RUNTIME.spec)
    low, high = problem.smallest_memory(), problem.largest_memory()
    return int(low + fraction * (high - low))


def _board_firmware(workdir: Path) -> Path:
    """The local board's firmware config (local_board.local_firmware) as a file
    for --firmware, its venv being this one, whose LiteRT is the runtime."""
    from edgetqs.remote.local_board import local_firmware

    firmware = local_firmware(install_dir=str(Path(sys.prefix)))
    path = workdir / "local-board-firmware.toml"
    fields = {"name": firmware.name, "python": firmware.setup.python, "runtime": firmware.runtime.package,
              "runtime_version": firmware.runtime.version, "install_dir": firmware.setup.install_dir}
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in fields.items()))
    return path


def _remote_steps(bundle: Path, out: Path, horizon: int) -> None:
    from edgetqs.remote.local_board import LocalBoard, make_keys

    # The board (its keys, sshd config and root) is throwaway: removed when the demo ends.
    with tempfile.TemporaryDirectory(prefix="edgetqs-demo-board-") as tmp:
        workdir = Path(tmp)
        keys = make_keys(workdir / "keys")
        with LocalBoard(workdir, keys) as board:
            args = ["--host", f"{board.user}@{board.host}:{board.port}", "--key", str(keys.client_key),
                    "--known-hosts", str(board.known_hosts), "--root", str(board.root),
                    "--firmware", str(_board_firmware(workdir))]
            console.print(f"local board: sshd on {board.host}:{board.port}, root {board.root}")
            _step("provision the board", ["provision", *args, "--min-free-mib", "50"])
            _step("flash the bundle", ["flash", str(bundle), *args])
            _step("validate rollouts on the board", ["validate", str(bundle), *args, "--out", str(out / "validation"),
                                                     "--horizon", str(horizon)])


def run(args) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model, scores, plan, bundle = args.model, out / "scores.json", out / "plan.json", out / "bundle"
    _step("build the example model", ["zoo", "build", model.removeprefix("zoo:")])
    _step("inspect", ["inspect", model])
    _step("score (TQS, both probes)", ["score", model, "--probe", "both", "--horizon", str(args.horizon),
                                        "--windows", str(args.windows), "-o", str(scores)])
    budget = _demo_budget(model, scores, args.budget_fraction)
    _step("plan against a memory budget", ["plan", model, "--scores", str(scores), "--budget", str(budget),
                                           "--front", "-o", str(plan)])
    _step("convert and verify", ["convert", model, "--plan", str(plan), "-o", str(bundle), "--force",
                                 "--horizon", str(args.horizon)])
    if args.no_board:
        console.print("skipping the board steps (--no-board)")
    else:
        _remote_steps(bundle, out, args.horizon)
    console.print(Rule(styled("demo complete", "bold green")))
    console.print(f"everything is in {out}: scores (.json/.csv/.png), plan + Pareto front, bundle, "
                  f"validation report (validation/*/report.html)")
    return 0


def register(subparsers):
    parser = add_command(
        subparsers, "demo", "run the whole pipeline on a built-in example, ending on a local SSH board",
        ["edgetqs demo", "edgetqs demo --model zoo:gru-lorenz96 --out demo-gru"], run,
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo model (default {DEFAULT_MODEL})")
    parser.add_argument("--out", default="demo-out", help="directory for everything the demo makes")
    parser.add_argument("--horizon", type=int, default=24, help="rollout length in model calls")
    parser.add_argument("--windows", type=int, default=16, help="context windows for scoring")
    parser.add_argument("--budget-fraction", type=float, default=0.3,
                        help="budget between the smallest plan (0) and the float model (1)")
    parser.add_argument("--no-board", action="store_true", help="stop after convert (no SSH board)")
