"""`edgetqs demo`: not built yet (issue #2)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def run(args):
    raise NotBuiltYet("demo", 2)


def register(subparsers):
    parser = add_command(subparsers, "demo", "(not built yet, issue #2)", ["edgetqs demo"], run)
    parser.add_argument("rest", nargs="*")
