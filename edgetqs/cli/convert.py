"""`edgetqs convert`: not built yet (issue #5)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def run(args):
    raise NotBuiltYet("convert", 5)


def register(subparsers):
    parser = add_command(subparsers, "convert", "(not built yet, issue #5)", ["edgetqs convert MODEL --plan plan.json -o out/"], run)
    parser.add_argument("rest", nargs="*")
