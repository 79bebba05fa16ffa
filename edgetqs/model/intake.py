"""Model intake: any supported model becomes ONE canonical float32 .tflite plus
its card (rollout spec + layer table), cached under ``$EDGETQS_CACHE``.

Sources: a Keras ``.keras`` file, a SavedModel directory, an ``.onnx`` file
(through onnx2tf), a float ``.tflite``, or ``zoo:NAME``. The canonical model has
batch 1 — a fixed input ``[1, window, features]`` keeps the graph free of
shape-computing ops (SHAPE/PACK) that a dynamic batch adds. Only builtin ops are
allowed: boards run builtin-only runtimes. Every conversion is checked
numerically against the source framework before it is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError

# TensorFlow reads this once, at import (which happens lazily, below): keep its C++ logs quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgetqs.model.card import ModelCard, RolloutSpec
from edgetqs.model.layers import SourceNames, infer_rollout, layer_table
from edgetqs.model.tflite_graph import TFLiteGraph

# Bump when the canonical form changes, so old cache entries are rebuilt.
INTAKE_VERSION = 4
# Max relative difference between the canonical model and its source on a random window.
AGREEMENT_TOLERANCE = 1e-3
SUPPORTED = ".keras, SavedModel directory, .onnx or float .tflite"


@dataclass
class CanonicalModel:
    graph: TFLiteGraph
    card: ModelCard
    tflite_path: Path

    @property
    def rollout(self) -> RolloutSpec:
        return self.card.rollout


def cache_dir() -> Path:
    return Path(os.environ.get("EDGETQS_CACHE", Path.home() / ".cache" / "edgetqs"))


# -- entry point --------------------------------------------------------------
def load_model(model: str | os.PathLike, rollout: RolloutSpec | None = None) -> CanonicalModel:
    """The canonical model for ``model`` (a path or ``zoo:NAME``), built once and cached."""
    text = str(model)
    if text.startswith("zoo:"):
        from edgetqs import zoo

        model = zoo.build(text.removeprefix("zoo:"))
        _check_zoo_rollout(model, rollout)
        return model
    path = Path(text).expanduser()
    source_format = detect_format(path)
    key = _cache_key(path, rollout)
    out_dir = cache_dir() / "models" / key
    if (out_dir / "model.tflite").exists() and (out_dir / "model.card.json").exists():
        return open_canonical(out_dir)
    return canonicalize(path, source_format, out_dir, rollout, name=path.stem if path.is_file() else path.name,
                        source_label=str(path))


def _check_zoo_rollout(model: CanonicalModel, rollout: RolloutSpec | None) -> None:
    """A zoo model knows its rollout spec; a different one given on the command line is a mistake."""
    spec = model.card.rollout
    if rollout is not None and (rollout.window, rollout.features, rollout.patch) != (spec.window, spec.features, spec.patch):
        raise EdgeTQSError(f"--rollout window={rollout.window},features={rollout.features},patch={rollout.patch} does not "
                           f"match {model.card.name} (window={spec.window},features={spec.features},patch={spec.patch})",
                           "leave out --rollout for zoo models: they carry their spec")


def open_canonical(out_dir: Path) -> CanonicalModel:
    """A canonical model already written to ``out_dir`` (model.tflite + model.card.json)."""
    card = ModelCard.load(out_dir / "model.card.json")
    tflite_path = out_dir / "model.tflite"
    card.tflite_path = str(tflite_path)  # the cache may have moved since it was written
    return CanonicalModel(TFLiteGraph.load(tflite_path), card, tflite_path)


def detect_format(path: Path) -> str:
    if not path.exists():
        raise EdgeTQSError(f"no such model: {path}",
                           f"check the path; edgetqs reads a {SUPPORTED}, or zoo:NAME (`edgetqs zoo` lists them)")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise EdgeTQSError(f"{path} is a directory but not a SavedModel (no saved_model.pb)",
                           f"pass a SavedModel directory or a {SUPPORTED} file")
    formats = {".keras": "keras", ".onnx": "onnx", ".tflite": "tflite"}
    if path.suffix.lower() not in formats:
        raise EdgeTQSError(f"{path} is not a model edgetqs can read (unknown extension '{path.suffix}')",
                           f"pass a {SUPPORTED}")
    return formats[path.suffix.lower()]


def _cache_key(path: Path, rollout: RolloutSpec | None) -> str:
    digest = hashlib.sha256(f"intake-v{INTAKE_VERSION};rollout={rollout}".encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def canonicalize(path: Path, source_format: str, out_dir: Path, rollout: RolloutSpec | None, name: str,
                 source_label: str, extra: dict | None = None) -> CanonicalModel:
    """Convert ``path`` and write model.tflite + model.card.json into ``out_dir`` atomically."""
    converters = {"keras": _from_keras, "savedmodel": _from_savedmodel, "onnx": _from_onnx, "tflite": _from_tflite}
    tflite_bytes, source_names, reference = converters[source_format](path, rollout)
    graph = TFLiteGraph.from_bytes(tflite_bytes, path)
    _check_builtin_only(graph, path)
    spec = infer_rollout(graph, rollout)  # a copy of the user's spec, normalisation included
    if reference is not None:
        _check_agreement(tflite_bytes, reference, source_format, path)
    card = ModelCard(name=name, source=source_label, source_format=source_format, tflite_path="",
                     tflite_sha256=graph.sha256, rollout=spec, layers=layer_table(graph, source_names),
                     extra=dict(extra or {}))
    return _write_atomically(out_dir, tflite_bytes, card)


def _write_atomically(out_dir: Path, tflite_bytes: bytes, card: ModelCard) -> CanonicalModel:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / "model.tflite").write_bytes(tflite_bytes)
        card.tflite_path = str(out_dir / "model.tflite")
        card.save(staging / "model.card.json")
        # If someone else finished the same model first (or wins the race to rename), theirs is equivalent.
        if not out_dir.exists():
            with contextlib.suppress(OSError):
                staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing left after a successful rename
    return open_canonical(out_dir)


# -- checks -------------------------------------------------------------------
def _check_builtin_only(graph: TFLiteGraph, path: Path) -> None:
    custom = sorted({op.opcode for op in graph.operators if op.opcode.startswith("CUSTOM:")})
    if custom:
        raise EdgeTQSError(f"{path} needs ops outside the TFLite builtin set: {', '.join(custom)}",
                           "boards run builtin-only runtimes: rewrite the model without these ops")
    if graph.num_subgraphs > 1:
        raise EdgeTQSError(f"{path} has control flow ({graph.num_subgraphs} subgraphs: WHILE/IF loops)",
                           "export a flat graph (e.g. Keras RNNs with unroll=True)")
    weights = [t for t in graph.tensors if t.is_constant and t.type_name in ("INT8", "INT4", "UINT8", "INT2")
               and t.quantization is not None]
    if weights:
        raise EdgeTQSError(f"{path} is already quantized ({weights[0].name} is {weights[0].type_name})",
                           "pass the float model; edgetqs plans the quantization itself")


def run_tflite(tflite: bytes | Path, window: np.ndarray) -> np.ndarray:
    """Run a canonical model on one input with the LiteRT interpreter (the board's runtime)."""
    from ai_edge_litert.interpreter import Interpreter

    content = tflite if isinstance(tflite, bytes) else Path(tflite).read_bytes()
    with quiet_stderr():  # LiteRT announces its XNNPACK delegate on fd 2
        interpreter = Interpreter(model_content=content, num_threads=1)
        interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(window, np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def _check_agreement(tflite_bytes: bytes, reference, source_format: str, path: Path) -> None:
    """``reference`` is (input, expected output) from the source framework."""
    window, expected = reference
    try:
        got = run_tflite(tflite_bytes, window)
    except Exception as exc:
        raise EdgeTQSError(f"the converted {path} does not run in LiteRT: {exc}",
                           "report this model; try exporting it with simpler ops") from exc
    expected = np.asarray(expected, np.float32).reshape(got.shape) if expected.size == got.size else expected
    if got.shape != expected.shape:
        raise EdgeTQSError(f"the converted {path} returns shape {got.shape}, the {source_format} source {expected.shape}",
                           "report this model; the converter changed its layout")
    error = float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-6))
    if error > AGREEMENT_TOLERANCE:
        raise EdgeTQSError(f"the converted {path} disagrees with its {source_format} source "
                           f"(max relative difference {error:.2e} > {AGREEMENT_TOLERANCE})",
                           "report this model; the conversion is not faithful")


