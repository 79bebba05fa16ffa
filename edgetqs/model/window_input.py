"""Sources whose input is not ``[batch, window, features]`` get that canonical
input through one op put in front of the graph, so everything after intake
(engine, quantizer, board runner) keeps one input layout:

- state-to-state models (``[batch, features]``, the window is one step): a
  RESHAPE from ``[1, 1, features]``;
- channel-first models (``[batch, features, window]``, declared by the rollout
  spec's ``input_layout``): a TRANSPOSE from ``[1, window, features]``.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils


def with_window_input(tflite: bytes) -> bytes:
    """``tflite`` whose one input [1, F] is fed from a new [1, 1, F] input through a RESHAPE."""
    return _feed_input(tflite, lambda shape: [1, 1, shape[-1]], schema.BuiltinOperator.RESHAPE,
                       lambda shape: np.array([1, shape[-1]], np.int32))


def with_channels_last_input(tflite: bytes) -> bytes:
    """``tflite`` whose one input [1, F, W] is fed from a new [1, W, F] input through a TRANSPOSE."""
    return _feed_input(tflite, lambda shape: [1, shape[2], shape[1]], schema.BuiltinOperator.TRANSPOSE,
                       lambda shape: np.array([0, 2, 1], np.int32))


def _feed_input(tflite: bytes, new_shape, builtin: int, operand) -> bytes:
    """A new graph input of ``new_shape(old shape)`` feeding the old input through ``builtin``(new, operand)."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    old_input = graph.inputs[0]
    old_shape = [int(d) for d in graph.tensors[old_input].shape]
    operand_tensor = _constant(model, graph, "window_input/operand", operand(old_shape))
    new_input = add_tensor(model, graph, "window", new_shape(old_shape), schema.TensorType.FLOAT32)
    feed = schema.OperatorT()
    feed.opcodeIndex = opcode_index(model, builtin)
    feed.inputs, feed.outputs = [new_input, operand_tensor], [old_input]
    graph.operators.insert(0, feed)
    graph.inputs = [new_input]
    for signature in model.signatureDefs or []:
        for item in signature.inputs:
            if item.tensorIndex == old_input:
                item.tensorIndex = new_input
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def add_tensor(model, graph, name: str, shape, type_code: int, data: bytes | None = None) -> int:
    """A new tensor of ``graph`` (a subgraph of ``model``), constant when ``data`` is given; its index."""
    buffer_index = 0  # activations share the empty buffer 0, as the TFLite converter writes them
    if data is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8)  # as ModelT holds the buffers it reads
        model.buffers.append(buffer)
        buffer_index = len(model.buffers) - 1
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), [int(d) for d in shape], type_code, buffer_index
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _constant(model, graph, name: str, values: np.ndarray) -> int:
    return add_tensor(model, graph, name, list(values.shape), schema.TensorType.INT32, values.tobytes())


def opcode_index(model, builtin: int) -> int:
    """The index of ``builtin`` in ``model``'s operator codes, added when missing."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
