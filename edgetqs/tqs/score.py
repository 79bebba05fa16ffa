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
from edgetqs.tqs.adaptive import DEFAULT_SETTLED, AdaptivePolicy, adaptive_run, spread_order
from edgetqs.tqs.probes import PROBE_CHOICES, gamma_from_distances, probes_for
from edgetqs.tqs.scorefile import ProbeResult, ScoreFile, UnitScore
from edgetqs.tqs.sweep import LocalRunner, make_jobs
from edgetqs.tqs.units import Unit, build_units

BLOWUP_FACTOR = 100.0
DEFAULT_DEAD_FLOOR = 1e-6


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
    # Adaptive sweep (adaptive.py): windows/horizon above are the maxima, grown until the ranking settles.
    adaptive: bool = False
    settled: float = DEFAULT_SETTLED
    # A Dask scheduler (tcp://HOST:PORT, or local:N) to run the sweep's tasks on; None = this process.
    # Not recorded in the score file: the scores are the same bit for bit (distributed.py).
    scheduler: str | None = None

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
                contexts: ctx.Contexts | None = None, progress: bool = True, notes: list[str] | None = None,
                runner=None) -> ScoreFile:
    """Score every unit of a canonical model; see the module doc for the definitions.

    ``runner``: who runs the (unit, probe) rollouts — this process by default, or
    ``distributed.DaskRunner`` (same numbers, bit for bit)."""
    settings = (settings or ScoreSettings()).validate()
    _check_covariate_support(card, settings, contexts)
    units = build_units(card, graph, settings.granularity, settings.block_regex)
    backend = backend or backend_for(graph, card, settings.engine, notes)
    own_runner = runner is None
    runner = runner or _runner_for(settings, backend, graph, card)
    try:
        if settings.adaptive:
            scores, blown, contexts, adaptive = _adaptive_sweep(runner, backend, card, units, settings, contexts,
                                                                progress)
        else:
            contexts = contexts or make_contexts(backend, card, settings)
            scores, blown = _Sweep(runner, units, contexts, settings, card.rollout.patch).run(progress)
            adaptive = None
    finally:
        if own_runner and hasattr(runner, "close"):
            runner.close()  # a Dask client this call connected
    result = ScoreFile(
        model={"name": card.name, "tflite_sha256": graph.sha256, "source": card.source},
        settings={"probe": settings.probe, "granularity": settings.granularity, "block_regex": settings.block_regex,
                  "horizon": settings.horizon, "windows": settings.windows, "seed": settings.seed,
                  "probe_bits": settings.probe_bits, "contexts": contexts.source, "engine": backend.name,
                  "dead_floor": settings.dead_floor},
        reference={"windows_used": int((~blown).sum()), "windows_blown_up": [int(i) for i in np.flatnonzero(blown)]},
        units=scores, method=f"tqs-{probes_for(settings.probe)[0]}",
    )
    if adaptive is not None:  # what ran: the horizon and windows the gammas are measured over
        result.settings.update(adaptive=adaptive, horizon=adaptive["horizon_run"], windows=adaptive["windows_run"])
    return result


def _check_covariate_support(card: ModelCard, settings: ScoreSettings, contexts: ctx.Contexts | None) -> None:
    """Covariate models are scored from data: data-free contexts cannot feed them."""
    if card.rollout.covariates and not settings.data and (contexts is None or contexts.covariates is None):
        ctx.refuse_data_free(card.rollout)


def _runner_for(settings: ScoreSettings, backend, graph: TFLiteGraph, card: ModelCard):
    if settings.scheduler is None:
        return LocalRunner(backend, graph, settings.probe_bits, settings.seed, card.rollout.patch)
    from edgetqs.tqs.distributed import DaskRunner

    if backend.name != DEFAULT_BACKEND:
        raise EdgeTQSError(f"a Dask sweep runs the {DEFAULT_BACKEND} engine on its workers, not {backend.name}",
                           "leave out --engine, or score without --scheduler")
    return DaskRunner.connect(settings.scheduler, graph, card, settings.probe_bits, settings.seed)


