"""`edgetqs plan`: not built yet (issue #4)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def run(args):
    raise NotBuiltYet("plan", 4)


def register(subparsers):
    parser = add_command(subparsers, "plan", "(not built yet, issue #4)", ["edgetqs plan MODEL --scores scores.json --target rpi4"], run)
    parser.add_argument("rest", nargs="*")
