"""Context windows for TQS rollouts: from the user's data, or data-free.

All windows are in the model's input space: user data is normalised with the
card's ``norm_mean``/``norm_std`` (when the card has them) before windowing.

Data-free contexts (METHOD.md §2): the model's own free run. ``K`` windows of
i.i.d. Gaussian noise with standard deviation ``NOISE_SCALE`` (1.0: in
normalised units this is the data's own spread, so the noise lands on the
scale of the states the model was trained on; a card without normalisation
gets the same N(0, 1) in the model's raw input units) are rolled out for a burn-in of
``burn_in_steps(window, patch)`` model calls — ``max(ceil(4 * window / patch), 64)``,
i.e. four windows' worth of the model's own output (at least 64 calls), long enough for a trained forecaster to forget the noise and settle on its
attractor — and the last ``window`` states become the context. Windows that
blow up during burn-in are caught later as blown-up references.

Covariates (features the model reads but does not predict: time of day, a
control signal, a weather forecast) come from the data: each context carries
the covariate columns of the series over its horizon, and its truth holds the
fed-back columns only. Data-free contexts refuse a covariate model: drawn noise
for a clock or a control input says nothing about how the model is used, and a
free run cannot invent the inputs it needs at every call.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec

NOISE_SCALE = 1.0
MIN_BURN_IN = 64


DATA_SOURCE = "data:"  # a Contexts.source (a score file's "contexts") read from a series: "data:<file name>"


def data_file_named(source: str) -> str | None:
    """The series file name a contexts source names ("data:<file name>"), or None for a free run."""
    return source.removeprefix(DATA_SOURCE) if source.startswith(DATA_SOURCE) else None


@dataclass
class Contexts:
    windows: np.ndarray  # [K, window, features], model-input space
    source: str  # DATA_SOURCE + the series file's name, or "free-run"
    truth: np.ndarray | None = None  # [K, horizon*patch, fed-back features] continuation, when the data has it
    covariates: np.ndarray | None = None  # [K, horizon*patch, covariates] given values (covariate models only)

    def covariates_for(self, horizon: int, patch: int) -> np.ndarray | None:
        """The given covariates over the first ``horizon`` calls (None for a model without)."""
        if self.covariates is not None and self.covariates.shape[1] < horizon * patch:
            raise EdgeTQSError(f"the contexts carry covariates for {self.covariates.shape[1]} steps, "
                               f"the rollout needs {horizon * patch}",
                               "build the contexts for the longest horizon you roll out")
        return given_steps(self.covariates, horizon, patch)

    def subset(self, rows) -> "Contexts":
        """The same contexts restricted to ``rows`` (windows, truth and covariates together)."""
        pick = (lambda a: None if a is None else a[rows])
        return Contexts(self.windows[rows], self.source, pick(self.truth), pick(self.covariates))


def given_steps(covariates: np.ndarray | None, horizon: int, patch: int, after: int = 0) -> np.ndarray | None:
    """The covariates [K, >= (after+horizon)*patch, C] of the ``horizon`` calls that follow the first
    ``after`` (a resumed rollout's; None for a model without)."""
    return None if covariates is None else covariates[:, after * patch: (after + horizon) * patch]


def burn_in_steps(window: int, patch: int = 1) -> int:
    # Counted in output steps: a model emitting 16 steps per call fills its
    # window 16x faster (4 * window calls made a 128-step window 512 calls of a 100M model).
    return max(-(-4 * window // patch), MIN_BURN_IN)


def check_counts(horizon: int, windows: int) -> None:
    if horizon < 1:
        raise EdgeTQSError(f"the horizon must be at least 1 model call (got {horizon})", "pass --horizon T with T >= 1")
    if windows < 1:
        raise EdgeTQSError(f"the number of context windows must be at least 1 (got {windows})", "pass --windows K with K >= 1")


def load_series(path: str | Path) -> np.ndarray:
    """A [time, features] float series from a CSV (optional header row) or an NPY file."""
    path = Path(path)
    if not path.exists():
        raise EdgeTQSError(f"no such data file: {path}", "pass --data with an existing .csv or .npy file")
    if path.suffix.lower() == ".npy":
        series = _load_npy(path)
    elif path.suffix.lower() in (".csv", ".txt"):
        series = _load_csv(path)
    else:
        raise EdgeTQSError(f"data file {path} is neither .csv nor .npy", "save the series as CSV or NPY, shape [time, features]")
    _check_finite(series, path)
    return series


def _load_npy(path: Path) -> np.ndarray:
    try:
        series = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise EdgeTQSError(f"cannot read {path} as NPY: {exc}", "save it with numpy.save") from exc
    if series.ndim == 1:
        series = series[:, None]
    if series.ndim != 2 or not np.issubdtype(series.dtype, np.number):
        raise EdgeTQSError(f"{path} holds a {series.dtype} array of shape {series.shape}, not [time, features]",
                           "save a 2-D numeric array, time along the first axis")
    return series.astype(np.float32)


def _load_csv(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    with path.open(newline="") as handle:
        for line_no, cells in enumerate(csv.reader(handle), start=1):
            if not cells or all(not c.strip() for c in cells):
                continue
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                if not rows and line_no == 1:
                    continue  # a header row
                raise EdgeTQSError(f"{path} line {line_no} has a value that is not a number: {cells}",
                                   "keep only numbers after the (optional) header row") from None
    if not rows:
        raise EdgeTQSError(f"{path} holds no rows of numbers", "give a CSV with one time step per row")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise EdgeTQSError(f"{path} has rows of different lengths {sorted(widths)}", "give every row the same number of columns")
    return np.asarray(rows, np.float32)


def _check_finite(series: np.ndarray, path: Path) -> None:
    bad = np.argwhere(~np.isfinite(series))
    if len(bad):
        row, col = bad[0]
        value = series[row, col]
        raise EdgeTQSError(
            f"{path} has {len(bad)} NaN/inf values; the first is {value} at time step {row} (row {row} of the data), feature {col}",
            "fill or drop the missing values before scoring (e.g. interpolate gaps)",
        )


def normalise(series: np.ndarray, spec: RolloutSpec) -> np.ndarray:
    if spec.norm_mean is None or spec.norm_std is None:
        return series.astype(np.float32)
    mean = np.asarray(spec.norm_mean, np.float32)
    std = np.asarray(spec.norm_std, np.float32)
    return ((series - mean) / std).astype(np.float32)


def from_series(series: np.ndarray, spec: RolloutSpec, windows: int, horizon: int, source: str = "data") -> Contexts:
    """``windows`` context windows spread evenly over ``series`` [time, features] (raw units)."""
    check_counts(horizon, windows)
    if series.ndim != 2 or series.shape[1] != spec.features:
        raise EdgeTQSError(f"the data has shape {series.shape}; the model needs [time, {spec.features}]",
                           f"give a series with {spec.features} feature columns, time along the rows")
    need = spec.window + horizon * spec.patch
    if len(series) < need:
        raise EdgeTQSError(
            f"the series has {len(series)} time steps; one window ({spec.window}) plus the horizon "
            f"({horizon} calls x patch {spec.patch}) needs {need}",
            "give a longer series, or lower --horizon",
        )
    data = normalise(series, spec)
    starts = np.linspace(0, len(data) - need, windows).round().astype(int)
    ctx = np.stack([data[s:s + spec.window] for s in starts])
    future = np.stack([data[s + spec.window:s + need] for s in starts])
    given = np.ascontiguousarray(future[..., spec.covariates]) if spec.covariates else None
    return Contexts(ctx, source, np.ascontiguousarray(future[..., spec.fed_back]), given)


def from_file(path: str | Path, spec: RolloutSpec, windows: int, horizon: int) -> Contexts:
    return from_series(load_series(path), spec, windows, horizon, source=f"{DATA_SOURCE}{Path(path).name}")


def free_run(backend, spec: RolloutSpec, windows: int, seed: int, horizon: int = 1, first: int = 0) -> Contexts:
    """Data-free contexts: the model's own trajectory after a burn-in from noise (see module doc).

    ``first``: start at window ``first`` of the same seeded draw, so windows[a:b]
    can be made later, equal to a slice of one call for all (adaptive sweeps add windows).
    """
    check_counts(horizon, windows)
    refuse_data_free(spec)
    rng = np.random.default_rng(seed)
    noise = (NOISE_SCALE * rng.standard_normal((first + windows, spec.window, spec.features))).astype(np.float32)[first:]
    # >= 4 windows of the model's own output, always enough to fill a window with it
    trajectory = backend.rollout_probes(noise, burn_in_steps(spec.window, spec.patch), [{}])[0]
    return Contexts(np.ascontiguousarray(trajectory[:, -spec.window:]), "free-run")


def refuse_data_free(spec: RolloutSpec) -> None:
    """Covariate models need their given inputs from data (module doc)."""
    if spec.covariates:
        raise EdgeTQSError(
            f"the model reads covariates (features {spec.covariates}: given, not predicted), and data-free contexts "
            "cannot supply them: noise in place of a clock or a control input measures nothing the board will see",
            "pass a series with all the model's input columns, the covariates included, over the window plus the "
            "horizon: --data FILE (to `edgetqs convert`: --calibration FILE)")
