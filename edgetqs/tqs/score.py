"""TQS scores per unit (METHOD.md §2): ``score_model(...) -> ScoreFile``.

For each unit and probe, the model with only that unit perturbed is rolled out
from the same K context windows as the float reference for T model calls;
``d_t(c)`` is the norm of the difference of the two outputs at call t and

    gamma = mean_c (1/T) log(d_T(c) / ||delta||).

Reference blow-up: a window whose float reference turns NaN/inf or grows past
``BLOWUP_FACTOR`` times the largest magnitude in its context (at least 1) is
reported in ``reference.windows_blown_up`` and left out of every score.

Dead units: a unit is dead when, for every probe run, its perturbation moves
the output at step T by at most ``dead_floor`` (default 1e-6, float32
round-off) times the reference's norm there, in every window. In gamma terms
that is the floor ``gamma < (1/T) log(dead_floor * ||ref_T|| / ||delta||)``,
which includes ``d_T == 0`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgetqs.engine import Engine
from edgetqs.engine.backends import DEFAULT_BACKEND, RolloutBackend, backend_names, make_backend
from edgetqs.engine.blackbox import LiteRTRollout
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import ModelCard
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.tqs import contexts as ctx
from edgetqs.tqs.probes import (delta_norm, gamma_from_distances, probes_for, step_distances, unit_delta,
                                PROBE_CHOICES)
from edgetqs.tqs.scorefile import ProbeResult, ScoreFile, UnitScore
from edgetqs.tqs.units import Unit, build_units

BLOWUP_FACTOR = 100.0
DEFAULT_DEAD_FLOOR = 1e-6
# The perturbed trajectories of one chunk of (unit, probe) runs are held at once: bound their memory.
CHUNK_BYTES = 128 * 2**20
MAX_CHUNK_RUNS = 64


@dataclass
class ScoreSettings:
    probe: str = "both"
    granularity: str = "layer"
    block_regex: str | None = None
    horizon: int = 32
    windows: int = 16
    seed: int = 0
    probe_bits: int = 4
    engine: str = DEFAULT_BACKEND  # a rollout backend name (engine/backends.py)
    dead_floor: float = DEFAULT_DEAD_FLOOR
    data: str | None = None  # CSV/NPY path; None = data-free contexts

    def validate(self) -> "ScoreSettings":
        ctx.check_counts(self.horizon, self.windows)
        if self.probe not in PROBE_CHOICES:
            raise EdgeTQSError(f"unknown probe '{self.probe}'", f"use one of: {', '.join(PROBE_CHOICES)}")
        if self.engine not in backend_names():
            raise EdgeTQSError(f"unknown engine '{self.engine}'", f"use --engine {' or '.join(backend_names())}")
        if not 0 < self.dead_floor < 1:
            raise EdgeTQSError(f"dead floor {self.dead_floor} is outside (0, 1)", "use a small relative floor such as 1e-6")
        return self


def backend_for(graph: TFLiteGraph, card: ModelCard, engine: str = DEFAULT_BACKEND,
                notes: list[str] | None = None) -> RolloutBackend:
    """Backend ``engine`` (engine/backends.py); when the numba engine cannot run the model, the
    black-box LiteRT path instead (with a note saying so)."""
    try:
        return make_backend(engine, graph, card.rollout)
    except EdgeTQSError as exc:  # an op it lacks, a graph shape it cannot batch
        if engine != Engine.name:
            raise
        _note(notes, f"the numba engine cannot run this model ({exc.problem}); using the black-box LiteRT path")
        return make_backend(LiteRTRollout.name, graph, card.rollout)


def _note(notes: list[str] | None, text: str) -> None:
    if notes is not None:
        notes.append(text)


def make_contexts(backend, card: ModelCard, settings: ScoreSettings) -> ctx.Contexts:
    if settings.data:
        return ctx.from_file(settings.data, card.rollout, settings.windows, settings.horizon)
    return ctx.free_run(backend, card.rollout, settings.windows, settings.seed, settings.horizon)


def model_contexts(graph: TFLiteGraph, card: ModelCard, data: str | None, windows: int, horizon: int,
                   seed: int) -> ctx.Contexts:
    """Windows from ``data`` when given, else from the model's own free run (data-free), without notes."""
    if data:
        return ctx.from_file(data, card.rollout, windows, horizon)
    return ctx.free_run(backend_for(graph, card), card.rollout, windows, seed, horizon)


