"""Pieces of the self-contained HTML reports (validation, evaluation).

Both reports are single files that can be mailed or archived: tables are
escaped text, plots are PNGs inlined as base64. The helpers live here so the
two reports format cells and embed images the same way.
"""

from __future__ import annotations

import base64
import html
import io
import json


def cell_text(value, missing: str = "-") -> str:
    """A table cell's text: floats to 4 significant digits, containers as JSON."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value) if value else missing
    return str(value)


def table(rows, header=None, missing: str = "-") -> str:
    """An HTML table of escaped cells; `header` is optional."""
    head = ""
    if header:
        head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell_text(cell, missing))}</td>" for cell in row) + "</tr>"
        for row in rows)
    return f"<table>{head}{body}</table>"


def png_base64(figure) -> str:
    """A matplotlib figure as base64 PNG text; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image(png: bytes | str, alt: str) -> str:
    """An <img> with the PNG inlined; `png` is raw bytes or base64 text."""
    b64 = base64.b64encode(png).decode("ascii") if isinstance(png, bytes) else png
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
