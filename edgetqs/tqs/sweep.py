"""The TQS sweep's pieces: jobs, memory-bounded chunks, and the distances of one chunk.

A *job* is one (unit, probe) rollout. The pieces here are shared by every way
a sweep runs — in one process (score.py), adaptively (adaptive.py) and as
(unit, probe, window-chunk) tasks on a Dask cluster (distributed.py) — so the
three compute the same numbers: each job's distances depend only on its own
rows of the engine's batch (the row-exact GEMM), never on which other jobs
or windows ran with it.

Memory: a chunk holds its jobs' deltas (and the engine's GEMM-layout copy of
each) and their perturbed trajectories; both are bounded here, so a sweep
needs the model's weights twice (the graph's bytes and the engine's GEMM
layout) plus a bounded working set, whatever the model's size. Weights are
read through ``weight_of`` (the engine's shared arrays), never copied per probe.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

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


class LocalRunner:
    """Runs jobs in this process: the float reference rides in the first chunk, so a sweep of
    a small model is one engine call."""

    name = "local"

    def __init__(self, backend, graph, bits: int, seed: int, patch: int):
        self.backend, self.bits, self.seed, self.patch = backend, bits, seed, patch
        self.weight_of = weight_source(backend, graph)

    def run(self, jobs: list[Job], windows: np.ndarray, horizon: int, on_reference=None, progress=None,
            covariates: np.ndarray | None = None):
        """-> (reference [K, T*patch, F - C], distances [J, K, T], delta norms [J]).

        ``on_reference(reference)`` is called as soon as the reference exists (to fail
        early when it blows up); ``progress(done, total)`` after every chunk; ``covariates``
        [K, >= T*patch, C]: the given inputs of a covariate model, the same for every job
        (the first T*patch steps are fed: an adaptive sweep grows T over the same series).
        """
        covariates = given_steps(covariates, horizon, self.patch)
        chunks = chunk_jobs(jobs, len(windows), horizon, self.patch, windows.shape[2])
        reference, distances, norms = None, [], []
        for index, chunk in enumerate(chunks):
            deltas = job_deltas(chunk, self.weight_of, self.bits, self.seed)
            runs = self.backend.rollout_probes(windows, horizon, ([{}] if index == 0 else []) + deltas, covariates)
            if index == 0:
                reference, runs = runs[0], runs[1:]
                if on_reference is not None:
                    on_reference(reference)
            distances.append(step_distances(runs, reference, self.patch))
            norms += [delta_norm(delta) for delta in deltas]
            if progress is not None:
                progress(index + 1, len(chunks))
        return reference, np.concatenate(distances), np.asarray(norms)


class _LazyWeights(dict):
    """name -> weight, fetched from the backend on first use (unit_delta indexes it like a dict)."""

    def __init__(self, weight_of: WeightSource):
        super().__init__()
        self._weight_of = weight_of

    def __missing__(self, name: str) -> np.ndarray:
        value = self._weight_of(name)
        self[name] = value
        return value
