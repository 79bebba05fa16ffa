"""SavedModel directories (tf.saved_model.save, model.export, tf.function modules)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import TFLITE_CONVERTER, RolloutSpec
from edgetqs.model.formats.base import Converted, fixed_input_shape, one_input_one_output, random_window
from edgetqs.model.quiet import import_tensorflow_quietly, quiet_tensorflow


def is_savedmodel_dir(path: Path) -> bool:
    return (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()


def tflite_from_savedmodel_dir(saved_dir: Path, path: Path) -> bytes:
    """The TFLite converter on ``saved_dir``, builtin ops only; ``path`` names the user's source in errors."""
    tf = import_tensorflow_quietly()

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with quiet_tensorflow():
            return converter.convert()
    except Exception as exc:  # the converter raises ConverterError with the MLIR diagnostics
        flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", str(exc))))
        if any(op.startswith("TensorList") for op in flex):  # what a rolled RNN's loop lowers to
            raise EdgeTQSError(f"{path} holds a recurrent loop ({', '.join(flex)}): its sequence length is not fixed "
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
        tflite = tflite_from_savedmodel_dir(Path(tmp), path)
    return Converted(tflite, None, (window, expected), TFLITE_CONVERTER)
