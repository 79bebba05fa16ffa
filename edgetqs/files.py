"""Writing result files so that no reader ever sees half of one.

Every JSON, CSV, PNG, HTML and model file edgetqs writes goes to a temporary
name beside its destination and is renamed over it (rename(2) is atomic), so
an interrupted run leaves the old file or the new one, never a torn one.
Whole directories (bundles, cached models) are staged the same way by their
own modules.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, data: bytes | str, verify: Callable[[Path], object] | None = None) -> Path:
    """Write ``data`` to ``path`` via a temporary name; ``verify(tmp)`` may reject it first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid + thread: fleets write per-board files from threads at once
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return write_atomically(path, buffer.getvalue())
