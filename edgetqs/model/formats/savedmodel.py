"""SavedModel directories (tf.saved_model.save, model.export, tf.function modules).

A recurrent layer left rolled inside a ``tf.function`` is a loop over TensorLists
whose element shape keeps the batch open (-1), which the TFLite converter cannot
lower to builtins. Intake fixes the batch to 1 anyway, so those element shapes are
set to batch 1 in the frozen graph; the converter then writes a WHILE loop with a
static trip count, which is flattened (model/flatten_while.py) and checked against
the SavedModel like every conversion.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import TFLITE_CONVERTER, TFLITE_CONVERTER_LOOP_FLATTENED, RolloutSpec
from edgetqs.model.flatten_while import flatten_while_loops
from edgetqs.model.formats.base import Converted, fixed_input_shape, one_input_one_output, random_window
from edgetqs.model.memory import LARGE_MODEL_BYTES
from edgetqs.model.quiet import import_tensorflow_quietly, quiet_tensorflow


class RecurrentLoopError(EdgeTQSError):
    """The TFLite converter met a rolled recurrent loop (TensorList ops) it cannot lower to builtins."""


def is_savedmodel_dir(path: Path) -> bool:
    return (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()


def tflite_from_savedmodel_dir(saved_dir: Path, path: Path, float_bytes: int = 0) -> bytes:
    """The TFLite converter on ``saved_dir``, builtin ops only; ``path`` names the user's source in errors.

    A model of ``float_bytes`` >= LARGE_MODEL_BYTES gets its buffers after the flatbuffer (offset +
    size, the layout AEQ writes for large models and LiteRT reads): the converter then does not grow
    a flatbuffer builder around the weights, which cut its own peak by ~2x the float bytes (resmlp-23m:
    660 -> 495 MiB above what was resident before it). TFLiteGraph reads both layouts as views."""
    tf = import_tensorflow_quietly()

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter._experimental_use_buffer_offset = float_bytes >= LARGE_MODEL_BYTES
    try:
        with quiet_tensorflow():
            return converter.convert()
    except Exception as exc:  # the converter raises ConverterError with the MLIR diagnostics
        flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", str(exc))))
        if any(op.startswith("TensorList") for op in flex):  # what a rolled RNN's loop lowers to
            raise RecurrentLoopError(f"{path} holds a recurrent loop ({', '.join(flex)}): its sequence length is not fixed "
                               "in the graph", "give edgetqs the Keras model (.keras: intake unrolls its recurrent "
                               "layers), or build them with unroll=True before saving") from exc
        if flex:
            raise EdgeTQSError(f"{path} needs TensorFlow ops that are not TFLite builtins: {', '.join(flex)}",
                               "boards run builtin-only runtimes: replace these ops in the model") from exc
        raise EdgeTQSError(f"TFLite conversion of {path} failed: {str(exc).splitlines()[0][:300]}",
                           "simplify the model's ops or export it as ONNX") from exc


def convert(path: Path, rollout: RolloutSpec | None) -> Converted:
    tf = import_tensorflow_quietly()

    try:
        with quiet_tensorflow():
            loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a loadable SavedModel with a serving_default signature ({exc})",
                           "save it with tf.saved_model.save or model.export()") from exc
    inputs = signature.structured_input_signature[1]
    one_input_one_output(path, len(inputs), len(signature.structured_outputs),
                         "an autoregressive forecaster needs exactly one input window and one output")
    input_name, spec = next(iter(inputs.items()))
    output_name = next(iter(signature.structured_outputs))
    shape = fixed_input_shape(spec.shape.as_list(), rollout, path)
    window = random_window(shape)
    expected = signature(**{input_name: tf.constant(window)})[output_name].numpy()

    # Re-export with a fixed batch-1 signature: the graph then needs no shape arithmetic.
    module = tf.Module()
    module.source = loaded
    module.serve = tf.function(lambda x: signature(**{input_name: x})[output_name],
                               input_signature=[tf.TensorSpec(shape, tf.float32)])
    with tempfile.TemporaryDirectory() as tmp:
        with quiet_tensorflow():
            tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        try:
            tflite = tflite_from_savedmodel_dir(Path(tmp), path)
        except RecurrentLoopError as refused:
            looped = _tflite_with_batch1_tensor_lists(module.serve.get_concrete_function())
            if looped is None:
                raise refused from None
            flat, trips = flatten_while_loops(looped, path)
            return Converted(flat, None, (window, expected), TFLITE_CONVERTER_LOOP_FLATTENED,
                             f"a rolled recurrent loop (TensorList ops): {len(trips)} WHILE loop(s) of "
                             f"{', '.join(map(str, trips))} steps once its element shapes are batch 1")
    return Converted(tflite, None, (window, expected), TFLITE_CONVERTER)


def _tflite_with_batch1_tensor_lists(function) -> bytes | None:
    """The TFLite converter on the frozen ``function`` (batch-1 signature) with every TensorList element
    shape that leaves the batch open (-1) set to batch 1, tensor-list ops lowered: a WHILE loop of
    builtins; None when the converter still fails."""
    tf = import_tensorflow_quietly()
    from tensorflow.python.framework import tensor_util
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with quiet_tensorflow():
        frozen = convert_variables_to_constants_v2(function, lower_control_flow=False)
        graph_def = frozen.graph.as_graph_def()
        for node in graph_def.node:
            if node.op == "Const" and node.name.endswith("/element_shape"):
                shape = tensor_util.MakeNdarray(node.attr["value"].tensor)
                if shape.ndim == 1 and len(shape) and shape[0] == -1:
                    shape = shape.copy()
                    shape[0] = 1
                    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(shape))
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        pruned = wrapped.prune(feeds=[wrapped.graph.get_tensor_by_name(frozen.inputs[0].name)],
                               fetches=[wrapped.graph.get_tensor_by_name(frozen.outputs[0].name)])
        converter = tf.lite.TFLiteConverter.from_concrete_functions([pruned])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter._experimental_lower_tensor_list_ops = True
        try:
            return converter.convert()
        except Exception:  # the converter's own diagnostics: the caller keeps its first refusal
            return None
