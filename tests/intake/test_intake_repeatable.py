"""The canonical .tflite is the same bytes on every intake of the same source, and TensorFlow's
conversions of large models run in a child process that reports back as intake did in place
(issue #14: a score file's model sha256 must still match after the intake cache is cleared)."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edgetqs.errors import EdgeTQSError
from edgetqs.model import buffer_layout
from edgetqs.model.formats import keras as keras_format
from edgetqs.model.formats.tf_child import ChildConversionBug, convert_in_child, source_bytes
from edgetqs.model.intake import load_model, run_tflite
from edgetqs.model.memory import LARGE_MODEL_BYTES
from edgetqs.model.tflite_graph import TFLiteGraph

WINDOW, FEATURES = 16, 3
WIDE, BLOCKS = 1024, 4  # 4 x 1024^2 kernels: a 17 MB .keras, converted the large-model way


@pytest.fixture(scope="module")
def wide_keras_path(tmp_path_factory):
    """A Keras model above LARGE_MODEL_BYTES with a dozen buffers: the converter writes them after
    the flatbuffer, in an order that changes from process to process."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((WINDOW, FEATURES))
    h = keras.layers.Dense(WIDE, activation="tanh", bias_initializer="random_normal")(keras.layers.Flatten()(inputs))
    for _ in range(BLOCKS):
        h = keras.layers.Dense(WIDE, activation="tanh", bias_initializer="random_normal")(h)
    outputs = keras.layers.Dense(FEATURES, bias_initializer="random_normal")(h)
    path = tmp_path_factory.mktemp("wide-keras") / "wide.keras"
    keras.Model(inputs, outputs).save(path)
    assert source_bytes(path) >= LARGE_MODEL_BYTES  # the child's route
    return path


@pytest.mark.parametrize("source", ["keras_path", "wide_keras_path"])
def test_two_intakes_into_empty_caches_give_the_same_bytes(source, request, tmp_path, monkeypatch):
    path = request.getfixturevalue(source)
    models = []
    for cache in ("first", "second"):
        monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path / cache))
        models.append(load_model(path))
    first, second = (m.tflite_path.read_bytes() for m in models)
    assert models[0].tflite_path != models[1].tflite_path
    assert hashlib.sha256(first).hexdigest() == models[0].card.tflite_sha256 == models[1].card.tflite_sha256
    assert first == second
    assert buffer_layout.is_canonical(first)


def _regions(raw: bytes) -> list[tuple[int, int, int]]:
    """(position of the offset field, offset, size) of every buffer stored after the flatbuffer."""
    model = schema.Model.GetRootAs(raw, 0)
    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
    return [(b._tab.Pos + b._tab.Offset(6), b.Offset(), b.Size()) for b in buffers if b.Offset() > 1]


def _reversed_layout(raw: bytes) -> bytes:
    """``raw`` with its buffers' data in reverse order (offsets patched), the converter's padding after
    the last one kept: the same model, laid out as another converter process might have."""
    regions = _regions(raw)
    start, end = min(o for _, o, _ in regions), max(o + s for _, o, s in regions)
    head, tail = bytearray(raw[:start]), []
    cursor = start
    for field, offset, size in reversed(regions):
        pad = -cursor % 16
        tail += [bytes(pad), raw[offset:offset + size]]
        struct.pack_into("<Q", head, field, cursor + pad)
        cursor += pad + size
    return bytes(head) + b"".join(tail) + raw[end:]