def _adaptive_sweep(runner, backend, card: ModelCard, units: list[Unit], settings: ScoreSettings,
                    contexts: ctx.Contexts | None, progress: bool):
    """An adaptive sweep (adaptive.py) recorded like a full one at the settings' horizon."""
    patch, jobs = card.rollout.patch, make_jobs(units, settings.probe)
    if contexts is None and settings.data is None:
        source = "free-run"

        def windows_for(first: int, stop: int) -> tuple[np.ndarray, None]:
            return ctx.free_run(backend, card.rollout, stop - first, settings.seed, settings.horizon,
                                first=first).windows, None
    else:
        contexts = contexts or make_contexts(backend, card, settings)
        source, spread = contexts.source, contexts.subset(spread_order(len(contexts.windows)))

        def windows_for(first: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
            part = spread.subset(slice(first, stop))
            return part.windows, part.covariates
    recorder = Recorder(units, settings)

    def keep_of(reference, windows):
        recorder.set_reference(reference, windows, patch)
        return recorder.keep

    with _progress(progress) as bar:
        task = bar.add_task("scoring units (adaptive)", total=None)
        run = adaptive_run(runner, jobs, windows_for, settings.windows, settings.horizon,
                           AdaptivePolicy(settled=settings.settled), keep_of=keep_of,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    recorder.set_reference(run.reference, run.windows, patch)
    recorder.record_norms(jobs, list(run.norms), run.distances)
    scores, blown = recorder.finish()
    return scores, blown, ctx.Contexts(run.windows, source), run.summary(settings.windows, settings.horizon, len(jobs))


class _Sweep:
    """Every (unit, probe) rollout at the settings' K windows and T calls, run by ``runner``
    (this process by default; a Dask cluster with distributed.DaskRunner)."""

    def __init__(self, runner, units: list[Unit], contexts: ctx.Contexts, settings: ScoreSettings, patch: int):
        self.runner, self.windows, self.settings, self.patch = runner, contexts.windows, settings, patch
        self.covariates = contexts.covariates_for(settings.horizon, patch)
        self.jobs = make_jobs(units, settings.probe)
        self.recorder = Recorder(units, settings)

    def run(self, show_progress: bool) -> tuple[list[UnitScore], np.ndarray]:
        with _progress(show_progress) as bar:
            task = bar.add_task("scoring units", total=None)
            _, distances, norms = self.runner.run(
                self.jobs, self.windows, self.settings.horizon,
                on_reference=lambda ref: self.recorder.set_reference(ref, self.windows, self.patch),
                progress=lambda done, total: bar.update(task, completed=done, total=total), covariates=self.covariates)
        self.recorder.record_norms(self.jobs, list(norms), distances[:, self.recorder.keep])
        return self.recorder.finish()


class Recorder:
    """Turns each job's distances d [K_kept, T] into its unit's scores (the module doc's definitions)."""

    def __init__(self, units: list[Unit], settings: ScoreSettings):
        self.settings = settings
        self.records = {u.name: UnitScore(u.name, u.weight_tensors, u.params) for u in units}
        self.dead = {u.name: True for u in units}
        self.reference = self.keep = self.ref_final = None

    def set_reference(self, reference: np.ndarray, windows: np.ndarray, patch: int) -> None:
        blown = blown_up_windows(reference, windows)
        if blown.all():
            raise EdgeTQSError(
                f"the float model's reference rollout blows up (NaN, inf or norm explosion) from all "
                f"{len(windows)} context windows",
                "check the model is stable over this horizon (lower --horizon) and that --data matches its normalisation",
            )
        self.keep = ~blown
        self.reference = reference[self.keep]
        last = self.reference[:, -patch:].reshape(len(self.reference), -1).astype(np.float64)
        self.ref_final = np.linalg.norm(last, axis=1)

    def record_norms(self, chunk, norms: list[float], distances: np.ndarray) -> None:
        """Each job's scores from its distances d [K_kept, t] (gamma at d's own horizon t)."""
        for (unit, probe), norm, d in zip(chunk, norms, distances):
            self.records[unit.name].probes[probe] = ProbeResult(
                gamma_from_distances(d[:, -1], norm, d.shape[-1]), norm, [float(v) for v in d.mean(axis=0)])
            self.dead[unit.name] &= bool(np.all(d[:, -1] <= self.settings.dead_floor * self.ref_final))

    def finish(self) -> tuple[list[UnitScore], np.ndarray]:
        main_probe = probes_for(self.settings.probe)[0]  # the quant probe's gamma when both ran
        for name, record in self.records.items():
            record.dead = self.dead[name]
            record.score = record.gamma(main_probe)
        return list(self.records.values()), ~self.keep


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=True, disable=not show, console=Console(stderr=True))
