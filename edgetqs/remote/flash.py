"""Put a bundle on a board so that ``current`` only ever names a verified model.

The steps, each safe to die in::

    1. check free space (df) before sending anything
    2. upload into models/.incoming-<id>/ (files already there with the right
       sha256 are kept, so a rerun after a dropped connection resumes)
    3. sha256 every file on the board against the host's hashes
    4. rename the directory into its slot models/<seq>-<id> (atomic rename)
    5. point current at it: ln -s to a temp name, then mv -T over current
       (rename(2) is atomic, so a reader sees the old or the new slot, never none)
    6. prune old slots, keeping the newest ``keep`` and always the current one

``<id>`` is the first 12 hex digits of the sha256 of the bundle's manifest,
which covers every file's hash, so the same bundle always gets the same id.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgetqs.bundle import Bundle, load_bundle, sha256_file
from edgetqs.errors import EdgeTQSError
from edgetqs.remote.transport import DiskFull, RemoteError, Transport

MODELS = "models"
CURRENT = "current"
INCOMING_PREFIX = ".incoming-"
SLOT_PATTERN = re.compile(r"^(\d{4,})-([0-9a-f]{12})$")
RUNNER_FILE = "runner.py"
# Room kept free beyond the bundle itself, so flashing never fills the card.
SPACE_MARGIN_BYTES = 256 * 1024
DEFAULT_KEEP = 3

q = shlex.quote


class ChecksumMismatch(RemoteError):
    pass


@dataclass
class FlashHooks:
    """Test seams between the steps (a real fault injected at a precise moment)."""

    after_upload: Callable[[Transport, str], None] | None = None  # (transport, incoming dir)
    before_switch: Callable[[Transport, str], None] | None = None  # (transport, new slot)


@dataclass
class SlotState:
    """What is on the board: the slots (oldest first) and which one is current."""

    current: str | None
    slots: list[str]
    incoming: list[str] = field(default_factory=list)


@dataclass
class FlashResult:
    board: str
    slot: str
    previous: str | None
    uploaded_files: list[str]
    kept_files: list[str]  # already on the board from an interrupted run
    uploaded_bytes: int
    pruned: list[str]
    already_current: bool = False

    def to_json(self) -> dict:
        return {**asdict(self), "summary": self.summary()}

    def summary(self) -> str:
        if self.already_current:
            return f"{self.slot} is already current and verified; nothing to do"
        resumed = f", {len(self.kept_files)} resumed" if self.kept_files else ""
        return f"current -> {self.slot} ({len(self.uploaded_files)} files sent{resumed})"


def runner_path() -> Path:
    """The on-device runner, uploaded into every slot."""
    return Path(__file__).with_name(RUNNER_FILE)


@dataclass
class SlotFiles:
    """What goes into a slot: name -> local path and sha256, and the bundle id.
    Holds the loaded bundle, whose unpacked archive lives as long as it does."""

    bundle: Bundle
    bundle_id: str
    paths: dict[str, Path]
    hashes: dict[str, str]

    @property
    def total_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.paths.values())


def slot_files(bundle_path: str | Path, staging: Path) -> SlotFiles:
    """The bundle's files (hash-checked) plus a snapshot of the runner taken
    into ``staging``, so what is hashed here is exactly what gets uploaded."""
    bundle = load_bundle(bundle_path)  # checks every file against its manifest hash
    paths = {path.name: path for path in bundle.files()}
    paths[RUNNER_FILE] = Path(shutil.copy(runner_path(), staging / RUNNER_FILE))
    hashes = {name: sha256_file(path) for name, path in paths.items()}
    bundle_id = hashlib.sha256(paths["manifest.json"].read_bytes()).hexdigest()[:12]
    return SlotFiles(bundle, bundle_id, paths, hashes)


# -- board state ------------------------------------------------------------

@dataclass
class Survey(SlotState):
    """SlotState plus free space and the hashes of one bundle's files wherever
    they already lie on the board (its slots and its upload directory)."""

    free_bytes: int = 0
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # directory -> file -> sha256


def _hash_function(names: list[str]) -> str:
    """Shell function ``h``: ``sha256  name`` for the named files in the working
    directory; sha256sum where coreutils has it, Python's hashlib elsewhere."""
    listed = " ".join(q(n) for n in names)
    python_fallback = (
        "python3 -c 'import hashlib,sys\n"
        "for n in sys.stdin.read().split(): print(hashlib.sha256(open(n,\"rb\").read()).hexdigest()+\"  \"+n)'"
    )
    return (
        f'h() {{ for f in {listed}; do [ -f "$f" ] && echo "$f"; done | '
        f"if command -v sha256sum >/dev/null; then xargs -r sha256sum --; else {python_fallback}; fi; }}; "
    )


