"""Shared pieces of the stage commands: subcommand creation with examples,
JSON output, and the model argument (a path or ``zoo:NAME``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from rich.console import Console
from rich.text import Text

# Markup off: messages carry shapes like [batch, window, features], paths and
# user-given names, which rich would otherwise read (and drop) as style tags.
# Styling is explicit, through styled().
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


class ExampleFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in each command's epilog laid out as written."""


def styled(text: str, style: str) -> Text:
    """``text`` printed in ``style``, never parsed as markup."""
    return Text(str(text), style=style)


def line(*parts: str | Text) -> Text:
    """One line from plain strings and styled() pieces (strings are taken literally)."""
    return Text.assemble(*(part if isinstance(part, Text) else str(part) for part in parts))


class ExampleFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in each command's epilog laid out as written."""


def add_command(
    subparsers,
    name: str,
    help: str,
    examples: list[str],
    func: Callable[[argparse.Namespace], int | None],
) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with runnable examples."""
    epilog = "example:\n" + "\n".join(f"  {line}" for line in examples)
    parser = subparsers.add_parser(
        name, help=help, description=help, epilog=epilog, formatter_class=ExampleFormatter
    )
    parser.set_defaults(func=func)
    return parser


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras, SavedModel directory, .pt2 (torch.export), .onnx or float .tflite path, or zoo:NAME",
    )
