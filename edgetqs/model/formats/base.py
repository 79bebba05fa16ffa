"""What every source format's converter returns, and the input-shape rules they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.layers import SourceNames


# Max relative difference between a conversion and its source on the seeded window.
AGREEMENT_TOLERANCE = 1e-3


def source_files(path: Path) -> list[Path]:
    """A model source's files: the file itself, or every file of a directory (a SavedModel), sorted."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| / max |expected|: how far a conversion's output is from its source's."""
    return float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-6))


class Converted(NamedTuple):
    """A source model as float TFLite bytes, plus what intake needs to judge and describe it."""

    tflite: bytes
    source_names: SourceNames | None  # readable unit names recovered from the source, if it has any
    reference: tuple[np.ndarray, np.ndarray] | None  # (input, the source framework's output); None: nothing to compare
    route: str  # how it was converted: a name in card.INTAKE_ROUTES
    route_note: str = ""  # why that route, when there was a choice


@dataclass(frozen=True)
class SourceFormat:
    """One row of the intake table: how to recognise a source and how to convert it."""

    name: str
    label: str  # how users know it, for messages: ".keras file"
    suffixes: tuple[str, ...]  # file name endings; empty for directory formats
    convert: Callable[[Path, RolloutSpec | None], Converted]
    is_directory_of_this_format: Callable[[Path], bool] | None = None


def fixed_input_shape(shape, rollout: RolloutSpec | None, path: Path) -> list[int]:
    """[1, window, features] from a source input shape with None/-1 for unknown sizes; a state-to-state
    model's [batch, features] gives [1, features] (intake then feeds it from a [1, 1, features] window)."""
    dims = [None if d is None or d < 0 else int(d) for d in shape]
    if len(dims) == 2:
        features = dims[1] or (rollout.features if rollout is not None else None)
        if rollout is not None and rollout.window != 1:
            raise EdgeTQSError(f"{path} takes one state {list(shape)} ([batch, features]), not a window of "
                               f"{rollout.window} steps", "pass --rollout window=1,features=F for a state-to-state model")
        if features is None:
            raise EdgeTQSError(f"cannot infer a rollout spec from {path}: its input shape {list(shape)} leaves the "
                               "feature count open", "pass --rollout window=1,features=F")
        return [1, features]
    if len(dims) != 3:
        raise EdgeTQSError(f"{path} takes input of rank {len(dims)} {shape}, not [batch, window, features] "
                           "or [batch, features]",
                           "export the forecaster with one [batch, window, features] (or [batch, features]) input")
    if rollout is not None and rollout.input_layout == "channels_first":  # [batch, features, window]
        dims[1], dims[2] = dims[1] or rollout.features, dims[2] or rollout.window
        return [1, dims[1], dims[2]]
    if rollout is not None:
        dims[1], dims[2] = dims[1] or rollout.window, dims[2] or rollout.features
    if dims[1] is None or dims[2] is None:
        raise EdgeTQSError(f"cannot infer a rollout spec from {path}: its input shape {list(shape)} leaves the window "
                           "or feature count open", "pass --rollout window=W,features=F[,patch=P]")
    return [1, dims[1], dims[2]]


def random_window(shape) -> np.ndarray:
    """The seeded input every conversion is checked on."""
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def one_input_one_output(path: Path, inputs: int, outputs: int, fix: str) -> None:
    if inputs != 1 or outputs != 1:
        raise EdgeTQSError(f"{path} has {inputs} inputs and {outputs} outputs", fix)