def blown_up_windows(reference: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Boolean [K]: the reference rollout went non-finite or exploded (see module doc)."""
    finite = np.all(np.isfinite(reference), axis=(1, 2)) & np.all(np.isfinite(windows), axis=(1, 2))
    scale = np.maximum(np.nan_to_num(np.max(np.abs(windows), axis=(1, 2)), nan=1.0), 1.0)
    with np.errstate(invalid="ignore"):
        peak = np.max(np.abs(np.nan_to_num(reference, nan=np.inf)), axis=(1, 2))
    return ~finite | (peak > BLOWUP_FACTOR * scale)


def score_model(graph: TFLiteGraph, card: ModelCard, settings: ScoreSettings | None = None, backend=None,
                contexts: ctx.Contexts | None = None, progress: bool = True, notes: list[str] | None = None) -> ScoreFile:
    """Score every unit of a canonical model; see the module doc for the definitions."""
    settings = (settings or ScoreSettings()).validate()
    units = build_units(card, graph, settings.granularity, settings.block_regex)
    backend = backend or backend_for(graph, card, settings.engine, notes)
    contexts = contexts or make_contexts(backend, card, settings)
    sweep = _Sweep(backend, graph, units, contexts.windows, settings, card.rollout.patch)
    scores, blown = sweep.run(progress)
    return ScoreFile(
        model={"name": card.name, "tflite_sha256": graph.sha256, "source": card.source},
        settings={"probe": settings.probe, "granularity": settings.granularity, "block_regex": settings.block_regex,
                  "horizon": settings.horizon, "windows": settings.windows, "seed": settings.seed,
                  "probe_bits": settings.probe_bits, "contexts": contexts.source, "engine": backend.name,
                  "dead_floor": settings.dead_floor},
        reference={"windows_used": int((~blown).sum()), "windows_blown_up": [int(i) for i in np.flatnonzero(blown)]},
        units=scores, method=f"tqs-{probes_for(settings.probe)[0]}",
    )


class _Sweep:
    """Every (unit, probe) rollout, in chunks of bounded memory; the float reference
    rides in the first chunk so a sweep of a small model is one engine call."""

    def __init__(self, backend, graph, units: list[Unit], windows: np.ndarray, settings: ScoreSettings, patch: int):
        self.backend, self.windows, self.settings, self.patch = backend, windows, settings, patch
        self.weights = {t: graph.float_constant(graph.tensor_by_name(t)) for u in units for t in u.weight_tensors}
        self.jobs = [(u, probe) for probe in probes_for(settings.probe) for u in units]
        self.records = {u.name: UnitScore(u.name, u.weight_tensors, u.params) for u in units}
        self.dead = {u.name: True for u in units}
        self.residuals: dict = {}  # quant residuals, shared by a unit's two probes
        self.reference = self.keep = self.ref_final = None

    def run(self, show_progress: bool) -> tuple[list[UnitScore], np.ndarray]:
        chunks = self._chunks()
        with _progress(show_progress) as bar:
            task = bar.add_task("scoring units", total=len(chunks))
            for index, chunk in enumerate(chunks):
                deltas = [unit_delta(u, self.weights, probe, self.settings.probe_bits, self.settings.seed,
                                     self.residuals) for u, probe in chunk]
                runs = self.backend.rollout_probes(self.windows, self.settings.horizon, ([{}] if index == 0 else []) + deltas)
                if index == 0:
                    self._set_reference(runs[0])
                    runs = runs[1:]
                self._record(chunk, deltas, runs[:, self.keep])
                bar.advance(task)
        main_probe = probes_for(self.settings.probe)[0]  # the quant probe's gamma when both ran
        for name, record in self.records.items():
            record.dead = self.dead[name]
            record.score = record.gamma(main_probe)
        return list(self.records.values()), ~self.keep

    def _chunks(self) -> list[list[tuple[Unit, str]]]:
        count, _, features = self.windows.shape
        per_run = max(count * self.settings.horizon * self.patch * features * 4, 1)
        size = int(np.clip(CHUNK_BYTES // per_run, 1, MAX_CHUNK_RUNS))
        return [self.jobs[i:i + size] for i in range(0, len(self.jobs), size)]

    def _set_reference(self, reference: np.ndarray) -> None:
        blown = blown_up_windows(reference, self.windows)
        if blown.all():
            raise EdgeTQSError(
                f"the float model's reference rollout blows up (NaN, inf or norm explosion) from all "
                f"{len(self.windows)} context windows",
                "check the model is stable over this horizon (lower --horizon) and that --data matches its normalisation",
            )
        self.keep = ~blown
        self.reference = reference[self.keep]
        last = self.reference[:, -self.patch:].reshape(len(self.reference), -1).astype(np.float64)
        self.ref_final = np.linalg.norm(last, axis=1)

    def _record(self, chunk, deltas, runs: np.ndarray) -> None:
        horizon = self.settings.horizon
        distances = step_distances(runs, self.reference, self.patch)
        for (unit, probe), delta, d in zip(chunk, deltas, distances):
            norm = delta_norm(delta)
            self.records[unit.name].probes[probe] = ProbeResult(
                gamma_from_distances(d[:, -1], norm, horizon), norm, [float(v) for v in d.mean(axis=0)])
            self.dead[unit.name] &= bool(np.all(d[:, -1] <= self.settings.dead_floor * self.ref_final))


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True, disable=not show, console=Console(stderr=True))
