"""`edgetqs zoo`: not built yet (issue #2)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def run(args):
    raise NotBuiltYet("zoo", 2)


def register(subparsers):
    parser = add_command(subparsers, "zoo", "(not built yet, issue #2)", ["edgetqs zoo"], run)
    parser.add_argument("rest", nargs="*")