def _parse_hashes(lines: list[str]) -> dict[str, str]:
    pairs = (line.partition("  ") for line in lines)
    return {name.strip(): digest.strip() for digest, _, name in pairs if name}


def survey(t: Transport, bundle_id: str = "", names: list[str] = ()) -> Survey:
    """Everything flash decides on, in one round trip (each costs a login shell)."""
    root = q(t.board.root)
    script = (
        f"mkdir -p {root}/{MODELS} && cd {root} || exit 1; "
        f'echo "current=$(readlink {CURRENT} 2>/dev/null)"; '
        f"echo \"free_kb=$(df -Pk {MODELS} | tail -n 1 | awk '{{print $4}}')\"; "
        f"echo '--slots'; ls -1A {MODELS}; "
    )
    if bundle_id:
        script += _hash_function(list(names)) + (
            f"for d in {MODELS}/[0-9]*-{bundle_id} {MODELS}/{INCOMING_PREFIX}{bundle_id}; do "
            '[ -d "$d" ] || continue; echo "--hashes ${d#*/}"; (cd "$d" && h); done'
        )
    return _parse_survey(t.check(script, timeout=300, what="surveying the model slots").stdout.splitlines())


def _parse_survey(lines: list[str]) -> Survey:
    link = lines[0].split("=", 1)[1].strip()
    free_kb = lines[1].split("=", 1)[1].strip()
    sections: dict[str, list[str]] = {}
    for line in lines[2:]:
        if line.startswith("--"):
            section = sections.setdefault(line[2:].strip(), [])
        elif line.strip():
            section.append(line.strip())
    names = sections.get("slots", [])
    return Survey(
        current=link.rsplit("/", 1)[-1] if link else None,
        slots=sorted((n for n in names if SLOT_PATTERN.match(n)), key=lambda n: int(n.split("-")[0])),
        incoming=[n for n in names if n.startswith(INCOMING_PREFIX)],
        free_bytes=int(free_kb) * 1024 if free_kb.isdigit() else 0,
        hashes={k.split(" ", 1)[1]: _parse_hashes(v) for k, v in sections.items() if k.startswith("hashes ")},
    )


def read_state(t: Transport) -> SlotState:
    return survey(t)


def remote_hashes(t: Transport, directory: str, names: list[str]) -> dict[str, str]:
    """sha256 of the named files that exist in ``directory`` on the board."""
    script = _hash_function(names) + f"cd {q(directory)} 2>/dev/null && h || true"
    return _parse_hashes(t.check(script, timeout=300, what=f"hashing files in {directory}").stdout.splitlines())


# -- flash ------------------------------------------------------------------

def flash(
    t: Transport,
    bundle: str | Path | SlotFiles,
    keep: int = DEFAULT_KEEP,
    on_progress: Callable[[int, int], None] | None = None,
    hooks: FlashHooks | None = None,
) -> FlashResult:
    """Flash one bundle onto the board behind ``t``; see the module doc for the steps.
    ``bundle`` is a bundle path, or its ``slot_files`` already loaded and hashed
    (a fleet shares one, so the bundle is hashed once, not once per board)."""
    if keep < 1:
        raise EdgeTQSError(f"--keep {keep} would delete the model being flashed", "keep at least 1 version")
    if isinstance(bundle, SlotFiles):
        return _flash(t, bundle, keep, on_progress, hooks or FlashHooks())
    with tempfile.TemporaryDirectory(prefix="edgetqs-flash-") as staging:
        return _flash(t, slot_files(bundle, Path(staging)), keep, on_progress, hooks or FlashHooks())


def _flash(t: Transport, content: SlotFiles, keep: int, on_progress, hooks: FlashHooks) -> FlashResult:
    bundle_id, files, hashes = content.bundle_id, content.paths, content.hashes
    state = survey(t, bundle_id, list(files))
    if state.current and state.current.endswith(bundle_id) and state.hashes.get(state.current) == hashes:
        return FlashResult(t.board.name, state.current, state.current, [], [], 0, [], already_current=True)

    newest = state.slots[-1] if state.slots else None
    if newest and newest.endswith(bundle_id) and state.hashes.get(newest) == hashes:
        # A run died between moving the upload into its slot and switching: just switch.
        pruned = switch_current(t, newest, prune=_doomed(state, newest, keep))
        return FlashResult(t.board.name, newest, state.current, [], list(files), 0, pruned)

    incoming = f"{t.board.root}/{MODELS}/{INCOMING_PREFIX}{bundle_id}"
    present = state.hashes.get(f"{INCOMING_PREFIX}{bundle_id}", {})
    to_send = [name for name in files if present.get(name) != hashes[name]]
    _check_space(t, state.free_bytes, sum(files[name].stat().st_size for name in to_send))
    sent_bytes = _upload(t, incoming, {name: files[name] for name in to_send}, on_progress)
    if hooks.after_upload:
        hooks.after_upload(t, incoming)
    _verify(t, incoming, hashes)

    slot = f"{_next_seq(state):04d}-{bundle_id}"
    t.check(f"mv -T {q(incoming)} {q(t.board.root)}/{MODELS}/{slot} && sync", what="moving the upload into its slot")
    if hooks.before_switch:
        hooks.before_switch(t, slot)
    pruned = switch_current(t, slot, prune=_doomed(state, slot, keep))
    kept = [name for name in files if name not in to_send]
    return FlashResult(t.board.name, slot, state.current, to_send, kept, sent_bytes, pruned)


