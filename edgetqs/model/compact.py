"""Short tensor names for graphs with many ops (unrolled recurrent layers).

The TFLite converter names every activation tensor by all the TF ops fused
into it ('functional/gru_1/gru_cell_17/MatMul_7;functional/gru_1/add_7;...'):
in an unrolled recurrent layer those names were a third of the file — bytes
that then count against every plan's footprint. Outputs of weight-applying
ops keep the part that names that op (what unit names are read from, and
what the quantization recipe addresses); every other activation becomes
``t<index>``. Weight names and the graph's input/output names stay.
"""

from __future__ import annotations

from ai_edge_litert.tools import flatbuffer_utils

from edgetqs.model.layers import name_part


def compact_tensor_names(tflite: bytes) -> bytes:
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    for subgraph in model.subgraphs:
        constant = {i for i, t in enumerate(subgraph.tensors) if _has_data(model, t)}
        weighted_outputs = {out for op in subgraph.operators
                            if any(i in constant and len(subgraph.tensors[i].shape) >= 2 for i in op.inputs)
                            for out in op.outputs}
        keep = set(subgraph.inputs) | set(subgraph.outputs) | constant
        seen: dict[str, int] = {}
        for index, tensor in enumerate(subgraph.tensors):
            if index in keep:
                continue
            if index not in weighted_outputs:
                tensor.name = f"t{index}".encode()
                continue
            short = name_part(tensor.name.decode())
            seen[short] = seen.get(short, 0) + 1
            tensor.name = (short if seen[short] == 1 else f"{short}#{seen[short]}").encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _has_data(model, tensor) -> bool:
    data = model.buffers[tensor.buffer].data if 0 < tensor.buffer < len(model.buffers) else None
    return data is not None and len(data) > 0
