"""ONNX files (torch.onnx, tf2onnx), converted by onnx2tf."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec
from edgetqs.model.formats.base import Converted, fixed_input_shape, one_input_one_output, random_window
from edgetqs.model.layers import SourceNames
from edgetqs.model.quiet import import_tensorflow_quietly, quiet_tensorflow


def onnx_input(path: Path):
    """(the ONNX proto, its one input's name, that input's dims with None for symbolic ones)."""
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a readable ONNX model ({type(exc).__name__})",
                           "pass an .onnx file exported by torch.onnx or tf2onnx") from exc
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    one_input_one_output(path, len(inputs), len(proto.graph.output),
                         "export the forecaster with exactly one input window and one output")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    return proto, inputs[0].name, dims


def convert(path: Path, rollout: RolloutSpec | None) -> Converted:
    import_tensorflow_quietly()  # onnx2tf imports it
    import onnxruntime

    proto, input_name, dims = onnx_input(path)
    shape = fixed_input_shape(dims, rollout, path)
    window = random_window(shape)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        expected = session.run(None, {input_name: window})[0]
    except Exception as exc:
        raise EdgeTQSError(f"onnxruntime cannot run {path}: {str(exc).splitlines()[0][:300]}",
                           "export a valid ONNX model (opset 13-17 works well)") from exc
    with tempfile.TemporaryDirectory() as tmp:
        tflite = run_onnx2tf(path, input_name, shape, Path(tmp), _fix_for(proto)).read_bytes()
    return Converted(tflite, source_names(proto), (window, expected))


# ONNX ops onnx2tf 1.28 converts wrongly or not at all when torch exported them: its recurrent
# kernels fail (GRU: 'Output tensors of a Functional model must be the output of a Layer'; LSTM:
# 'initial_state ... not compatible with cell.state_size'), and it transposes attention's 4-D
# [batch, heads, seq, head_dim] tensors as if they were NCHW images (shape errors, or a model
# that runs and is 7-9% off). The same torch modules convert faithfully through litert-torch.
_TORCH_ROUTE_OPS = {"GRU", "LSTM", "RNN", "Softmax"}
TORCH_ROUTE = ("if the model comes from PyTorch, export it with torch.export and give edgetqs the .pt2 "
               "(torch.export.save(torch.export.export(model.eval(), (example,)), 'model.pt2')): litert-torch "
               "converts recurrent layers and attention faithfully")


def _fix_for(proto) -> str:
    ops = {node.op_type for node in proto.graph.node}
    found = sorted(ops & _TORCH_ROUTE_OPS)
    if found:
        return f"onnx2tf cannot convert {'/'.join(found)} reliably; {TORCH_ROUTE}"
    return ("replace the unsupported op(s) in the source model and re-export the ONNX "
            "(see https://github.com/PINTO0309/onnx2tf#supported-layers)")


def source_names(proto) -> SourceNames:
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


def run_onnx2tf(path: Path, input_name: str, shape: list[int], out_dir: Path, fix: str) -> Path:
    import onnx2tf

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), quiet_tensorflow():
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
        raise EdgeTQSError(f"onnx2tf cannot convert {path}: {_onnx2tf_reason(log.getvalue(), exc)}", fix) from None
    produced = sorted(out_dir.glob("*_float32.tflite"))
    if not produced:
        raise EdgeTQSError(f"onnx2tf produced no float32 .tflite for {path}: {_onnx2tf_reason(log.getvalue(), None)}",
                           fix)
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
