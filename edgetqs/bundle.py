"""The deployment bundle: everything a board needs to run and validate a model.

A bundle is a directory (or a ``.tar.gz`` of one) holding::

    manifest.json   format "edgetqs.bundle" v1: file hashes and sizes, source model
                    sha256, the plan, rollout spec, runtime requirement, thresholds
    model.tflite    the quantized model
    probes.npz      x (probe inputs), y (host LiteRT outputs of model.tflite)
    contexts.npz    contexts [K, window, features], horizon (model calls), reference_float,
                    reference_host [K, T, F], truth [K, T, F] when known (T = horizon x patch;
                    F the fed-back features), covariates [K, T, C] for a model that reads them

It is written to a temporary sibling of the output path and renamed into place
only when complete, so a crash never leaves a half-written bundle; loading
checks format, version and every file's sha256 before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, move_into_place, read_json, staged_directory, write_json

BUNDLE_FORMAT = "edgetqs.bundle"
BUNDLE_VERSION = 1
BUNDLE = JsonKind(BUNDLE_FORMAT, BUNDLE_VERSION, "bundle",
                  "pass a bundle written by this edgetqs's `edgetqs convert` (re-run it to rebuild the bundle)")
MANIFEST = "manifest.json"
MODEL_FILE = "model.tflite"
PROBES_FILE = "probes.npz"
CONTEXTS_FILE = "contexts.npz"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


@dataclass
class Bundle:
    """A loaded, hash-checked bundle. ``root`` is a directory (archives are unpacked)."""

    root: Path
    manifest: dict
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    contexts: dict[str, np.ndarray] = field(default_factory=dict)
    _tmpdir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        return self.root / self.manifest["model"]["file"]

    @property
    def model_sha256(self) -> str:
        return self.manifest["model"]["sha256"]

    @property
    def plan(self) -> dict | None:
        return self.manifest.get("plan")

    @property
    def rollout(self) -> dict:
        return self.manifest["rollout"]

    @property
    def runtime(self) -> dict:
        return self.manifest.get("runtime", {})

    @property
    def thresholds(self) -> dict:
        return self.manifest.get("thresholds", {})

    @property
    def horizon(self) -> int:
        return int(self.contexts["horizon"])

    def files(self) -> list[Path]:
        """Every file of the bundle, manifest first (what a flasher uploads)."""
        return [self.root / MANIFEST] + [self.root / name for name in self.manifest["files"]]


def is_archive(path: str | Path) -> bool:
    return str(path).endswith(ARCHIVE_SUFFIXES)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- writing ----------------------------------------------------------------

def write_bundle(
    out: str | Path,
    *,
    model: bytes | str | Path,
    rollout: dict,
    probes_x: np.ndarray,
    probes_y: np.ndarray,
    contexts: np.ndarray,
    horizon: int,
    reference_float: np.ndarray,
    reference_host: np.ndarray,
    truth: np.ndarray | None = None,
    covariates: np.ndarray | None = None,
    plan: dict | None = None,
    source_sha256: str = "",
    formats: dict[str, str] | None = None,
    runtime: dict | None = None,
    thresholds: dict | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle to ``out`` (a directory, or an archive if it ends in .tar.gz/.tgz).

    ``model`` is the .tflite bytes or a path to it. ``rollout`` is the rollout
    spec as a dict (``dataclasses.asdict(RolloutSpec)``); ``formats`` maps each
    weight tensor to its format name; ``runtime`` says which runtimes/versions
    execute the model correctly; ``thresholds`` are the on-device validation
    limits. Returns the final path.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise EdgeTQSError(f"{out} already exists", "choose another output path or pass overwrite (--force)")
    model_bytes = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    _check_arrays(probes_x, probes_y, contexts, reference_float, reference_host, truth, horizon, rollout, covariates)
    contents = dict(model_bytes=bytes(model_bytes), rollout=rollout, probes_x=probes_x, probes_y=probes_y,
                    contexts=contexts, horizon=horizon, reference_float=reference_float,
                    reference_host=reference_host, truth=truth, covariates=covariates, plan=plan, source_sha256=source_sha256,
                    formats=formats, runtime=runtime, thresholds=thresholds, extra=extra)
    if not is_archive(out):
        with staged_directory(out, replace=True) as staging:
            _fill(staging, **contents)
        return out
    # An archive is packed from a directory staged beside it, then renamed into place.
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staging = Path(tmp) / "bundle"
        staging.mkdir()
        _fill(staging, **contents)
        _pack(staging, Path(tmp) / "bundle.tar.gz")
        move_into_place(Path(tmp) / "bundle.tar.gz", out, replace=True)
    return out


def _fill(staging: Path, *, model_bytes: bytes, probes_x, probes_y, contexts, horizon, reference_float,
          reference_host, truth, covariates, rollout, plan, source_sha256, formats, runtime, thresholds, extra) -> None:
    """Write a bundle's files into ``staging`` and check them before they become visible."""
    (staging / MODEL_FILE).write_bytes(model_bytes)
    _save_npz(staging / PROBES_FILE, x=probes_x, y=probes_y)
    context_arrays = dict(contexts=contexts, horizon=np.int64(horizon),
                          reference_float=reference_float, reference_host=reference_host)
    if truth is not None:
        context_arrays["truth"] = truth
    if covariates is not None:
        context_arrays["covariates"] = covariates
    _save_npz(staging / CONTEXTS_FILE, **context_arrays)
    manifest = _manifest(staging, rollout, plan, source_sha256, formats, runtime, thresholds, extra,
                         n_probes=len(probes_x), n_contexts=len(contexts), horizon=horizon)
    write_json(staging / MANIFEST, BUNDLE, manifest, indent=2, default=_json_default)
    load_bundle(staging)  # verify what we wrote before it becomes visible


