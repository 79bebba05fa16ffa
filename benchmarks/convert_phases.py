"""Where `edgetqs convert`'s peak RSS comes from: the exact peak of every phase.

    .venv/bin/python benchmarks/convert_phases.py MODEL --plan PLAN [--name NAME]

Runs ``convert`` in this process (bundle into a temporary directory). Each
phase resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``)
when it starts and reads VmHWM when it ends, so its peak is its own, not the
process's so far; an enclosing phase gets the maximum of everything inside it.
Phases: the converter's steps (``on_step``) and, inside them, the calls that
hold float copies: AEQ's export, every LiteRT runner's life, the simulation.
RSS after each phase, and the bytes malloc still has handed out (glibc
keeps freed heap, so RSS alone overstates what is alive), say what it left. Sizes are in MiB and as ratios
to the model's float weight bytes.
Writes benchmarks/results/convert_phases.json (merged with earlier runs by NAME).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tqs_common import RESULTS, machine  # noqa: E402

MIB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def malloc_in_use() -> int:
    """Bytes malloc has handed out and not had back (all arenas, mmapped chunks included): what is
    alive, unlike RSS, which also holds freed heap glibc has not returned to the kernel."""
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _status(field: str) -> int:
    line = next(line for line in open("/proc/self/status") if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


class Phases:
    """Nested phases, each with its own exact peak (VmHWM between its start and end)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._open: list[dict] = []

    def _fold_peak(self) -> None:
        peak = _status("VmHWM")
        for row in self._open:
            row["peak"] = max(row["peak"], peak)

    def _reset(self) -> None:
        self._fold_peak()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")

    @contextlib.contextmanager
    def phase(self, name: str):
        """A phase; one called again under the same parent (each model call of a rollout) adds to its row."""
        self._reset()
        parent = self._open[-1] if self._open else None
        row = next((r for r in self.rows if r["phase"] == name and r["parent"] is parent), None)
        if row is None:
            row = {"phase": name, "parent": parent, "depth": len(self._open), "peak": 0, "seconds": 0.0, "calls": 0}
            self.rows.append(row)
        self._open.append(row)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._fold_peak()
            self._open.pop()
            row.update(rss_after=_status("VmRSS"), malloc_after=malloc_in_use(), seconds=row["seconds"] + time.perf_counter() - start,
                       calls=row["calls"] + 1)

    def step(self, text: str) -> None:
        """``convert``'s on_step: ends the previous top-level step, starts the next."""
        if self._open and self._open[-1]["depth"] == 1:
            self._close_step()
        self._step = self.phase("writing the output" if text.startswith("writing ") else text)  # (a temporary path)
        self._step.__enter__()

    def _close_step(self) -> None:
        self._step.__exit__(None, None, None)

    def wrap(self, owner, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            with self.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)


def instrument(phases: Phases) -> None:
    """Phases around the calls that hold float copies (patched where the converter looks them up)."""
    from edgetqs.converter import pipeline, verify
    from edgetqs.engine import litert

    phases.wrap(pipeline, "quantize", "AEQ export")
    phases.wrap(verify, "run_litert", "LiteRT run of the export (verify)")
    phases.wrap(verify, "simulate", "simulation (engine, dequantized deltas)")
    phases.wrap(litert.LiteRTRunner, "rollout", "LiteRT runner rollout")
    phases.wrap(litert.LiteRTRunner, "forward", "LiteRT runner forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--plan", required=True)
    parser.add_argument("--name", help="results key (default: the model file's stem)")
    args = parser.parse_args()
    from edgetqs.converter.pipeline import convert
    from edgetqs.model.intake import load_model

    facts = load_model(args.model).card
    float_bytes = sum(layer.float_bytes for layer in facts.layers)
    load = os.getloadavg()[0]
    phases = Phases()
    instrument(phases)
    with tempfile.TemporaryDirectory() as tmp, phases.phase("convert (total)"):
        convert(args.model, args.plan, Path(tmp) / "bundle", on_step=phases.step)
        phases._close_step()
    rows = [{"phase": r["phase"], "depth": r["depth"], "calls": r["calls"], "seconds": round(r["seconds"], 2),
             "peak_mib": round(r["peak"] / MIB, 1), "peak_over_float": round(r["peak"] / float_bytes, 2),
             "rss_after_mib": round(r["rss_after"] / MIB, 1), "malloc_in_use_after_mib": round(r["malloc_after"] / MIB, 1)}
            for r in phases.rows]
    for r in rows:
        print(f"{'  ' * r['depth']}{r['phase']:<{48 - 2 * r['depth']}} x{r['calls']:<3d} {r['seconds']:7.2f} s  peak {r['peak_mib']:7.1f} MiB "
              f"({r['peak_over_float']:.2f}x float)  after {r['rss_after_mib']:7.1f} MiB "
              f"(malloc {r['malloc_in_use_after_mib']:7.1f})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "convert_phases.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[args.name or Path(args.model).stem] = {"float_bytes": float_bytes, "load_avg_1min": load,
                                                   "machine": machine(), "phases": rows}
    path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
