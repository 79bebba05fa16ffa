"""ONNX files (torch.onnx, tf2onnx), converted by onnx2tf, or, for what onnx2tf converts wrongly,
through PyTorch: onnx2torch then litert-torch (in litert-torch's venv). Either way the result is
checked against onnxruntime running the ONNX file itself."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import ONNX2TF, ONNX2TORCH, RolloutSpec
from edgetqs.model.formats.base import (AGREEMENT_TOLERANCE, Converted, fixed_input_shape, one_input_one_output,
                                        random_window, relative_difference)
from edgetqs.model.formats.pytorch import run_litert_torch
from edgetqs.model.layers import SourceNames
from edgetqs.model.litert import run_tflite
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

    proto, input_name, dims = onnx_input(path)
    shape = fixed_input_shape(dims, rollout, path)
    window = random_window(shape)
    expected = _run_onnxruntime(path, input_name, window)
    with tempfile.TemporaryDirectory() as tmp:
        if _torch_route_ops(proto):
            tflite = via_torch(proto, input_name, shape, Path(tmp), path)
            route, note = ONNX2TORCH, (f"it has {', '.join(_torch_route_ops(proto))} nodes, which onnx2tf 1.28 "
                                       "converts wrongly or not at all")
        else:
            tflite, route, note = _onnx2tf_else_torch(path, proto, input_name, shape, Path(tmp), (window, expected))
    return Converted(tflite, source_names(proto), (window, expected), route, note)


def _run_onnxruntime(path: Path, input_name: str, window: np.ndarray) -> np.ndarray:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {input_name: window})[0]
    except Exception as exc:
        raise EdgeTQSError(f"onnxruntime cannot run {path}: {str(exc).splitlines()[0][:300]}",
                           "export a valid ONNX model (opset 13-17 works well)") from exc


# ONNX ops onnx2tf 1.28 converts wrongly or not at all when torch exported them: its recurrent
# kernels fail (GRU: 'Output tensors of a Functional model must be the output of a Layer'; LSTM:
# 'initial_state ... not compatible with cell.state_size'), and it transposes attention's 4-D
# [batch, heads, seq, head_dim] tensors as if they were NCHW images (shape errors, or a model
# that runs and is 7-9% off). Models with them go through PyTorch instead (via_torch): onnx2torch
# rebuilds the graph as torch modules (nn.GRU/nn.LSTM/nn.RNN for the recurrent nodes) and
# litert-torch, which converts those faithfully (it unrolls recurrent cells over the fixed window),
# makes the .tflite. Feeding onnx2tf's Keras output to the Keras intake instead does not work: asked
# for it (output_keras_v3), onnx2tf 1.28.8 fails on all three torch.onnx models of
# benchmarks/foreign_models.py before writing one (GRU, LSTM: the Functional-model error above;
# the encoder: a shape error in attention's Mul).
_RECURRENT_OPS = {"GRU", "LSTM", "RNN"}
_TORCH_ROUTE_OPS = _RECURRENT_OPS | {"Softmax"}
TORCH_ROUTE = ("if the model comes from PyTorch, export it with torch.export and give edgetqs the .pt2 "
               "(torch.export.save(torch.export.export(model.eval(), (example,)), 'model.pt2')): litert-torch "
               "converts it without the ONNX detour")
DISAGREES_FIX = f"report this model; {TORCH_ROUTE}"


def _torch_route_ops(proto) -> list[str]:
    return sorted({node.op_type for node in proto.graph.node} & _TORCH_ROUTE_OPS)


def _onnx2tf_else_torch(path: Path, proto, input_name: str, shape: list[int], tmp: Path,
                        reference) -> tuple[bytes, str, str]:
    """onnx2tf's conversion if it succeeds and agrees with onnxruntime (``reference``: the seeded window and
    onnxruntime's output), else the PyTorch route's (a model onnx2tf misconverts in a way _TORCH_ROUTE_OPS misses);
    with the route taken and, for the PyTorch route, why onnx2tf's was not kept."""
    window, expected = reference
    try:
        tflite = run_onnx2tf(path, input_name, shape, tmp / "onnx2tf", ONNX2TF_FIX).read_bytes()
        got = run_tflite(tflite, window)
        error = relative_difference(got.reshape(expected.shape), expected) if got.size == expected.size else np.inf
        if error <= AGREEMENT_TOLERANCE:
            return tflite, ONNX2TF, ""
        onnx2tf_problem = f"onnx2tf's conversion of {path} disagrees with onnxruntime (max relative difference {error:.2e})"
    except EdgeTQSError as exc:
        onnx2tf_problem = exc.problem
    try:
        return via_torch(proto, input_name, shape, tmp, path), ONNX2TORCH, onnx2tf_problem
    except EdgeTQSError as exc:
        raise EdgeTQSError(f"{onnx2tf_problem}; through PyTorch: {exc.problem}", exc.fix) from None