def _check_arrays(probes_x, probes_y, contexts, reference_float, reference_host, truth, horizon, rollout,
                  covariates) -> None:
    problems, patch = [], int(rollout.get("patch", 1))
    if len(probes_x) != len(probes_y):
        problems.append(f"{len(probes_x)} probe inputs but {len(probes_y)} outputs")
    if np.ndim(contexts) != 3:
        problems.append(f"contexts must be [K, window, features], got shape {np.shape(contexts)}")
    steps = horizon * patch  # horizon counts model calls; each call adds `patch` steps
    for name, ref in (("reference_float", reference_float), ("reference_host", reference_host), ("truth", truth)):
        if ref is None:
            continue
        if np.ndim(ref) != 3 or len(ref) != len(contexts) or ref.shape[1] != steps:
            problems.append(f"{name} must be [K={len(contexts)}, T={steps} (horizon x patch), features], got {np.shape(ref)}")
    given = list(rollout.get("covariates") or [])
    want = (len(contexts), steps, len(given))
    if given and np.shape(covariates) != want:
        problems.append(f"the model reads covariates {given}: their values must be [K, T, C] = {list(want)}, "
                        f"got {'none' if covariates is None else list(np.shape(covariates))}")
    if not given and covariates is not None:
        problems.append("covariate values were given for a model without covariates")
    if problems:
        raise EdgeTQSError("inconsistent bundle contents: " + "; ".join(problems),
                           "pass references rolled out from the same contexts for the same horizon")


def _save_npz(path: Path, **arrays) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})


def _manifest(root: Path, rollout, plan, source_sha256, formats, runtime, thresholds, extra, **counts) -> dict:
    files = {name: {"sha256": sha256_file(root / name), "size": (root / name).stat().st_size}
             for name in (MODEL_FILE, PROBES_FILE, CONTEXTS_FILE)}
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": MODEL_FILE, **files[MODEL_FILE]},
        "source_model_sha256": source_sha256,
        "files": files,
        "rollout": rollout,
        "plan": plan,
        "formats": formats or {},
        "runtime": runtime or {},
        "thresholds": thresholds or {},
        "counts": counts,
        "extra": extra or {},
    }


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a bundle manifest")


def _pack(directory: Path, archive: Path) -> None:
    # Members sit under one top-level folder so unpacking never scatters files.
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(directory.iterdir()):
            tar.add(child, arcname=f"bundle/{child.name}")


# -- loading ----------------------------------------------------------------

def load_bundle(path: str | Path) -> Bundle:
    """Load a bundle directory or archive, checking format, version and sha256s."""
    path = Path(path)
    if not path.exists():
        raise EdgeTQSError(f"no bundle at {path}", "run `edgetqs convert MODEL --plan PLAN -o OUT` to make one")
    tmpdir = None
    if path.is_dir():
        root = path
    elif is_archive(path) or tarfile.is_tarfile(path):
        tmpdir = tempfile.TemporaryDirectory(prefix="edgetqs-bundle-")
        root = _unpack(path, Path(tmpdir.name))
    else:
        raise EdgeTQSError(f"{path} is neither a bundle directory nor a .tar.gz bundle",
                           "pass the directory or archive written by `edgetqs convert`")
    manifest = _read_manifest(root, path)
    _verify_files(root, manifest, path)
    bundle = Bundle(root, manifest, _load_npz(root / PROBES_FILE, path), _load_npz(root / CONTEXTS_FILE, path), tmpdir)
    return bundle


def _unpack(archive: Path, dest: Path) -> Path:
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")  # 'data' refuses absolute paths, links out, devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EdgeTQSError(f"cannot unpack bundle archive {archive}: {exc}",
                           "the archive is damaged or incomplete; copy it again or re-run `edgetqs convert`") from exc
    candidates = [p.parent for p in dest.rglob(MANIFEST)]
    if len(candidates) != 1:
        raise EdgeTQSError(f"bundle archive {archive} holds {len(candidates)} manifest.json files, expected 1",
                           "pass an archive written by `edgetqs convert`")
    return candidates[0]


def _read_manifest(root: Path, where: Path) -> dict:
    if not (root / MANIFEST).is_file():
        raise EdgeTQSError(f"{where} has no {MANIFEST}", "pass a bundle written by `edgetqs convert`")
    return read_json(root / MANIFEST, BUNDLE, where=where)


def _verify_files(root: Path, manifest: dict, where: Path) -> None:
    for name, meta in manifest.get("files", {}).items():
        file = root / name
        if not file.is_file():
            raise EdgeTQSError(f"bundle {where} is missing {name}", "the bundle is incomplete; re-run `edgetqs convert`")
        actual = sha256_file(file)
        if actual != meta["sha256"]:
            raise EdgeTQSError(
                f"bundle {where}: {name} has sha256 {actual[:12]}…, the manifest says {meta['sha256'][:12]}…",
                "the file was changed or damaged in transit; copy the bundle again or re-run `edgetqs convert`")
    if manifest["model"]["file"] not in manifest.get("files", {}):
        raise EdgeTQSError(f"bundle {where}: the manifest lists no hash for its model file",
                           "re-run `edgetqs convert` to rebuild the bundle")


def _load_npz(path: Path, where: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise EdgeTQSError(f"bundle {where}: cannot read {path.name}: {exc}", "re-run `edgetqs convert`") from exc
