"""TQS sweeps on a Dask cluster: (unit, probe, window-chunk) tasks, the same numbers bit for bit.

    from edgetqs.tqs.distributed import DaskRunner
    runner = DaskRunner.connect("tcp://127.0.0.1:8786", model.graph, model.card)   # or "local:2"
    scores = score_model(model.graph, model.card, settings, runner=runner)

``ScoreSettings(scheduler=ADDRESS)`` (``edgetqs score --scheduler ADDRESS``,
``edgetqs.api.score(..., scheduler=ADDRESS)``) does the same. Without it a sweep runs in
this process (sweep.LocalRunner); nothing here is imported.

Tasks: first one reference rollout per window chunk (the blown-up check needs
every window's reference before any score), then one task per (chunk of jobs,
window chunk), each returning the distances of its jobs on its windows and the
jobs' delta norms. Why the result equals the single-process sweep bit for bit:
each job's distances depend only on its own rows of the engine's batch (the
row-exact GEMM, engine/gemm.py), and deltas only on (seed, tensor name), so
neither the batch a job ran in nor the worker it ran on can change a bit; the
client puts the pieces back in job and window order and scores them with the
same Recorder.

Resuming (``run_resumable``, what an adaptive sweep grows its horizon with): each
task also returns the windows its jobs read next and starts, when given a
SweepState, from its jobs' own windows (sweep.py); the client keeps the state
[J, K, window, F] and the reference's next windows (rebuilt from the reference
trajectory it already has), so the cluster runs only the new calls, and the
numbers and the work are the local sweep's.

Workers open the canonical model from its directory (model.tflite +
model.card.json) once per process and check its sha256: on a multi-node
cluster that directory must be on storage every node sees (or copied there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetqs.engine.rollout import windows_after
from edgetqs.errors import EdgeTQSError
from edgetqs.tqs.contexts import given_steps
from edgetqs.tqs.probes import delta_norm, step_distances
from edgetqs.tqs.sweep import SweepState, check_state_jobs, chunk_jobs, job_deltas, start_windows, weight_source

DEFAULT_WINDOW_CHUNK = 4
_WORKER_MODELS: dict[tuple[str, str], tuple] = {}  # (model dir, sha256) -> (engine, graph), per worker process


def _worker_engine(model_dir: str, sha256: str):
    key = (model_dir, sha256)
    if key not in _WORKER_MODELS:
        from edgetqs.engine import Engine
        from edgetqs.model.intake import open_canonical

        model = open_canonical(Path(model_dir))
        if model.graph.sha256 != sha256:
            raise EdgeTQSError(f"the worker's model at {model_dir} has sha256 {model.graph.sha256[:12]}, "
                               f"the client's {sha256[:12]}",
                               "put the canonical model directory on storage every worker sees, unchanged")
        _WORKER_MODELS.clear()  # one model per worker process at a time: bounded memory
        _WORKER_MODELS[key] = (Engine(model.graph, model.card.rollout), model.graph)
    return _WORKER_MODELS[key]


def reference_task(model_dir: str, sha256: str, windows: np.ndarray, horizon: int,
                   covariates: np.ndarray | None = None) -> np.ndarray:
    engine, _ = _worker_engine(model_dir, sha256)
    return engine.rollout_probes(windows, horizon, [{}], covariates)[0]


def distances_task(model_dir: str, sha256: str, jobs, windows: np.ndarray, reference: np.ndarray, horizon: int,
                   patch: int, bits: int, seed: int, covariates: np.ndarray | None = None,
                   keep_state: bool = False) -> tuple:
    """-> (distances, delta norms) of ``jobs`` from ``windows`` ([K, window, F] shared, or [J, K, window, F]
    each job's own), and with ``keep_state`` the windows they read next [J, K, window, F]."""
    engine, graph = _worker_engine(model_dir, sha256)
    deltas = job_deltas(jobs, weight_source(engine, graph), bits, seed)
    runs = engine.rollout_probes(windows, horizon, deltas, covariates)
    result = step_distances(runs, reference, patch), [delta_norm(delta) for delta in deltas]
    return result + (windows_after(windows, runs, covariates, engine.spec),) if keep_state else result


class DaskRunner:
    """Runs a sweep's jobs as Dask tasks; ``run`` has sweep.LocalRunner's contract."""

    name = "dask"
    resumes = True  # run_resumable continues from a SweepState (the workers run the engine)

    def __init__(self, client, graph, card, bits: int = 4, seed: int = 0, window_chunk: int = DEFAULT_WINDOW_CHUNK):
        """``graph``, ``card``: the canonical model (its card's tflite_path is where workers open it)."""
        if not card.tflite_path:
            raise EdgeTQSError(f"{card.name} has no canonical model file for the workers to open",
                               "load the model through intake or the zoo (edgetqs.api.load) before scoring on Dask")
        self.client, self.bits, self.seed, self.window_chunk = client, bits, seed, window_chunk
        self.model_dir = str(Path(card.tflite_path).resolve().parent)
        self.sha256, self.patch, self.spec = graph.sha256, card.rollout.patch, card.rollout

    @classmethod
    def connect(cls, address: str, graph, card, bits: int = 4, seed: int = 0,
                window_chunk: int = DEFAULT_WINDOW_CHUNK) -> "DaskRunner":
        """``address``: a scheduler (tcp://HOST:PORT) or ``local:N`` for a LocalCluster of N workers on 127.0.0.1."""
        return cls(connect_client(address), graph, card, bits, seed, window_chunk)

    def close(self) -> None:
        cluster = getattr(self.client, "cluster", None)  # the LocalCluster of local:N (None for an address)
        self.client.close()
        if cluster is not None:
            cluster.close()

    def run(self, jobs, windows: np.ndarray, horizon: int, on_reference=None, progress=None,
            covariates: np.ndarray | None = None):
        return self._run(jobs, windows, horizon, on_reference, progress, covariates, keep_state=False)[:3]

    def run_resumable(self, jobs, start, horizon: int, progress=None, covariates: np.ndarray | None = None):
        """sweep.LocalRunner.run_resumable's contract."""
        return self._run(jobs, start, horizon, None, progress, covariates, keep_state=True)

    def _run(self, jobs, start, horizon, on_reference, progress, covariates, keep_state):
        from distributed import as_completed

        windows, state, calls = start_windows(start)
        check_state_jobs(state, jobs)
        slices = [slice(a, min(a + self.window_chunk, len(windows))) for a in range(0, len(windows), self.window_chunk)]
        covariates = given_steps(covariates, horizon, self.patch, after=calls)
        given = [None if covariates is None else covariates[s] for s in slices]  # each window chunk's own rows
        where = (self.model_dir, self.sha256)
        futures = [self.client.submit(reference_task, *where, windows[s], horizon, given[w], pure=False)
                   for w, s in enumerate(slices)]
        reference = np.concatenate(self.client.gather(futures))
        if on_reference is not None:
            on_reference(reference)
        job_chunks = chunk_jobs(jobs, self.window_chunk, horizon, self.patch, windows.shape[2])
        firsts = np.cumsum([0] + [len(chunk) for chunk in job_chunks])
        tasks = {}
        for c, chunk in enumerate(job_chunks):
            for w, s in enumerate(slices):
                starts = windows[s] if state is None else state.jobs[firsts[c]: firsts[c + 1], s]
                future = self.client.submit(distances_task, *where, chunk, starts, reference[s], horizon,
                                            self.patch, self.bits, self.seed, given[w], keep_state, pure=False)
                tasks[future] = (c, w)
        parts: dict[tuple[int, int], tuple] = {}
        for done, future in enumerate(as_completed(tasks), start=1):
            parts[tasks[future]] = future.result()
            if progress is not None:
                progress(done, len(tasks))
        distances = np.concatenate([np.concatenate([parts[c, w][0] for w in range(len(slices))], axis=1)
                                    for c in range(len(job_chunks))])
        norms = np.asarray([n for c in range(len(job_chunks)) for n in parts[c, 0][1]])
        after = None
        if keep_state:
            after = SweepState(calls + horizon, windows_after(windows, reference, covariates, self.spec),
                               np.empty((len(jobs), *windows.shape), np.float32))
            for (c, w), part in parts.items():
                after.jobs[firsts[c]: firsts[c + 1], slices[w]] = part[2]
        return reference, distances, norms, after


CONNECT_TIMEOUT_S = 30


def connect_client(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """A Dask client for ``address`` (tcp://HOST:PORT), or a LocalCluster on 127.0.0.1 for ``local:N``."""
    from distributed import Client, LocalCluster

    try:
        if address.startswith("local:"):
            workers = int(address.removeprefix("local:"))
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
            return Client(cluster)
        return Client(address, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise EdgeTQSError(f"cannot reach a Dask scheduler at {address} ({type(exc).__name__}: {exc})",
                           "start one (`dask scheduler` and `dask worker ADDRESS`) and pass its tcp://HOST:PORT, "
                           "or use --scheduler local:N") from exc
