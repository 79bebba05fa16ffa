"""The zoo's data: each system as normalised train/test series, plus context
windows with their true continuations for judging rollouts.

A system's series is one long trajectory [time, features]. The first part
trains, the last part tests (never seen in training). Normalisation is one
mean/std per feature from the training part — recorded in each zoo model's
RolloutSpec (norm_mean/norm_std), so on-device code can un-normalise.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.intake import cache_dir
from edgetqs.zoo import systems

TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class SystemInfo:
    name: str
    description: str
    features: int
    simulated: bool
    time_step: str
    covariates: int = 0  # the last N features are given inputs (known ahead), not predicted

    def covariate_indices(self) -> list[int]:
        return list(range(self.features - self.covariates, self.features))


SYSTEMS = {
    "lorenz96": SystemInfo("lorenz96", "Lorenz-96, 40 variables, F=8, RK4 (dt=0.01, sampled every 0.02)", 40, True, "0.02 time units"),
    "ks": SystemInfo("ks", "Kuramoto-Sivashinsky, L=22, 64 grid points, ETDRK4 (h=0.25, sampled every 1.0)", 64, True, "1.0 time units"),
    "sunspots": SystemInfo("sunspots", "yearly sunspot numbers 1700-2008 (statsmodels)", 1, False, "1 year"),
    "co2": SystemInfo("co2", "weekly Mauna Loa CO2 1958-2001 (statsmodels), NaN gaps interpolated", 1, False, "1 week"),
    "duffing": SystemInfo("duffing", "forced Duffing oscillator (chaotic: damping 0.3, force 0.5 cos 1.2t), RK4 "
                          "(dt=0.01, sampled every 0.1); position, velocity + the force's phase (cos, sin) as "
                          "covariates", 4, True, "0.1 time units", covariates=2),
}
SIMULATORS = {"lorenz96": systems.simulate_lorenz96, "ks": systems.simulate_ks, "duffing": systems.simulate_duffing}


@dataclass
class SystemData:
    """Normalised series of one system: ``raw = normalised * std + mean``."""

    system: str
    train: np.ndarray  # [T_train, F] float32, normalised
    test: np.ndarray  # [T_test, F] float32, normalised
    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]

    @property
    def features(self) -> int:
        return self.train.shape[1]

    def denormalise(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


def _sunspots() -> np.ndarray:
    import statsmodels.api as sm

    return sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(float)[:, None]


def _co2() -> np.ndarray:
    import statsmodels.api as sm

    # The weekly record has 59 missing weeks; linear interpolation in time fills
    # them (the gaps are short, and a forecaster needs an unbroken series).
    series = sm.datasets.co2.load_pandas().data["co2"].interpolate(method="time").bfill()
    return series.to_numpy(float)[:, None]


SIMULATED_STEPS = 10000
SIMULATION_VERSION = 2  # bump when a simulation setting changes: the cached series are rebuilt


def _simulated(system: str, seed: int) -> np.ndarray:
    """Simulate once, then read the cached series (simulation takes a few seconds)."""
    path = cache_dir() / "systems" / f"{system}-v{SIMULATION_VERSION}-seed{seed}-{SIMULATED_STEPS}.npy"
    if path.exists():
        return np.load(path)
    series = SIMULATORS[system](SIMULATED_STEPS, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(staging, series)
    staging.replace(path)  # atomic: concurrent readers see all or nothing
    return series


def _raw_series(system: str, seed: int) -> np.ndarray:
    if system in SIMULATORS:
        return _simulated(system, seed)
    if system == "sunspots":
        return _sunspots()
    if system == "co2":
        return _co2()
    raise EdgeTQSError(f"unknown system '{system}'", f"use one of: {', '.join(SYSTEMS)}")


def system_name(name_or_system: str) -> str:
    """'lorenz96', 'mlp-lorenz96', 'zoo:gru-ks' or 'mlp-sunspots-onnx' -> the system name."""
    name = name_or_system.removeprefix("zoo:")
    if name in SYSTEMS:
        return name
    for part in name.split("-"):
        if part in SYSTEMS:
            return part
    raise EdgeTQSError(f"'{name_or_system}' names no known system or zoo model",
                       f"use a system ({', '.join(SYSTEMS)}) or a zoo model (`edgetqs zoo`)")


@functools.lru_cache(maxsize=8)
def _cached_system_data(system: str, seed: int) -> SystemData:
    raw = _raw_series(system, seed)
    split = int(len(raw) * TRAIN_FRACTION)
    mean = raw[:split].mean(axis=0)
    std = raw[:split].std(axis=0) + 1e-8
    norm = ((raw - mean) / std).astype(np.float32)
    return SystemData(system, norm[:split], norm[split:], mean, std)


def system_data(name_or_system: str, seed: int = 0) -> SystemData:
    """Normalised train/test series of a system (or of a zoo model's system).

    Simulated systems are deterministic for a seed; real data ignore it.
    """
    return _cached_system_data(system_name(name_or_system), seed)


def training_pairs(series: np.ndarray, window: int, patch: int = 1, stride: int = 1):
    """Sliding windows over a series: x [N, window, F], y [N, patch, F]."""
    count = (len(series) - window - patch) // stride + 1
    starts = np.arange(count) * stride
    x = np.stack([series[s : s + window] for s in starts])
    y = np.stack([series[s + window : s + window + patch] for s in starts])
    return x.astype(np.float32), y.astype(np.float32)


def evaluation_starts(name_or_system: str, window: int, horizon: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` start indices into the test series, evenly spread, each leaving room for window + horizon."""
    test = system_data(name_or_system, seed).test
    last = len(test) - window - horizon
    if last < 0:
        raise EdgeTQSError(f"the {system_name(name_or_system)} test series ({len(test)} steps) is shorter than "
                           f"window {window} + horizon {horizon}", "use a shorter horizon")
    return np.unique(np.linspace(0, last, count).astype(int))


def true_trajectories(name_or_system: str, window: int, horizon: int, starts=None, count: int = 8,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Context windows from the test series and what truly followed them.

    Returns ``contexts [K, window, F]`` and ``truth [K, horizon, F]`` (normalised),
    for the given test-series ``starts`` or ``count`` evenly spread ones.
    """
    test = system_data(name_or_system, seed).test
    if starts is None:
        starts = evaluation_starts(name_or_system, window, horizon, count, seed)
    starts = np.asarray(starts, dtype=int)
    if starts.min() < 0 or starts.max() + window + horizon > len(test):
        raise EdgeTQSError(f"start indices must lie in 0..{len(test) - window - horizon} of the test series",
                           "pick starts that leave room for the window and the horizon")
    contexts = np.stack([test[s : s + window] for s in starts])
    truth = np.stack([test[s + window : s + window + horizon] for s in starts])
    return contexts, truth


def series_file(name_or_system: str, seed: int = 0) -> Path:
    """The system's training series in raw units as an NPY file [time, features] — what a user passes as
    ``--data`` (a covariate model needs it: its covariates come from data). The test series stays held out
    for judging rollouts. Written once into the cache."""
    system = system_name(name_or_system)
    path = cache_dir() / "systems" / f"{system}-train-v{SIMULATION_VERSION}-seed{seed}.npy"
    if not path.exists():
        data = system_data(system, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(staging, data.denormalise(data.train).astype(np.float32))
        staging.replace(path)
    return path


def data_for(name_or_system: str, seed: int = 0) -> str | None:
    """``--data`` for a zoo model that needs it (it reads covariates), else None (data-free works)."""
    if not SYSTEMS[system_name(name_or_system)].covariates:
        return None
    return str(series_file(name_or_system, seed))
