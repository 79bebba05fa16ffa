"""`edgetqs provision|flash|rollback|validate`: not built yet (issue #6)."""

from edgetqs.cli.common import add_command
from edgetqs.errors import NotBuiltYet


def register(subparsers):
    for name in ("provision", "flash", "rollback", "validate"):
        parser = add_command(
            subparsers, name, "(not built yet, issue #6)", [f"edgetqs {name} --target rpi4"],
            lambda args, name=name: (_ for _ in ()).throw(NotBuiltYet(name, 6)),
        )
        parser.add_argument("rest", nargs="*")