def test_canonical_layout_does_not_depend_on_the_converters_buffer_order(savedmodel_path, window):
    from edgetqs.model.formats.savedmodel import tflite_from_savedmodel_dir

    raw = tflite_from_savedmodel_dir(savedmodel_path, savedmodel_path, LARGE_MODEL_BYTES)  # offset layout
    assert len(_regions(raw)) >= 3
    shuffled = _reversed_layout(raw)
    assert shuffled != raw
    assert [(t.name, t.data.tobytes()) for t in TFLiteGraph.from_bytes(shuffled).tensors if t.is_constant] == \
           [(t.name, t.data.tobytes()) for t in TFLiteGraph.from_bytes(raw).tensors if t.is_constant]
    canonical = buffer_layout.canonical(raw)
    assert buffer_layout.canonical(shuffled) == canonical
    assert buffer_layout.canonical(canonical) is canonical  # already canonical: no copy
    offsets = [o for _, o, _ in _regions(canonical)]
    assert offsets == sorted(offsets) and all(o % 16 == 0 for o in offsets)
    window = window.reshape(1, WINDOW, FEATURES)
    np.testing.assert_array_equal(run_tflite(canonical, window, xnnpack=False), run_tflite(raw, window, xnnpack=False))


def test_inline_buffers_are_left_as_they_are(float_tflite_path):
    raw = float_tflite_path.read_bytes()
    assert not _regions(raw)
    assert buffer_layout.canonical(raw) is raw


def test_conversion_in_a_child_is_the_conversion_in_place(keras_path):
    here, child = keras_format.convert(keras_path, None), convert_in_child(keras_format.convert, keras_path, None)
    assert child.tflite == here.tflite
    assert (child.route, child.route_note) == (here.route, here.route_note)
    np.testing.assert_array_equal(child.reference[0], here.reference[0])
    np.testing.assert_allclose(child.reference[1], here.reference[1], rtol=1e-5, atol=1e-6)
    assert [name for name, _ in child.source_names.weights] == [name for name, _ in here.source_names.weights]
    assert child.source_names.layers == here.source_names.layers


def test_a_child_reports_the_error_intake_reports_in_place(tmp_path):
    path = tmp_path / "notes.keras"
    path.write_text("these are my notes, not a model\n" * 20)
    with pytest.raises(EdgeTQSError) as here:
        keras_format.convert(path, None)
    with pytest.raises(EdgeTQSError) as child:
        convert_in_child(keras_format.convert, path, None)
    assert type(child.value) is type(here.value)
    assert (child.value.problem, child.value.fix) == (here.value.problem, here.value.fix)
    assert "not a readable Keras model" in child.value.problem


def raise_a_bug(path, rollout):
    """A conversion with a bug (run in the child by the test below)."""
    raise ValueError(f"an unexpected failure on {path.name}")


def die_of_sigkill(path, rollout):
    """A conversion killed as the out-of-memory killer kills (run in the child by the test below)."""
    print("converted 3 of 7 functions", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_bug_in_the_child_reaches_the_user_with_its_traceback(tmp_path):
    with pytest.raises(ChildConversionBug) as info:
        convert_in_child(raise_a_bug, tmp_path / "m.keras", None)
    message = str(info.value)
    assert "Traceback" in message and "raise_a_bug" in message
    assert "ValueError: an unexpected failure on m.keras" in message


def test_a_child_that_dies_says_how_and_what_it_printed(tmp_path):
    with pytest.raises(EdgeTQSError) as info:
        convert_in_child(die_of_sigkill, tmp_path / "m.keras", None)
    assert "killed by SIGKILL" in info.value.problem and "out of memory" in info.value.problem
    assert "converted 3 of 7 functions" in info.value.problem
    assert "memory" in info.value.fix


def test_intake_of_a_keras_model_leaves_tensorflow_out_of_the_caller(keras_path, tmp_path):
    """A process without TensorFlow (the CLI) converts in a child and never imports it."""
    code = ("import sys; from edgetqs.model.intake import load_model; model = load_model(sys.argv[1]); "
            "print(model.card.tflite_sha256, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(keras_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EDGETQS_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    sha, tensorflow, keras = done.stdout.split()
    assert (tensorflow, keras) == ("False", "False")
    assert sha == hashlib.sha256(load_model(keras_path).tflite_path.read_bytes()).hexdigest()
