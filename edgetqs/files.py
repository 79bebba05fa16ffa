"""Writing result files so that no reader ever sees half of one.

Every JSON, CSV, PNG, HTML and model file edgetqs writes goes to a temporary
name beside its destination and is renamed over it (rename(2) is atomic), so
an interrupted run leaves the old file or the new one, never a torn one.
Whole directories (bundles, cached models) are staged beside their target
and renamed into place by :func:`staged_directory`. Versioned JSON files
(scores, plans, bundles, ranges, runner results, cards) go through
:func:`write_json` / :func:`read_json` with a :class:`JsonKind`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from edgetqs.errors import EdgeTQSError


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


def companion_path(out: str | Path, suffix: str, tag: str = "") -> Path:
    """The file written beside ``out``: ``out`` up to its extension, then ``.tag`` and ``suffix``.

    Every command names its extra outputs this way, so they sort together with
    the main file; a tag the name already ends with is not doubled
    (``X.scores.json`` -> ``X.scores.csv``, ``X.scores.png``, ``X.scores.curves.png``).
    """
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    if tag and not stem.endswith(f".{tag}"):
        stem = f"{stem}.{tag}"
    return out.with_name(stem + suffix)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return write_atomically(path, buffer.getvalue())


# -- versioned JSON -------------------------------------------------------------
# Every edgetqs JSON file starts with {"format": NAME, "version": N, ...}; readers
# check both before they look at anything else, and say which file, what was
# expected and how to get a good one.

Upgrade = Callable[[dict], dict]


@dataclass(frozen=True)
class JsonKind:
    """One kind of versioned JSON file.

    ``format`` is the value of its "format" field (None for files that carry
    only a version, like the model card); ``what`` names it in messages ("score
    file"); ``fix`` says how to get a good one. ``upgrades[v]`` turns a version
    ``v`` document into version ``v + 1``, so old files stay readable.
    """

    format: str | None
    version: int
    what: str
    fix: str
    upgrades: Mapping[int, Upgrade] = field(default_factory=dict)

    def stamp(self, body: Mapping) -> dict:
        """``body`` with format and version in front (the on-disk header)."""
        header = {"format": self.format} if self.format is not None else {}
        rest = {k: v for k, v in body.items() if k not in ("format", "version")}
        return {**header, "version": self.version, **rest}

    def check(self, document: object, where: str | Path) -> dict:
        """Check format and version of a parsed document, upgrading old versions."""
        if not isinstance(document, dict) or (self.format is not None and document.get("format") != self.format):
            found = document.get("format") if isinstance(document, dict) else type(document).__name__
            expected = f", expected {self.format!r}" if self.format else ""
            raise EdgeTQSError(f"{where} is not an edgetqs {self.what} (format {found!r}{expected})", self.fix)
        version = document.get("version")
        readable = sorted(set(self.upgrades) | {self.version})
        while version != self.version:
            if version not in self.upgrades:
                raise EdgeTQSError(f"{self.what} {where} has version {version}; this edgetqs reads version"
                                   f"{'s' if len(readable) > 1 else ''} {', '.join(map(str, readable))}", self.fix)
            document = self.upgrades[version](dict(document))
            version = document["version"] = version + 1
        return document


def write_json(path: str | Path, kind: JsonKind, body: Mapping, *, indent: int = 1, default=None,
               allow_nan: bool = True, verify: Callable[[Path], object] | None = None) -> Path:
    """Write ``body`` as a ``kind`` file (format and version first), atomically."""
    return write_atomically(path, json_text(kind, body, indent=indent, default=default, allow_nan=allow_nan),
                            verify=verify)


def json_text(kind: JsonKind, body: Mapping, *, indent: int = 1, default=None, allow_nan: bool = True) -> str:
    """The text ``write_json`` writes (e.g. to hash a document without writing it)."""
    return json.dumps(kind.stamp(body), indent=indent, default=default, allow_nan=allow_nan)


def read_json(path: str | Path, kind: JsonKind, where: str | Path | None = None) -> dict:
    """Read a ``kind`` file: parse, check format and version (upgrading old ones), return it.

    ``where`` names the file in messages when ``path`` is not what the user
    gave (a manifest inside an unpacked archive, say).
    """
    path = Path(path)
    where = path if where is None else where
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeTQSError(f"no {kind.what} at {where}", kind.fix) from None
    except OSError as exc:
        raise EdgeTQSError(f"cannot read {kind.what} {where}: {exc}", kind.fix) from exc
    except ValueError as exc:
        raise EdgeTQSError(f"{kind.what} {where} is not valid JSON: {exc}", kind.fix) from exc
    return kind.check(document, where)


# -- staged directories -----------------------------------------------------------

@contextmanager
def staged_directory(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``target``; rename it into place on success.

    The body fills (and verifies) the yielded directory; when it returns, the
    directory becomes ``target`` in one rename. If the body raises, the staging
    directory is removed and ``target`` is untouched. With ``replace`` an
    existing ``target`` is swapped out only at the very end; without it, a
    ``target`` that appeared meanwhile (another process won the race) is kept
    and the staged copy dropped.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the directory keeps the usual (umask) permissions once renamed
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.staging")
    staging.mkdir()
    try:
        yield staging
        move_into_place(staging, target, replace=replace)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staged: Path, target: Path, *, replace: bool = False) -> None:
    """Rename a finished file or directory to ``target`` (swapping an old one out only with ``replace``)."""
    if not target.exists():
        try:
            os.replace(staged, target)
            return
        except OSError:
            if not target.exists():  # a real failure, not a lost race
                raise
    if not replace:
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    os.replace(target, old)
    os.replace(staged, target)
    remove_path(old)


def remove_path(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
