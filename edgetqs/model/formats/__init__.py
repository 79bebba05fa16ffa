"""The intake table: every source format edgetqs reads, how it is recognised
and which module converts it to float TFLite.

Adding a format is one module here (``convert(path, rollout) -> Converted``)
plus one row in ``FORMATS``. TensorFlow's conversions run in a child process
for large models (tf_child.py says when and why).
"""

from __future__ import annotations

from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.model.formats import keras, onnx, pytorch, savedmodel, tflite
from edgetqs.model.formats.base import Converted, SourceFormat
from edgetqs.model.formats.tf_child import in_child

FORMATS: dict[str, SourceFormat] = {f.name: f for f in (
    SourceFormat("keras", ".keras", (".keras",), in_child(keras.convert)),
    SourceFormat("savedmodel", "SavedModel directory", (), in_child(savedmodel.convert), savedmodel.is_savedmodel_dir),
    SourceFormat("onnx", ".onnx", (".onnx",), onnx.convert),
    SourceFormat("pytorch", ".pt2 (torch.export)", (".pt2",), pytorch.convert),
    SourceFormat("tflite", "float .tflite", (".tflite",), tflite.convert),
)}

SUPPORTED = ", ".join(f.label for f in list(FORMATS.values())[:-1]) + f" or {list(FORMATS.values())[-1].label}"

__all__ = ["FORMATS", "SUPPORTED", "Converted", "SourceFormat", "detect_format"]


def detect_format(path: Path) -> str:
    """The name of ``path``'s format in ``FORMATS``, or an error that says what edgetqs reads."""
    if not path.exists():
        raise EdgeTQSError(f"no such model: {path}",
                           f"check the path; edgetqs reads a {SUPPORTED}, or zoo:NAME (`edgetqs zoo` lists them)")
    if path.is_dir():
        for source_format in FORMATS.values():
            if source_format.is_directory_of_this_format and source_format.is_directory_of_this_format(path):
                return source_format.name
        raise EdgeTQSError(f"{path} is a directory but not a SavedModel (no saved_model.pb)",
                           f"pass a SavedModel directory or a {SUPPORTED} file")
    for source_format in FORMATS.values():
        if path.suffix.lower() in source_format.suffixes:
            return source_format.name
    raise EdgeTQSError(f"{path} is not a model edgetqs can read (unknown extension '{path.suffix}')",
                       f"pass a {SUPPORTED}")
