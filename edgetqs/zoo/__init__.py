"""The example model zoo: forecasters of simulated and real systems, trained
deterministically on first use and cached as canonical models.

    from edgetqs import zoo
    model = zoo.build("mlp-lorenz96")            # CanonicalModel
    data = zoo.system_data("mlp-lorenz96")       # normalised train/test series
    contexts, truth = zoo.true_trajectories("lorenz96", window=8, horizon=50, count=16)
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.files import move_into_place
from edgetqs.model.card import RolloutSpec
from edgetqs.model.formats import FORMATS
from edgetqs.model.intake import CanonicalModel, cache_dir, canonicalize, open_canonical
from edgetqs.zoo.data import (SYSTEMS, SystemData, data_for, evaluation_starts, series_file, system_data,
                              training_pairs, true_trajectories)
from edgetqs.zoo.registry import BY_NAME, ENTRIES, TIERS, ZOO_VERSION, ZooEntry
from edgetqs.zoo.training import entry_training_pairs

__all__ = [
    "ZooEntry", "SystemData", "SYSTEMS", "list_models", "entry", "build", "is_built", "model_dir",
    "system_data", "true_trajectories", "evaluation_starts", "training_pairs", "keras_training_inputs",
]


def list_models(tier: str = "core") -> list[ZooEntry]:
    """The catalogue's entries of ``tier`` (core: the CI-sized models; deep: the many-unit ones; all)."""
    if tier not in TIERS:
        raise EdgeTQSError(f"there is no zoo tier '{tier}'", f"pick one of: {', '.join(TIERS)}")
    return [e for e in ENTRIES if tier in ("all", e.tier)]


def entry(name: str) -> ZooEntry:
    from edgetqs.zoo import large

    name = name.removeprefix("zoo:")
    if name not in BY_NAME:
        raise EdgeTQSError(f"there is no zoo model '{name}'",
                           f"pick one of: {', '.join(BY_NAME)}; large tier (built on demand): "
                           f"{', '.join(large.BY_NAME)} (`edgetqs zoo`)")
    return BY_NAME[name]


def model_dir(name: str) -> Path:
    return cache_dir() / "zoo" / f"v{ZOO_VERSION}" / entry(name).name


def keras_training_inputs(card) -> tuple[dict, str | None]:
    """What the Hessian baseline needs beyond the canonical model — the Keras source model and its
    training pairs, which only Keras-trained zoo models keep — as keyword arguments; else the reason."""
    source = card.source or ""
    if not source.startswith("zoo:"):
        return {}, "not a zoo model: no Keras source and training set for TF Hessian-vector products"
    item = entry(source)
    if item.source_format != "keras":
        return {}, f"{item.source_format} model trained in torch: no Keras graph for TF Hessian-vector products"
    x, y = entry_training_pairs(item)
    return {"keras_path": model_dir(item.name) / f"{item.name}.keras", "train_x": x, "train_y": y}, None


def is_built(name: str) -> bool:
    directory = model_dir(name)
    return (directory / "model.tflite").exists() and (directory / "model.card.json").exists()


def build(name: str) -> CanonicalModel:
    """The zoo model ``name`` as a CanonicalModel: trained, converted and judged once, then cached.

    Large-tier names (``large.ENTRIES``: untrained, built on demand) are built by zoo/large.py.
    Concurrent builders of the same model (parallel tests, several users of one
    cache) wait on a lock instead of training twice.
    """
    from edgetqs.zoo import large

    if name.removeprefix("zoo:") in large.BY_NAME:
        return large.build(name)
    item = entry(name)
    return build_once(model_dir(item.name), lambda directory: _train_and_intake(item, directory))


def build_once(directory: Path, make) -> CanonicalModel:
    """The canonical model cached in ``directory``, made by ``make(directory)`` under a lock the first time."""
    def built() -> bool:
        return (directory / "model.tflite").exists() and (directory / "model.card.json").exists()

    if built():
        return open_canonical(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if built():
            return open_canonical(directory)
        return make(directory)


def _train_and_intake(item: ZooEntry, directory: Path) -> CanonicalModel:
    from edgetqs.zoo.evaluate import float_quality
    from edgetqs.zoo.training import train_keras, train_torch

    data = system_data(item.system, item.seed)
    spec = RolloutSpec(window=item.window, features=data.features, patch=item.patch,
                       output_rank=2 if item.patch == 1 else 3,
                       norm_mean=[float(v) for v in data.mean], norm_std=[float(v) for v in data.std],
                       covariates=SYSTEMS[item.system].covariate_indices())
    # Built beside its final place (intake stages the canonical model in there) and renamed when complete.
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp:
        source = Path(tmp) / f"{item.name}{FORMATS[item.source_format].suffixes[0]}"
        train = train_keras if item.source_format == "keras" else train_torch
        seconds = train(item, source)
        extra = {"system": item.system, "system_description": SYSTEMS[item.system].description,
                 "arch": item.arch, "training_seconds": round(seconds, 2), "zoo_version": ZOO_VERSION,
                 "seed": item.seed, "epochs": item.epochs}
        staged = Path(tmp) / "canonical"
        model = canonicalize(source, item.source_format, staged, spec, name=item.name,
                             source_label=f"zoo:{item.name}", extra=extra)
        model.card.extra["float_quality"] = float_quality(model.tflite_path, model.card.rollout, item.system,
                                                          item.horizon, seed=item.seed)
        model.card.save(staged / "model.card.json")
        shutil.copy2(source, staged / source.name)  # keep the source: tests and users can re-run intake on it
        move_into_place(staged, directory)
    return open_canonical(directory)