def _random_window(shape) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# -- Keras and SavedModel -----------------------------------------------------
def _fixed_input_shape(shape, rollout: RolloutSpec | None, path: Path) -> list[int]:
    """[1, window, features] from a source input shape with None/-1 for unknown sizes."""
    dims = [None if d is None or d < 0 else int(d) for d in shape]
    if len(dims) != 3:
        raise EdgeTQSError(f"{path} takes input of rank {len(dims)} {shape}, not [batch, window, features]",
                           "export the forecaster with one [batch, window, features] input")
    if rollout is not None:
        dims[1], dims[2] = dims[1] or rollout.window, dims[2] or rollout.features
    if dims[1] is None or dims[2] is None:
        raise EdgeTQSError(f"cannot infer a rollout spec from {path}: its input shape {list(shape)} leaves the window "
                           "or feature count open", "pass --rollout window=W,features=F[,patch=P]")
    return [1, dims[1], dims[2]]


def _tflite_from_savedmodel_dir(saved_dir: Path, path: Path) -> bytes:
    tf = import_tensorflow_quietly()

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _quiet():
            return converter.convert()
    except Exception as exc:  # the converter raises ConverterError with the MLIR diagnostics
        flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", str(exc))))
        if flex:
            raise EdgeTQSError(f"{path} needs TensorFlow ops that are not TFLite builtins: {', '.join(flex)}",
                               "boards run builtin-only runtimes: replace these ops in the model") from exc
        raise EdgeTQSError(f"TFLite conversion of {path} failed: {str(exc).splitlines()[0][:300]}",
                           "simplify the model's ops or export it as ONNX") from exc


