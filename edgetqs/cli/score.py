"""`edgetqs score`: not built yet (issue #3)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def run(args):
    raise NotBuiltYet("score", 3)


def register(subparsers):
    parser = add_command(subparsers, "score", "(not built yet, issue #3)", ["edgetqs score MODEL -o scores.json"], run)
    parser.add_argument("rest", nargs="*")
