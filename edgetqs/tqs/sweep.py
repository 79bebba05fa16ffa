"""The TQS sweep's pieces: jobs, memory-bounded chunks, and the distances of one chunk.

A *job* is one (unit, probe) rollout. The pieces here are shared by every way
a sweep runs — in one process (score.py), adaptively (adaptive.py) and as
(unit, probe, window-chunk) tasks on a Dask cluster (distributed.py) — so the
three compute the same numbers: each job's distances depend only on its own
rows of the engine's batch (the row-exact GEMM), never on which other jobs
or windows ran with it.

Resuming: a rollout's whole state is the window it reads next (engine/rollout.py),
so ``run_resumable`` also returns a ``SweepState`` (every job's window and the
reference's, [J, K, window, F]: no trajectories are kept) and, given one, runs only
the calls that follow, its covariates offset by the calls already run. The
distances of t calls then t more are those of 2t calls, bit for bit (each group's
rows again depend on nothing else); an adaptive sweep grows its horizon this way.

Memory: a chunk holds its jobs' deltas (and the engine's GEMM-layout copy of
each) and their perturbed trajectories; both are bounded here, so a sweep
needs the model's weights twice (the graph's bytes and the engine's GEMM
layout) plus a bounded working set, whatever the model's size. Weights are
read through ``weight_of`` (the engine's shared arrays), never copied per probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgetqs.engine.rollout import windows_after
from edgetqs.errors import EdgeTQSError
from edgetqs.tqs.contexts import given_steps
from edgetqs.tqs.probes import delta_norm, probes_for, step_distances, unit_delta
from edgetqs.tqs.units import Unit

# Perturbed trajectories of one chunk held at once, and the chunk's deltas.
CHUNK_BYTES = 128 * 2**20
DELTA_BYTES = 64 * 2**20
MAX_CHUNK_RUNS = 64

Job = tuple[Unit, str]
WeightSource = Callable[[str], np.ndarray]


def make_jobs(units: list[Unit], probe_choice: str) -> list[Job]:
    """Unit-major, so a unit's two probes share one chunk (and its quant residual)."""
    return [(u, probe) for u in units for probe in probes_for(probe_choice)]


def weight_source(backend, graph) -> WeightSource:
    """The backend's own weight arrays when it has them (shared, not copied), else the graph's."""
    if hasattr(backend, "weight"):
        return backend.weight
    return lambda name: graph.float_constant(graph.tensor_by_name(name))


def unit_bytes(unit: Unit) -> int:
    return 4 * max(unit.params, 1)


