"""Put a bundle on a board so that ``current`` only ever names a verified model.

The steps, each safe to die in::

    1. check free space (df) before sending anything, counting what the old
       slots take: the ones this flash prunes anyway are pruned first when
       that is what makes room, the current one only after the switch
    2. upload into models/.incoming-<id>/, resuming: files already there with
       the right sha256 are kept, and a partial file whose bytes match the
       start of the host's file (sha256 of that prefix) is continued from its
       length, so a rerun after a dropped connection sends only the rest
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

from edgetqs.bundle import MANIFEST, Bundle, load_bundle, sha256_file
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
    uploaded_bytes: int  # bytes actually sent in this run (every attempt)
    pruned: list[str]
    already_current: bool = False
    resumed_from: dict[str, int] = field(default_factory=dict)  # file -> verified bytes already on the board
    pruned_before_upload: list[str] = field(default_factory=list)  # old slots removed first to make room

    def to_json(self) -> dict:
        return {**asdict(self), "summary": self.summary()}

    def summary(self) -> str:
        if self.already_current:
            return f"{self.slot} is already current and verified; nothing to do"
        resumed = f", {len(self.kept_files)} kept" if self.kept_files else ""
        if self.resumed_from:
            resumed += f", resumed at {_mib(sum(self.resumed_from.values()))}"
        return (f"current -> {self.slot} ({len(self.uploaded_files)} files, {_mib(self.uploaded_bytes)} "
                f"sent{resumed})")


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
    # load_bundle just checked the listed files against these: hashing hundreds of MB again buys nothing.
    hashes = {name: meta["sha256"] for name, meta in bundle.manifest["files"].items()}
    hashes.update({name: sha256_file(paths[name]) for name in (MANIFEST, RUNNER_FILE)})
    bundle_id = hashes[MANIFEST][:12]
    return SlotFiles(bundle, bundle_id, paths, hashes)


# -- board state ------------------------------------------------------------

@dataclass
class Survey(SlotState):
    """SlotState plus free space, what each entry under models/ takes, and the
    hashes and sizes of one bundle's files wherever they already lie on the
    board (its slots and its upload directory)."""

    free_bytes: int = 0
    usage: dict[str, int] = field(default_factory=dict)  # slot or upload directory -> bytes on disk
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # directory -> file -> sha256
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # directory -> file -> bytes


def _hash_function(names: list[str]) -> str:
    """Shell function ``h``: ``sha256  name`` for the named files in the working
    directory; sha256sum where coreutils has it, Python's hashlib elsewhere
    (1 MiB at a time: a model of hundreds of MB is never read into memory)."""
    listed = " ".join(q(n) for n in names)
    python_fallback = (
        "python3 -c 'import hashlib,sys\n"
        "for n in sys.stdin.read().split():\n"
        " d=hashlib.sha256(); f=open(n,\"rb\")\n"
        " for c in iter(lambda: f.read(1<<20), b\"\"): d.update(c)\n"
        " print(d.hexdigest()+\"  \"+n)'"
    )
    return (
        f'h() {{ for f in {listed}; do [ -f "$f" ] && echo "$f"; done | '
        f"if command -v sha256sum >/dev/null; then xargs -r sha256sum --; else {python_fallback}; fi; }}; "
        f'z() {{ for f in {listed}; do if [ -f "$f" ]; then echo "$(wc -c < "$f")  $f"; fi; done; }}; '
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
        f"echo '--usage'; ls -1A {MODELS} | while read -r n; do du -sk \"{MODELS}/$n\"; done; "
    )
    if bundle_id:
        script += _hash_function(list(names)) + (
            f"for d in {MODELS}/[0-9]*-{bundle_id} {MODELS}/{INCOMING_PREFIX}{bundle_id}; do "
            '[ -d "$d" ] || continue; echo "--hashes ${d#*/}"; (cd "$d" && h); '
            'echo "--sizes ${d#*/}"; (cd "$d" && z); done'
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
    usage = {path.rsplit("/", 1)[-1]: int(kb) * 1024 for kb, path in (u.split(None, 1) for u in sections.get("usage", []))}
    return Survey(
        current=link.rsplit("/", 1)[-1] if link else None,
        slots=sorted((n for n in names if SLOT_PATTERN.match(n)), key=lambda n: int(n.split("-")[0])),
        incoming=[n for n in names if n.startswith(INCOMING_PREFIX)],
        free_bytes=int(free_kb) * 1024 if free_kb.isdigit() else 0,
        usage=usage,
        hashes={k.split(" ", 1)[1]: _parse_hashes(v) for k, v in sections.items() if k.startswith("hashes ")},
        sizes={k.split(" ", 1)[1]: {name: int(size) for name, size in _parse_hashes(v).items()}
               for k, v in sections.items() if k.startswith("sizes ")},
    )


def read_state(t: Transport) -> SlotState:
    return survey(t)


def remote_hashes(t: Transport, directory: str, names: list[str]) -> dict[str, str]:
    """sha256 of the named files that exist in ``directory`` on the board."""
    script = _hash_function(names) + f"cd {q(directory)} 2>/dev/null && h || true"
    return _parse_hashes(t.check(script, timeout=300, what=f"hashing files in {directory}").stdout.splitlines())


def prefix_sha256(path: Path, length: int) -> str:
    """sha256 of the first ``length`` bytes of ``path``, read 1 MiB at a time."""
    digest, left = hashlib.sha256(), length
    with open(path, "rb") as handle:
        while left > 0:
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def resume_offset(local: Path, board_size: int | None, board_sha256: str | None) -> int:
    """Where an upload of ``local`` may continue: the length of the partial
    file on the board when its bytes are exactly the start of ``local``
    (sha256 of that prefix), else 0. A complete file is not "partial": if its
    hash were right it would have been kept, so it is damaged and resent."""
    if not board_size or not board_sha256 or board_size >= local.stat().st_size:
        return 0
    return board_size if prefix_sha256(local, board_size) == board_sha256 else 0


def board_resume_offset(t: Transport, local: Path, remote: str) -> int:
    """resume_offset for the file as it is on the board now (after a dropped link)."""
    try:
        size = t.sftp().stat(remote).st_size
    except FileNotFoundError:
        return 0
    directory, name = remote.rsplit("/", 1)
    return resume_offset(local, size, remote_hashes(t, directory, [name]).get(name))


# -- flash ------------------------------------------------------------------

def flash(
    t: Transport,
    bundle: str | Path | SlotFiles,
    keep: int = DEFAULT_KEEP,
    on_progress: Callable[[int, int], None] | None = None,
    hooks: FlashHooks | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> FlashResult:
    """Flash one bundle onto the board behind ``t``; see the module doc for the steps.
    ``bundle`` is a bundle path, or its ``slot_files`` already loaded and hashed
    (a fleet shares one, so the bundle is hashed once, not once per board).
    ``on_progress(sent, total)`` follows the upload (starting at what a resume
    keeps), ``on_stage(text)`` each step."""
    if keep < 1:
        raise EdgeTQSError(f"--keep {keep} would delete the model being flashed", "keep at least 1 version")
    steps = _Steps(on_progress or (lambda sent, total: None), on_stage or (lambda text: None), hooks or FlashHooks())
    if isinstance(bundle, SlotFiles):
        return _flash(t, bundle, keep, steps)
    with tempfile.TemporaryDirectory(prefix="edgetqs-flash-") as staging:
        return _flash(t, slot_files(bundle, Path(staging)), keep, steps)


@dataclass
class _Steps:
    progress: Callable[[int, int], None]
    stage: Callable[[str], None]
    hooks: FlashHooks


def _flash(t: Transport, content: SlotFiles, keep: int, steps: _Steps) -> FlashResult:
    bundle_id, files, hashes = content.bundle_id, content.paths, content.hashes
    steps.stage("surveying the board")
    state = survey(t, bundle_id, list(files))
    if state.current and state.current.endswith(bundle_id) and state.hashes.get(state.current) == hashes:
        return FlashResult(t.board.name, state.current, state.current, [], [], 0, [], already_current=True)

    newest = state.slots[-1] if state.slots else None
    if newest and newest.endswith(bundle_id) and state.hashes.get(newest) == hashes:
        # A run died between moving the upload into its slot and switching: just switch.
        pruned = switch_current(t, newest, prune=_doomed(state, newest, keep))
        return FlashResult(t.board.name, newest, state.current, [], list(files), 0, pruned)

    upload_dir = f"{INCOMING_PREFIX}{bundle_id}"
    incoming = f"{t.board.root}/{MODELS}/{upload_dir}"
    present = state.hashes.get(upload_dir, {})
    to_send = [name for name in files if present.get(name) != hashes[name]]
    offsets = {name: resume_offset(files[name], state.sizes.get(upload_dir, {}).get(name), present.get(name))
               for name in to_send}
    slot = f"{_next_seq(state):04d}-{bundle_id}"
    needed = sum(files[name].stat().st_size - offsets[name] for name in to_send)
    pruned_early = _make_room(t, state, slot, keep, needed)
    sent_before = t.sent_bytes
    _upload(t, incoming, {name: files[name] for name in to_send}, offsets, steps)
    if steps.hooks.after_upload:
        steps.hooks.after_upload(t, incoming)
    steps.stage("verifying sha256 on the board")
    _verify(t, incoming, hashes)

    steps.stage(f"switching current to {slot}")
    t.check(f"mv -T {q(incoming)} {q(t.board.root)}/{MODELS}/{slot} && sync", what="moving the upload into its slot")
    if steps.hooks.before_switch:
        steps.hooks.before_switch(t, slot)
    pruned = switch_current(t, slot, prune=[n for n in _doomed(state, slot, keep) if n not in pruned_early])
    kept = [name for name in files if name not in to_send]
    return FlashResult(t.board.name, slot, state.current, to_send, kept, t.sent_bytes - sent_before,
                       pruned_early + pruned, resumed_from={n: o for n, o in offsets.items() if o},
                       pruned_before_upload=pruned_early)


def _doomed(state: SlotState, new_current: str, keep: int) -> list[str]:
    """Slots past the newest ``keep`` (never the new current) and stale uploads."""
    slots = state.slots + ([new_current] if new_current not in state.slots else [])
    return [s for s in slots[:-keep] if s != new_current] + state.incoming


def _prunable_now(state: Survey, new_slot: str, keep: int) -> list[str]:
    """What this flash deletes anyway and may delete before uploading: not the
    current slot (it stays until the new one is verified), not this upload."""
    upload_dir = f"{INCOMING_PREFIX}{new_slot.split('-', 1)[1]}"
    return [n for n in _doomed(state, new_slot, keep) if n not in (state.current, upload_dir)]


def _make_room(t: Transport, state: Survey, new_slot: str, keep: int, needed: int) -> list[str]:
    """Check that ``needed`` bytes (+ margin) fit. When they fit only without
    the old slots this flash prunes anyway, prune those first; returns them."""
    if needed + SPACE_MARGIN_BYTES <= state.free_bytes:
        return []
    doomed = _prunable_now(state, new_slot, keep)
    if needed + SPACE_MARGIN_BYTES <= state.free_bytes + sum(state.usage.get(n, 0) for n in doomed):
        t.check(f"cd {q(t.board.root)}/{MODELS} && rm -rf -- {' '.join(q(n) for n in doomed)} && sync",
                what="pruning old versions to make room")
        return doomed
    raise _disk_full(t, state, new_slot, keep, needed)


def _disk_full(t: Transport, state: Survey, new_slot: str, keep: int, needed: int) -> DiskFull:
    kept = [s for s in state.slots if s not in _prunable_now(state, new_slot, keep)]
    listing = ", ".join(f"{s} {_mib(state.usage.get(s, 0))}" + (" (current)" if s == state.current else "")
                        for s in kept) or "none"
    smaller = [k for k in range(keep - 1, 0, -1)
               if needed + SPACE_MARGIN_BYTES <= state.free_bytes
               + sum(state.usage.get(n, 0) for n in _prunable_now(state, new_slot, k))]
    fix = (f"flash with --keep {smaller[0]} (prunes older versions first), free space on the board, "
           "or use a bigger card" if smaller else
           "free space on the board or use a bigger card (the current version stays until the new one "
           "is verified, so it cannot make room)")
    return DiskFull(
        f"{t.board.name} has {_mib(state.free_bytes)} free under {t.board.root}, the bundle needs "
        f"{_mib(needed)} (+ {_mib(SPACE_MARGIN_BYTES)} margin); the versions kept with --keep {keep} "
        f"take {listing}", fix)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def _upload(t: Transport, incoming: str, files: dict[str, Path], offsets: dict[str, int], steps: _Steps) -> None:
    """Send ``files`` into ``incoming``, each from its verified offset; a link
    that drops mid-file resumes from what reached the board. ``offsets`` ends
    up holding where each file's last attempt started."""
    t.makedirs(incoming)
    total = sum(path.stat().st_size for path in files.values())
    done = 0
    for name, path in files.items():
        remote = f"{incoming}/{name}"
        first = [offsets.get(name, 0)]

        def offset(name=name, local=path, remote=remote, first=first) -> int:
            # The survey's offset first; after a dropped link, what reached the board by then.
            at = offsets[name] = first.pop() if first else board_resume_offset(t, local, remote)
            steps.stage(f"resuming {name} at {_mib(at)} (verified)" if at else f"uploading {name}")
            return at

        def progress(position, _size, base=done):
            steps.progress(base + position, total)

        t.put(path, remote, on_progress=progress, offset=offset)
        done += path.stat().st_size


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