def via_torch(proto, input_name: str, shape: list[int], tmp: Path, path: Path) -> bytes:
    """ONNX -> torch (onnx2torch) -> .tflite (litert-torch), both in litert-torch's venv. The graph is first
    simplified at the fixed input shape (onnxsim, as onnx2tf does): shape arithmetic such as the
    Shape -> Expand that builds an RNN's zero initial state becomes constants torch.export can trace."""
    import onnx
    import onnxsim

    try:
        simplified, _ = onnxsim.simplify(proto, overwrite_input_shapes={input_name: shape})
    except Exception as exc:
        raise EdgeTQSError(f"onnxsim cannot fold {path} at input shape {shape}: {str(exc).splitlines()[0][:300]}",
                           "export the ONNX model with a static [1, window, features] input") from exc
    static = tmp / "static.onnx"
    onnx.save(simplified, str(static))
    try:
        return run_litert_torch(static, tmp / "torch-route.tflite", shape,
                                "replace the op(s) onnx2torch or litert-torch do not convert and re-export the ONNX; "
                                + TORCH_ROUTE)
    except EdgeTQSError as exc:  # name the user's file, not the simplified copy
        raise EdgeTQSError(exc.problem.replace(str(static), f"{path} (as torch modules, by onnx2torch)"), exc.fix) from None


ONNX2TF_FIX = ("replace the unsupported op(s) in the source model and re-export the ONNX "
               "(see https://github.com/PINTO0309/onnx2tf#supported-layers)")


# ONNX's names for a recurrent node's weight inputs (input kernel, recurrent kernel): torch.onnx leaves
# them anonymous ('onnx::GRU_105'), so 'rnn/W' and 'rnn/R' say which is which.
_RECURRENT_INPUTS = {1: "W", 2: "R"}


def source_names(proto) -> SourceNames:
    """onnx2tf drops ONNX names; the initializers' names (torch module paths like
    'block_1_fc1.weight') or their consumers' node names ('/block_1_fc1/Gemm') say which layer is which."""
    from onnx import numpy_helper

    consumers = {}
    for node in proto.graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, (node, position))

    def weights():  # one array at a time: SourceNames keeps a signature of each, not a copy
        for initializer in proto.graph.initializer:
            if len(initializer.dims) < 2:
                continue
            name = re.sub(r"[._](weight|kernel)$", "", initializer.name)
            if name.startswith("onnx::") or not re.search(r"[A-Za-z]", name):  # anonymous: use the node's name
                name = _name_from_consumer(*consumers.get(initializer.name, (None, 0))) or initializer.name
            yield name, numpy_helper.to_array(initializer)

    return SourceNames(set(), weights())


def _name_from_consumer(node, position: int) -> str:
    """'/rnn/GRU' reading it as W -> 'rnn/W'; '/block_1_fc1/Gemm' -> 'block_1_fc1'."""
    if node is None:
        return ""
    path = "/".join(p for p in node.name.split("/")[:-1] if p)
    if node.op_type in _RECURRENT_OPS and position in _RECURRENT_INPUTS:
        return "/".join(p for p in (path, _RECURRENT_INPUTS[position]) if p)
    return path


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