_KERNEL_NAMES = ("kernel", "embeddings", "depthwise_kernel")


def _keras_source_names(model) -> SourceNames:
    """Layer names, and each weight matrix with a readable unit name ('block_1_fc1',
    'block_1_attention/query'; a layer with several matrices names each: 'gru/kernel',
    'gru/recurrent_kernel')."""
    layers = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    paths = []
    for variable in model.weights:
        if len(variable.shape) < 2:
            continue  # biases and norms: they join their layer's main weight
        parts = variable.path.split("/")
        while len(parts) > 1 and parts[0] not in layers:
            parts = parts[1:]  # the model's own name scope
        parts = [p for p in parts if not p.endswith("_cell")]  # gru/gru_cell/kernel -> gru/kernel
        paths.append((parts, np.asarray(variable)))
    matrices_per_layer = Counter("/".join(parts[:-1]) for parts, _ in paths if "bias" not in parts[-1])
    weights = []
    for parts, values in paths:
        alone = matrices_per_layer["/".join(parts[:-1])] == 1
        if alone and len(parts) > 1 and parts[-1] in _KERNEL_NAMES:
            parts = parts[:-1]
        weights.append(("/".join(parts), values))
    return SourceNames(layers, weights)


def _from_keras(path: Path, rollout: RolloutSpec | None):
    tf = import_tensorflow_quietly()
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a readable Keras model ({type(exc).__name__}: {str(exc)[:200]})",
                           "pass a .keras file saved with model.save(), or another supported format") from exc
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeTQSError(f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs",
                           "an autoregressive forecaster needs exactly one input window and one output")
    shape = _fixed_input_shape(model.inputs[0].shape, rollout, path)
    window = _random_window(shape)
    expected = np.asarray(model(window, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        with _quiet():
            model.export(tmp, format="tf_saved_model", input_signature=[tf.TensorSpec(shape, tf.float32)], verbose=False)
        tflite = _tflite_from_savedmodel_dir(Path(tmp), path)
    return tflite, _keras_source_names(model), (window, expected)


def _from_savedmodel(path: Path, rollout: RolloutSpec | None):
    tf = import_tensorflow_quietly()

    try:
        with _quiet():
            loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a loadable SavedModel with a serving_default signature ({exc})",
                           "save it with tf.saved_model.save or model.export()") from exc
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1 or len(signature.structured_outputs) != 1:
        raise EdgeTQSError(f"{path} has {len(inputs)} inputs and {len(signature.structured_outputs)} outputs",
                           "an autoregressive forecaster needs exactly one input window and one output")
    input_name, spec = next(iter(inputs.items()))
    output_name = next(iter(signature.structured_outputs))
    shape = _fixed_input_shape(spec.shape.as_list(), rollout, path)
    window = _random_window(shape)
    expected = signature(**{input_name: tf.constant(window)})[output_name].numpy()

    # Re-export with a fixed batch-1 signature: the graph then needs no shape arithmetic.
    module = tf.Module()
    module.source = loaded
    module.serve = tf.function(lambda x: signature(**{input_name: x})[output_name],
                               input_signature=[tf.TensorSpec(shape, tf.float32)])
    with tempfile.TemporaryDirectory() as tmp:
        with _quiet():
            tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        tflite = _tflite_from_savedmodel_dir(Path(tmp), path)
    return tflite, None, (window, expected)


# -- ONNX ---------------------------------------------------------------------
def _onnx_input(path: Path):
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a readable ONNX model ({type(exc).__name__})",
                           f"pass an .onnx file exported by torch.onnx/tf2onnx, or a {SUPPORTED}") from exc
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise EdgeTQSError(f"{path} has {len(inputs)} inputs and {len(proto.graph.output)} outputs",
                           "export the forecaster with exactly one input window and one output")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return proto, inputs[0].name, dims


