"""The `edgetqs` command. Each stage lives in its own module under edgetqs.cli
and exposes ``register(subparsers)``, which adds its subcommand and sets
``func`` to a callable taking the parsed args and returning an exit code."""

from __future__ import annotations

import argparse
import importlib
import sys


from edgetqs import __version__
from edgetqs.cli.common import ExampleFormatter, err_console, line, styled
from edgetqs.errors import EdgeTQSError

# Order is the pipeline's order; it is also the order of `edgetqs --help`.
STAGE_MODULES = [
    "zoo",
    "inspect",
    "score",
    "plan",
    "conformance",  # the capability matrix the planner filters formats with
    "convert",
    "evaluate",  # every method's plans, exported and rolled out, compared at matched bytes
    "ranges",  # probabilistic activation ranges (static int8 activations)
    "remote",  # provision, flash, rollback, validate
    "demo",
]



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetqs",
        description="Score, plan, convert, flash and validate quantized forecasters for edge boards.",
        formatter_class=ExampleFormatter,
        epilog="example:\n  edgetqs zoo\n  edgetqs inspect zoo:mlp-lorenz96",
    )
    parser.add_argument("--version", action="version", version=f"edgetqs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for expected errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGE_MODULES:
        module = importlib.import_module(f"edgetqs.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except EdgeTQSError as exc:
        if args.debug:
            raise
        err_console.print(line(styled("error:", "bold red"), " ", exc.problem), highlight=False)
        if exc.fix:
            err_console.print(line("  ", styled("fix:", "bold"), " ", exc.fix), highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