def chunk_jobs(jobs: list[Job], windows: int, horizon: int, patch: int, features: int,
               max_runs: int = MAX_CHUNK_RUNS) -> list[list[Job]]:
    """Consecutive jobs in chunks whose trajectories fit CHUNK_BYTES and deltas DELTA_BYTES."""
    per_run = max(windows * horizon * patch * features * 4, 1)
    runs = int(np.clip(CHUNK_BYTES // per_run, 1, max_runs))
    chunks, current, delta_bytes = [], [], 0
    for job in jobs:
        size = unit_bytes(job[0])
        if current and (len(current) >= runs or delta_bytes + size > DELTA_BYTES):
            chunks.append(current)
            current, delta_bytes = [], 0
        current.append(job)
        delta_bytes += size
    return chunks + ([current] if current else [])


def job_deltas(chunk: list[Job], weight_of: WeightSource, bits: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Each job's perturbation; quant residuals are shared within the chunk only (bounded memory)."""
    residuals: dict = {}
    weights = _LazyWeights(weight_of)
    return [unit_delta(unit, weights, probe, bits, seed, residuals) for unit, probe in chunk]


@dataclass
class SweepState:
    """Where a sweep's rollouts stand after ``calls`` model calls: the windows each reads next."""

    calls: int
    reference: np.ndarray  # [K, window, F] the float reference's
    jobs: np.ndarray  # [J, K, window, F] each job's, in the jobs' order

    def with_windows(self, more: "SweepState") -> "SweepState":
        """This state and ``more`` (other windows, the same jobs, as many calls) side by side."""
        if more.calls != self.calls or len(more.jobs) != len(self.jobs):
            raise EdgeTQSError(f"cannot join sweep states after {self.calls} and {more.calls} calls "
                               f"of {len(self.jobs)} and {len(more.jobs)} jobs",
                               "run the new windows for as many calls as the old ones, for the same jobs")
        return SweepState(self.calls, np.concatenate([self.reference, more.reference]),
                          np.concatenate([self.jobs, more.jobs], axis=1))


def start_windows(start: "np.ndarray | SweepState") -> tuple[np.ndarray, SweepState | None, int]:
    """A run's start -> (the reference's windows [K, window, F], the state it resumes or None, calls already run)."""
    if isinstance(start, SweepState):
        return start.reference, start, start.calls
    return start, None, 0


def check_resumes(state: SweepState | None, jobs: list, backend) -> None:
    if state is None:
        return
    if not getattr(backend, "group_contexts", False):
        raise EdgeTQSError(f"the {getattr(backend, 'name', type(backend).__name__)} backend cannot start each probe "
                           "group from its own windows, so a sweep cannot resume on it",
                           "re-run from the contexts (what adaptive_run does for such a backend)")
    check_state_jobs(state, jobs)


def check_state_jobs(state: SweepState | None, jobs: list) -> None:
    """The state was made by these jobs (as many, in the same order)."""
    if state is not None and len(state.jobs) != len(jobs):
        raise EdgeTQSError(f"the sweep state holds {len(state.jobs)} jobs' windows, {len(jobs)} jobs were given",
                           "resume the same jobs the state was made by, in the same order")


def group_starts(state: SweepState | None, windows: np.ndarray, jobs: slice, with_reference: bool) -> np.ndarray:
    """rollout_probes' contexts for a chunk: the shared windows, or each group's own from the state."""
    if state is None:
        return windows
    own = state.jobs[jobs]
    return np.concatenate([state.reference[None], own]) if with_reference else own


class LocalRunner:
    """Runs jobs in this process: the float reference rides in the first chunk, so a sweep of
    a small model is one engine call."""

    name = "local"

    def __init__(self, backend, graph, bits: int, seed: int, patch: int):
        self.backend, self.bits, self.seed, self.patch = backend, bits, seed, patch
        self.weight_of = weight_source(backend, graph)

    @property
    def resumes(self) -> bool:
        """Whether ``run_resumable`` can continue from a SweepState (the backend takes per-group contexts)."""
        return bool(getattr(self.backend, "group_contexts", False))

    def run(self, jobs: list[Job], windows: np.ndarray, horizon: int, on_reference=None, progress=None,
            covariates: np.ndarray | None = None):
        """-> (reference [K, T*patch, F - C], distances [J, K, T], delta norms [J]).

        ``on_reference(reference)`` is called as soon as the reference exists (to fail
        early when it blows up); ``progress(done, total)`` after every chunk; ``covariates``
        [K, >= T*patch, C]: the given inputs of a covariate model, the same for every job
        (the first T*patch steps are fed: an adaptive sweep grows T over the same series).
        """
        return self._run(jobs, windows, horizon, on_reference, progress, covariates, keep_state=False)[:3]

    def run_resumable(self, jobs: list[Job], start: "np.ndarray | SweepState", horizon: int, progress=None,
                      covariates: np.ndarray | None = None):
        """``run``, also returning where the rollouts stand: -> (reference, distances, norms, SweepState).

        ``start``: context windows [K, window, F], or the SweepState a run returned: then every
        rollout continues for ``horizon`` more calls and the reference and distances are those
        calls' only ([K, horizon*patch, F - C], [J, K, horizon]); ``covariates`` are still the
        series' from the contexts on ([K, >= (calls + horizon)*patch, C]).
        """
        return self._run(jobs, start, horizon, None, progress, covariates, keep_state=True)

    def _run(self, jobs, start, horizon, on_reference, progress, covariates, keep_state):
        windows, state, calls = start_windows(start)
        check_resumes(state, jobs, self.backend)
        covariates = given_steps(covariates, horizon, self.patch, after=calls)
        chunks = chunk_jobs(jobs, len(windows), horizon, self.patch, windows.shape[2])
        reference, distances, norms = None, [], []
        after = SweepState(calls + horizon, None, np.empty((len(jobs), *windows.shape), np.float32)) \
            if keep_state else None
        first = 0
        for index, chunk in enumerate(chunks):
            deltas = job_deltas(chunk, self.weight_of, self.bits, self.seed)
            rows = slice(first, first + len(chunk))
            contexts = group_starts(state, windows, rows, with_reference=index == 0)
            runs = self.backend.rollout_probes(contexts, horizon, ([{}] if index == 0 else []) + deltas, covariates)
            if keep_state:  # only the windows; the trajectories are dropped with the chunk
                next_windows = windows_after(contexts, runs, covariates, self.backend.spec)
                if index == 0:
                    after.reference, next_windows = next_windows[0], next_windows[1:]
                after.jobs[rows] = next_windows
            if index == 0:
                reference, runs = runs[0], runs[1:]
                if on_reference is not None:
                    on_reference(reference)
            distances.append(step_distances(runs, reference, self.patch))
            norms += [delta_norm(delta) for delta in deltas]
            first += len(chunk)
            if progress is not None:
                progress(index + 1, len(chunks))
        return reference, np.concatenate(distances), np.asarray(norms), after


class _LazyWeights(dict):
    """name -> weight, fetched from the backend on first use (unit_delta indexes it like a dict)."""

    def __init__(self, weight_of: WeightSource):
        super().__init__()
        self._weight_of = weight_of

    def __missing__(self, name: str) -> np.ndarray:
        value = self._weight_of(name)
        self[name] = value
        return value
