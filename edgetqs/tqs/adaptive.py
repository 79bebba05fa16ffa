"""Adaptive sweeps: the same ranking as the full K x T sweep for a fraction of its work.

A full sweep rolls every (unit, probe) out from K windows for T calls; its cost
is units x probes x K x T forward passes of the model. The ranking of the
units usually settles long before: this sweep starts small (``start_windows``
windows, ``start_horizon`` calls) and grows only what is not settled yet.
Both checks come free from the runs already made:

- horizon settled: the ranking by gamma at t/2 (from the same distance curves)
  agrees with the ranking at t (Spearman >= ``settled``, every probe);
- windows settled: the ranking from the first half of the windows agrees with
  the ranking from all of them.

An unsettled horizon doubles t: every job (and the reference) resumes from
the window it reached at call t and runs only the t calls that follow (a
rollout's whole state is its window; sweep.SweepState), so its distances are
those of one uninterrupted 2t-call run, bit for bit. Unsettled windows double k
(only the new windows run; the old distances are kept — each window's distances
are the same whichever batch computed them). Both stop at the settings' K, T.
Every (job, window) thus runs each of its t calls once: the work is exactly
jobs x k x t of what ran, never more than the full sweep's. (A runner without
``resumes`` — a backend that cannot start each probe group from its own
windows — re-runs all jobs from their contexts at 2t instead: the same numbers
for up to 1.19x the full sweep's work with the default start at K=16, T=32.)
A stage's "work" counts the calls it ran.

Scores are gamma at the horizon t that ran, and the score file's horizon is
that t (``settings.adaptive`` records what ran per stage and the work vs the
full sweep), so the planner's ``exp(gamma T)`` is the amplification actually
measured. (Extrapolating gamma to the requested T from the curves' slope was
tried and ranked worse than gamma at t on the zoo models: early growth is
steeper than late growth.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.tqs.probes import gamma_from_distances

DEFAULT_SETTLED = 0.98


@dataclass(frozen=True)
class AdaptivePolicy:
    start_windows: int = 4
    start_horizon: int = 8
    settled: float = DEFAULT_SETTLED  # Spearman between successive rankings that counts as settled

    def validate(self) -> "AdaptivePolicy":
        if self.start_windows < 2 or self.start_horizon < 2:
            raise EdgeTQSError(f"adaptive start {self.start_windows} windows x {self.start_horizon} calls is too small",
                               "start with at least 2 windows and 2 calls (the halves are compared)")
        if not 0 < self.settled <= 1:
            raise EdgeTQSError(f"settled threshold {self.settled} is outside (0, 1]", "use e.g. 0.98")
        return self


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation; two constant rankings agree (1.0), one constant and one not do not (0.0)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.ptp(a) == np.ptp(b) else 0.0
    return float(spearmanr(a, b).statistic)


def gammas_at(distances: np.ndarray, norms: np.ndarray, horizon: int) -> np.ndarray:
    """gamma per job from distances [J, K, t] at call ``horizon`` (<= t)."""
    return np.array([gamma_from_distances(d[:, horizon - 1], norm, horizon) for d, norm in zip(distances, norms)])


def settledness(distances: np.ndarray, norms: np.ndarray, probes: list[str]) -> tuple[float, float]:
    """(horizon, windows) agreement: min over probes of Spearman(t/2 vs t) and (first half of windows vs all)."""
    t, k = distances.shape[-1], distances.shape[1]
    full = gammas_at(distances, norms, t)
    early = gammas_at(distances, norms, max(t // 2, 1))
    half_windows = gammas_at(distances[:, : max(k // 2, 1)], norms, t)
    probes = np.asarray(probes)
    horizon, windows = 1.0, 1.0
    for probe in set(probes.tolist()):
        rows = probes == probe
        horizon = min(horizon, spearman(early[rows], full[rows]))
        windows = min(windows, spearman(half_windows[rows], full[rows]))
    return horizon, windows


@dataclass
class AdaptiveResult:
    reference: np.ndarray  # [k, t*patch, F] of the windows used
    windows: np.ndarray  # [k, window, F]
    keep: np.ndarray  # [k] bool: reference did not blow up
    distances: np.ndarray  # [J, k_kept, t]
    norms: np.ndarray
    gammas: np.ndarray  # at the horizon run
    stages: list[dict]

    def summary(self, windows: int, horizon: int, jobs: int) -> dict:
        work = sum(stage["work"] for stage in self.stages)
        return {"stages": self.stages, "windows_run": int(len(self.windows)),
                "horizon_run": int(self.distances.shape[2]), "work_calls": int(work),
                "full_sweep_calls": int(jobs * windows * horizon),
                "work_fraction": work / max(jobs * windows * horizon, 1)}


def adaptive_run(runner, jobs, windows_for, max_windows: int, max_horizon: int, policy: AdaptivePolicy,
                 keep_of=None, progress=None) -> AdaptiveResult:
    """Grow windows and horizon until the ranking is settled (module doc).

    ``windows_for(a, b)`` -> (context windows a..b, their covariates [b-a, >= T*patch, C] or
    None), the same whatever the calls that asked for them; ``runner.run`` and, when
    ``runner.resumes``, ``runner.run_resumable`` as in sweep.LocalRunner;
    ``keep_of(reference, windows)`` -> the windows whose reference did not blow up
    (it may raise when none is left). Distances and gammas cover kept windows only.
    """
    policy = policy.validate()
    keep_of = keep_of or (lambda reference, windows: np.ones(len(windows), bool))
    k, t = min(policy.start_windows, max_windows), min(policy.start_horizon, max_horizon)
    probes = [probe for _, probe in jobs]
    resumes = bool(getattr(runner, "resumes", False))

    def run(start, horizon, covariates):
        """-> (reference, distances, norms, state after the run, or None when the runner cannot resume)."""
        if resumes:
            return runner.run_resumable(jobs, start, horizon, progress=progress, covariates=covariates)
        return (*runner.run(jobs, start, horizon, progress=progress, covariates=covariates), None)

    windows, given = windows_for(0, k)
    reference, distances, norms, state = run(windows, t, given)
    stages = [{"windows": k, "horizon": t, "work": len(jobs) * k * t}]
    while True:
        keep = keep_of(reference, windows)
        horizon_ok, windows_ok = settledness(distances[:, keep], norms, probes)
        stages[-1].update(spearman_half_horizon=horizon_ok, spearman_half_windows=windows_ok)
        if horizon_ok < policy.settled and t < max_horizon:
            grown = min(2 * t, max_horizon)
            if state is not None:  # calls t+1..grown only, from where every rollout stands
                more_reference, more, _, state = run(state, grown - t, given)
                reference = np.concatenate([reference, more_reference], axis=1)
                distances = np.concatenate([distances, more], axis=2)
                stages.append({"windows": k, "horizon": grown, "work": len(jobs) * k * (grown - t), "resumed": True})
            else:
                reference, distances, norms, _ = run(windows, grown, given)
                stages.append({"windows": k, "horizon": grown, "work": len(jobs) * k * grown, "resumed": False})
            t = grown
        elif windows_ok < policy.settled and k < max_windows:
            new, new_given = windows_for(k, min(2 * k, max_windows))
            more_reference, more, _, more_state = run(new, t, new_given)
            windows = np.concatenate([windows, new])
            given = None if given is None else np.concatenate([given, new_given])
            reference, distances = np.concatenate([reference, more_reference]), np.concatenate([distances, more], axis=1)
            state = None if state is None else state.with_windows(more_state)
            stages.append({"windows": len(windows), "horizon": t, "work": len(jobs) * len(new) * t})
            k = len(windows)
        else:
            break
    kept = distances[:, keep]
    return AdaptiveResult(reference, windows, keep, kept, norms, gammas_at(kept, norms, t), stages)


def spread_order(count: int) -> list[int]:
    """0..count-1 in bit-reversed order, so every prefix of windows taken from a series is spread over it."""
    bits = max(count - 1, 1).bit_length()
    return sorted(range(count), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))
