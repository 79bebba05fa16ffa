"""State-to-state models (input ``[batch, features]``, the window is one step)
get the canonical ``[1, 1, features]`` input: a RESHAPE to the model's own
``[1, features]`` is put in front of the graph, so everything after intake
(engine, quantizer, board runner) keeps its one input layout.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils


def with_window_input(tflite: bytes) -> bytes:
    """``tflite`` whose one input [1, F] is fed from a new [1, 1, F] input through a RESHAPE."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    graph = model.subgraphs[0]
    old_input = graph.inputs[0]
    features = int(graph.tensors[old_input].shape[-1])
    shape_tensor = _constant(model, graph, "window_input/shape", np.array([1, features], np.int32))
    new_input = _tensor(model, graph, "window", [1, 1, features], schema.TensorType.FLOAT32)
    reshape = schema.OperatorT()
    reshape.opcodeIndex = _opcode(model, schema.BuiltinOperator.RESHAPE)
    reshape.inputs, reshape.outputs = [new_input, shape_tensor], [old_input]
    graph.operators.insert(0, reshape)
    graph.inputs = [new_input]
    for signature in model.signatureDefs or []:
        for item in signature.inputs:
            if item.tensorIndex == old_input:
                item.tensorIndex = new_input
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _tensor(model, graph, name: str, shape: list[int], type_code: int, data: bytes | None = None) -> int:
    buffer_index = 0  # activations share the empty buffer 0, as the TFLite converter writes them
    if data is not None:
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        buffer_index = len(model.buffers) - 1
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, type_code, buffer_index
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _constant(model, graph, name: str, values: np.ndarray) -> int:
    return _tensor(model, graph, name, list(values.shape), schema.TensorType.INT32, values.tobytes())


def _opcode(model, builtin: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
