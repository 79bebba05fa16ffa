"""`edgetqs inspect`: not built yet (issue #2)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def run(args):
    raise NotBuiltYet("inspect", 2)


def register(subparsers):
    parser = add_command(subparsers, "inspect", "(not built yet, issue #2)", ["edgetqs inspect zoo:mlp-lorenz96"], run)
    parser.add_argument("rest", nargs="*")
