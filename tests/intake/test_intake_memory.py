"""Intake holds one float copy of the converted model where it used to hold several (issue #14).

Each test pins one copy that was removed: the graph's constants are views of the converter's
bytes (from_bytes copied them into a bytearray), the source names keep signatures of the
weights, not the weights (they kept them twice, once as float64), and verification runs on
LiteRT's builtin kernels, which read the weights in place (XNNPACK packs a second copy).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import numpy as np
import pytest
from tests.remote.forecast_bundle import wide_float_forecaster

from edgetqs.model.layers import SourceNames
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants

WIDTH = 2048  # a 16 MiB kernel: far above the few MiB the interpreter's own pages vary by


@pytest.fixture(scope="module")
def wide_tflite(tmp_path_factory):
    path = tmp_path_factory.mktemp("wide") / "wide.tflite"
    path.write_bytes(wide_float_forecaster(WIDTH))
    return path


def test_graph_constants_are_views_of_the_bytes_it_was_read_from(wide_tflite):
    raw = wide_tflite.read_bytes()  # bytes, as the converters return them
    graph = TFLiteGraph.from_bytes(raw)
    whole = np.frombuffer(raw, np.uint8)
    constants = [t for t in graph.tensors if t.is_constant]
    assert sum(t.data.nbytes for t in constants) > 0.9 * len(raw)
    for tensor in constants:
        assert np.shares_memory(tensor.data, whole), tensor.name
        assert not tensor.data.flags.writeable


def test_buffers_stored_after_the_flatbuffer_are_views_too(savedmodel_path, tmp_path):
    """AEQ writes a large model's buffers after the flatbuffer (offset + size): read from bytes, they
    are views as well (flatbuffer_utils slices them out of what it is given: copies of bytes)."""
    from edgetqs.model.quiet import import_tensorflow_quietly, quiet_tensorflow

    tf = import_tensorflow_quietly()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_path))
    converter._experimental_use_buffer_offset = True  # the layout AEQ and the converter use above 2 GB
    with quiet_tensorflow():
        raw = converter.convert()
    (tmp_path / "offsets.tflite").write_bytes(raw)
    graph, from_file = TFLiteGraph.from_bytes(raw), TFLiteGraph.load(tmp_path / "offsets.tflite")
    whole = np.frombuffer(raw, np.uint8)
    constants = [t for t in graph.tensors if t.is_constant]
    assert constants and all(np.shares_memory(t.data, whole) for t in constants)
    assert [(t.name, t.shape) for t in graph.tensors] == [(t.name, t.shape) for t in from_file.tensors]
    for mine, theirs in zip(graph.tensors, from_file.tensors):
        assert (mine.data is None) == (theirs.data is None)
        assert mine.data is None or np.array_equal(mine.data, theirs.data), mine.name
    weight = next(t for t in constants if len(t.shape) == 2)  # the ModelT still re-serialises (black-box path)
    patched = TFLiteGraph.from_bytes(replace_constants(graph, {weight.name: np.ones(weight.shape, np.float32)}))
    assert np.all(patched.float_constant(patched.tensor_by_name(weight.name)) == 1.0)


def test_large_models_convert_with_their_buffers_after_the_flatbuffer(savedmodel_path):
    """From LARGE_MODEL_BYTES of weights up the TF converter writes buffers by offset (no flatbuffer
    builder grown around the weights); below it the layout stays as it was. Both read as views."""
    from ai_edge_litert import schema_py_generated as schema

    from edgetqs.model.formats.savedmodel import tflite_from_savedmodel_dir
    from edgetqs.model.memory import LARGE_MODEL_BYTES

    def offsets(raw: bytes) -> list[int]:
        model = schema.Model.GetRootAs(raw, 0)
        return [model.Buffers(i).Offset() for i in range(model.BuffersLength())]

    small = tflite_from_savedmodel_dir(savedmodel_path, savedmodel_path, LARGE_MODEL_BYTES - 1)
    large = tflite_from_savedmodel_dir(savedmodel_path, savedmodel_path, LARGE_MODEL_BYTES)
    assert not any(offsets(small)) and any(offsets(large))
    for raw in (small, large):
        whole = np.frombuffer(raw, np.uint8)
        assert all(np.shares_memory(t.data, whole) for t in TFLiteGraph.from_bytes(raw).tensors if t.is_constant)


def test_source_names_keep_signatures_not_the_weights():
    rng = np.random.default_rng(0)
    weights = {f"block_{i}_fc": rng.standard_normal((256, 512)).astype(np.float32) for i in range(4)}
    alive = [weakref.ref(values) for values in weights.values()]
    source = SourceNames(set(), ((name, values) for name, values in weights.items()))  # a generator, as keras.py
    expected = {name: values.T.copy() for name, values in weights.items()}  # the converter's layout
    expected["block_2_fc"] *= np.float32(0.3)  # a scale folded into the kernel
    del weights
    gc.collect()
    assert all(ref() is None for ref in alive)  # nothing kept the source's arrays
    kept = sum(signature.sample.nbytes for _, signature in source.weights)
    assert kept < 0.05 * 4 * 256 * 512 * 4  # well under one float copy of the four matrices
    for name, values in expected.items():
        assert source.name_of(values) == name
    assert source.name_of(rng.standard_normal((512, 256)).astype(np.float32)) is None  # same shape, other values


PEAK = """
import sys
import numpy as np
from edgetqs.model.litert import run_tflite
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants
raw = open(sys.argv[1], "rb").read()
window = np.zeros(TFLiteGraph.from_bytes(raw).input_shapes()[0], np.float32)
run_tflite(raw, window, xnnpack=sys.argv[2] == "on")
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024)
"""


def _peak_bytes(path, xnnpack: bool) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(path), "on" if xnnpack else "off"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_verification_kernels_use_the_weights_in_place(wide_tflite):
    """Intake checks agreement with run_tflite(xnnpack=False): its peak is below XNNPACK's by the
    packed copy (measured here, the baseline that shows the check can see a copy)."""
    kernel = 4 * WIDTH * WIDTH
    with_packing, in_place = _peak_bytes(wide_tflite, True), _peak_bytes(wide_tflite, False)
    assert with_packing - in_place > 0.7 * kernel, (with_packing / 2**20, in_place / 2**20)


def test_intake_verifies_without_xnnpack(monkeypatch, tmp_path, keras_path):
    """The agreement check is the call that runs without the packed copy (a real run, recorded)."""
    from edgetqs.model import intake

    monkeypatch.setenv("EDGETQS_CACHE", str(tmp_path))  # converted here, not found in the session's cache
    calls = []
    real = intake.run_tflite

    def recording(tflite, window, xnnpack=True):
        calls.append(xnnpack)
        return real(tflite, window, xnnpack=xnnpack)

    monkeypatch.setattr(intake, "run_tflite", recording)
    model = intake.load_model(keras_path)
    assert calls == [False]
    assert model.graph.path == model.tflite_path  # the graph in memory is the cached file's, not a re-read copy