def _doomed(state: SlotState, new_current: str, keep: int) -> list[str]:
    """Slots past the newest ``keep`` (never the new current) and stale uploads."""
    slots = state.slots + ([new_current] if new_current not in state.slots else [])
    return [s for s in slots[:-keep] if s != new_current] + state.incoming


def _check_space(t: Transport, free: int, needed: int) -> None:
    if needed + SPACE_MARGIN_BYTES > free:
        raise DiskFull(
            f"{t.board.name} has {_mib(free)} free under {t.board.root}, the bundle needs "
            f"{_mib(needed)} (+ {_mib(SPACE_MARGIN_BYTES)} margin)",
            "free space on the board (fewer kept versions: --keep 1, or delete files), or use a bigger card",
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _upload(t: Transport, incoming: str, files: dict[str, Path], on_progress) -> int:
    t.makedirs(incoming)
    total = sum(path.stat().st_size for path in files.values())
    done = 0
    for name, path in files.items():
        def progress(sent, _size, base=done):
            if on_progress:
                on_progress(base + sent, total)

        t.put(path, f"{incoming}/{name}", on_progress=progress)
        done += path.stat().st_size
    return total


def _verify(t: Transport, incoming: str, hashes: dict[str, str]) -> None:
    on_board = remote_hashes(t, incoming, list(hashes))
    bad = [name for name, digest in hashes.items() if on_board.get(name) != digest]
    if not bad:
        return
    # Drop the damaged files so a rerun sends them again.
    t.check(f"cd {q(incoming)} && rm -f -- {' '.join(q(n) for n in bad)}", what="removing damaged files")
    details = ", ".join(
        f"{name} (sha256 on board {on_board.get(name, 'missing')[:12]}…, expected {hashes[name][:12]}…)" for name in bad
    )
    raise ChecksumMismatch(
        f"the upload to {t.board.name} arrived damaged: {details}; current was not touched",
        "rerun the flash (damaged files are sent again); if it repeats, check the board's storage (SD card)",
    )


def _next_seq(state: SlotState) -> int:
    return max((int(s.split("-")[0]) for s in state.slots), default=0) + 1


def switch_current(t: Transport, slot: str, prune: list[str] = ()) -> list[str]:
    """Point current at models/<slot> atomically (a new link renamed over the
    old one), then delete the ``prune`` slots; returns what was deleted."""
    removal = f" && rm -rf -- {' '.join(q(f'{MODELS}/{name}') for name in prune)}" if prune else ""
    t.check(
        f"cd {q(t.board.root)} && test -d {MODELS}/{slot} && ln -sfn {MODELS}/{slot} .current.new "
        f"&& mv -T .current.new {CURRENT} && sync{removal}",
        what=f"switching current to {slot}",
    )
    return list(prune)


# -- rollback ---------------------------------------------------------------

def rollback(t: Transport, to: str | None = None) -> tuple[str | None, str]:
    """Point current at the slot before it (or at ``to``); returns (from, to)."""
    state = read_state(t)
    if to is None:
        if state.current not in state.slots:
            raise EdgeTQSError(
                f"{t.board.name} has no current model to roll back from", "flash a bundle first (edgetqs flash BUNDLE)"
            )
        index = state.slots.index(state.current)
        if index == 0:
            raise EdgeTQSError(
                f"{state.current} is the oldest version kept on {t.board.name}; there is nothing to roll back to",
                "flash the version you want instead (edgetqs flash BUNDLE)",
            )
        to = state.slots[index - 1]
    elif to not in state.slots:
        raise EdgeTQSError(
            f"{t.board.name} has no version {to!r}", f"choose one of: {', '.join(state.slots) or '(none)'}"
        )
    switch_current(t, to)
    return state.current, to