def _from_onnx(path: Path, rollout: RolloutSpec | None):
    import_tensorflow_quietly()  # onnx2tf imports it
    import onnxruntime

    proto, input_name, dims = _onnx_input(path)
    shape = _fixed_input_shape(dims, rollout, path)
    window = _random_window(shape)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        expected = session.run(None, {input_name: window})[0]
    except Exception as exc:
        raise EdgeTQSError(f"onnxruntime cannot run {path}: {str(exc).splitlines()[0][:300]}",
                           "export a valid ONNX model (opset 13-17 works well)") from exc
    with tempfile.TemporaryDirectory() as tmp:
        tflite_file = _run_onnx2tf(path, input_name, shape, Path(tmp))
        tflite = tflite_file.read_bytes()
    return tflite, _onnx_source_names(proto), (window, expected)


def _onnx_source_names(proto) -> SourceNames:
    """onnx2tf drops ONNX names; the initializers' names (torch module paths like
    'block_1_fc1.weight') or their consumers' node names ('/block_1_fc1/Gemm') say which layer is which."""
    from onnx import numpy_helper

    consumers = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, node.name)
    weights = []
    for initializer in proto.graph.initializer:
        if len(initializer.dims) < 2:
            continue
        name = re.sub(r"[._](weight|kernel)$", "", initializer.name)
        if name.startswith("onnx::") or not re.search(r"[A-Za-z]", name):  # anonymous: use the node's name
            node_path = [p for p in consumers.get(initializer.name, "").split("/") if p]
            name = "/".join(node_path[:-1]) or initializer.name
        weights.append((name, numpy_helper.to_array(initializer)))
    return SourceNames(set(), weights)


def _run_onnx2tf(path: Path, input_name: str, shape: list[int], out_dir: Path) -> Path:
    import onnx2tf

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), _quiet():
            onnx2tf.convert(
                input_onnx_file_path=str(path),
                output_folder_path=str(out_dir),
                # onnx2tf transposes 3-D inputs NCW -> NWC by default; ours already are [batch, window, features].
                keep_shape_absolutely_input_names=[input_name],
                overwrite_input_shape=[f"{input_name}:{','.join(map(str, shape))}"],
                copy_onnx_input_output_names_to_tflite=True,
                non_verbose=True,
                verbosity="error",
            )
    except BaseException as exc:  # onnx2tf calls sys.exit() on unsupported ops
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise EdgeTQSError(f"onnx2tf cannot convert {path}: {_onnx2tf_reason(log.getvalue(), exc)}",
                           "replace the unsupported op(s) in the source model and re-export the ONNX "
                           "(see https://github.com/PINTO0309/onnx2tf#supported-layers)") from None
    produced = sorted(out_dir.glob("*_float32.tflite"))
    if not produced:
        raise EdgeTQSError(f"onnx2tf produced no float32 .tflite for {path}: {_onnx2tf_reason(log.getvalue(), None)}",
                           "replace the unsupported op(s) in the source model and re-export the ONNX")
    return produced[0]


def _onnx2tf_reason(log: str, exc: BaseException | None) -> str:
    ops = sorted(set(re.findall(r"(\w+) OP is not (?:yet )?(?:implemented|supported)", log, re.I)))
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    lines = [ansi.sub("", line).strip() for line in log.splitlines() if "ERROR" in line or "Error" in line]
    if ops:
        return f"unsupported op(s) {', '.join(ops)}"
    if lines:
        return lines[0][:300]
    return f"{type(exc).__name__}: {exc}" if exc else "unknown reason"


# -- float TFLite -------------------------------------------------------------
def _from_tflite(path: Path, rollout: RolloutSpec | None):
    tflite = path.read_bytes()
    graph = TFLiteGraph.from_bytes(tflite, path)  # raises for a non-flatbuffer or truncated file
    try:
        run_tflite(tflite, np.zeros(graph.input_shapes()[0], np.float32))
    except Exception as exc:
        raise EdgeTQSError(f"{path} does not run in the LiteRT interpreter ({type(exc).__name__}: {str(exc)[:200]})",
                           "re-export the model; the file may be damaged") from exc
    return tflite, None, None  # nothing to compare against: the file is its own source


@contextlib.contextmanager
def quiet_stderr():
    """TensorFlow and the converters print straight to file descriptor 2 (CUDA
    probing, MLIR diagnostics we turn into EdgeTQSErrors anyway): keep that off
    the user's terminal. Python exceptions still propagate."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly():
    """Import TensorFlow (and Keras) without their start-up chatter on stderr."""
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def _quiet():
    """Conversion without TensorFlow's logs, on the Python side and on fd 2."""
    import logging

    previous = logging.getLogger("tensorflow").level
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        with quiet_stderr():
            yield
    finally:
        logging.getLogger("tensorflow").setLevel(previous)
