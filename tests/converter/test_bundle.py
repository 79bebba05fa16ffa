"""The deployment bundle: written atomically, loaded with hash and format checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgetqs.bundle import load_bundle, sha256_file, write_bundle
from edgetqs.errors import EdgeTQSError

WINDOW, FEATURES = 8, 4  # the stand-in models' input shape (conftest.py)


def _contents(model_path, rng, k=3, horizon=5):
    contexts = rng.normal(size=(k, WINDOW, FEATURES)).astype(np.float32)
    ref = rng.normal(size=(k, horizon, FEATURES)).astype(np.float32)
    return dict(
        model=model_path,
        rollout={"window": WINDOW, "features": FEATURES, "patch": 1, "feedback": "append_shift", "output_rank": 2},
        probes_x=rng.normal(size=(4, 1, WINDOW, FEATURES)).astype(np.float32),
        probes_y=rng.normal(size=(4, 1, FEATURES)).astype(np.float32),
        contexts=contexts, horizon=horizon, reference_float=ref, reference_host=ref + 0.01,
        plan={"format": "edgetqs.plan", "version": 1}, source_sha256="ab" * 32,
        formats={"w": "int8"}, runtime={"ai-edge-litert": ">=2.3.0"},
        thresholds={"probe_max_abs": 1e-3},
    )


@pytest.mark.parametrize("name", ["out_bundle", "out_bundle.tar.gz"])
def test_round_trip_directory_and_archive(tmp_path, mlp_tflite, rng, name):
    contents = _contents(mlp_tflite, rng)
    path = write_bundle(tmp_path / name, **contents)
    bundle = load_bundle(path)
    assert bundle.manifest["format"] == "edgetqs.bundle" and bundle.manifest["version"] == 1
    assert bundle.model_path.read_bytes() == mlp_tflite.read_bytes()
    assert bundle.model_sha256 == sha256_file(mlp_tflite)
    np.testing.assert_array_equal(bundle.probes["x"], contents["probes_x"])
    np.testing.assert_array_equal(bundle.contexts["reference_host"], contents["reference_host"])
    assert bundle.horizon == 5 and "truth" not in bundle.contexts
    assert bundle.thresholds == contents["thresholds"] and bundle.runtime == contents["runtime"]
    assert [f.name for f in bundle.files()] == ["manifest.json", "model.tflite", "probes.npz", "contexts.npz"]
    # Nothing but the bundle is left next to it (the staging dir is gone).
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_tampered_model_is_refused(tmp_path, mlp_tflite, rng):
    path = write_bundle(tmp_path / "b", **_contents(mlp_tflite, rng))
    model = path / "model.tflite"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(EdgeTQSError, match="model.tflite has sha256"):
        load_bundle(path)


def test_wrong_version_and_format_are_refused(tmp_path, mlp_tflite, rng):
    path = write_bundle(tmp_path / "b", **_contents(mlp_tflite, rng))
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(EdgeTQSError, match="version 99"):
        load_bundle(path)
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": "edgetqs.plan"}))
    with pytest.raises(EdgeTQSError, match="not an edgetqs bundle"):
        load_bundle(path)


def test_existing_output_needs_overwrite_and_failed_write_leaves_nothing(tmp_path, mlp_tflite, rng):
    contents = _contents(mlp_tflite, rng)
    path = write_bundle(tmp_path / "b", **contents)
    with pytest.raises(EdgeTQSError, match="already exists"):
        write_bundle(path, **contents)
    bad = dict(contents, reference_host=contents["reference_host"][:, :2])
    with pytest.raises(EdgeTQSError, match="reference_host"):
        write_bundle(tmp_path / "c", **bad)
    assert not (tmp_path / "c").exists()
    write_bundle(path, **dict(contents, thresholds={"probe_max_abs": 5.0}), overwrite=True)
    assert load_bundle(path).thresholds == {"probe_max_abs": 5.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_truncated_archive_is_refused(tmp_path, mlp_tflite, rng):
    path = write_bundle(tmp_path / "b.tar.gz", **_contents(mlp_tflite, rng))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeTQSError, match="(cannot unpack|damaged)"):
        load_bundle(path)
