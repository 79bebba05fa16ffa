"""Read a .tflite flatbuffer into a plain, typed view of its main subgraph.

Everything downstream (model cards, the rollout engine, byte costs, converter
verification, black-box weight patching) reads models through this one module,
so flatbuffer details stay here. Parsing uses LiteRT's own generated schema
(``ai_edge_litert.schema_py_generated`` via ``flatbuffer_utils``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from edgetqs.errors import EdgeTQSError
from edgetqs.model.buffer_layout import stored_after_flatbuffer

# TFLite TensorType code -> (name, numpy dtype or None when numpy has no such type).
_TENSOR_TYPES: dict[int, tuple[str, object]] = {}
for _name, _code in vars(schema.TensorType).items():
    if not _name.startswith("_"):
        _TENSOR_TYPES[_code] = (_name, None)
for _name, _dtype in {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64,
    "INT32": np.int32, "INT64": np.int64, "INT16": np.int16, "INT8": np.int8,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "BOOL": np.bool_,
}.items():
    _TENSOR_TYPES[getattr(schema.TensorType, _name)] = (_name, _dtype)

_OPCODE_NAMES = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}

TFLITE_MAGIC = b"TFL3"


@dataclass
class Quantization:
    scales: np.ndarray
    zero_points: np.ndarray
    axis: int
    # Blockwise quantization keeps its scales in another tensor (FLOAT16
    # [rows, cols / block_size]); then ``scales`` is empty.
    block_size: int = 0
    scales_tensor: int = -1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str  # FLOAT32, INT8, INT4, ...
    buffer_index: int
    data: np.ndarray | None  # raw constant contents (packed bytes for INT4/INT2), None if not constant
    quantization: Quantization | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Operator:
    index: int
    opcode: str  # builtin name, e.g. FULLY_CONNECTED; custom ops: "CUSTOM:<code>"
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    options: object | None  # the schema's *OptionsT object for this op, if any
    subgraph_refs: list[int] = field(default_factory=list)  # WHILE/IF bodies, unused by the engine


class TFLiteGraph:
    """The main subgraph of a .tflite model: tensors, operators, inputs, outputs."""

    def __init__(self, model: schema.ModelT, path: Path | None, raw: bytes):
        self.model = model
        self.path = path
        # The model's bytes; every constant is a view into them. Loaded from a file they are
        # ``bytes``, which LiteRT's interpreter and AEQ read in place: pass them, not the path.
        self.content = raw
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.size_bytes = len(raw)
        subgraph = model.subgraphs[0]
        self.tensors = [self._read_tensor(i, t, raw) for i, t in enumerate(subgraph.tensors)]
        self.operators = [self._read_operator(i, op) for i, op in enumerate(subgraph.operators)]
        self.inputs = list(subgraph.inputs)
        self.outputs = list(subgraph.outputs)
        self.num_subgraphs = len(model.subgraphs)

    # -- loading -----------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "TFLiteGraph":
        path = Path(path)
        if not path.exists():
            raise EdgeTQSError(f"no such model file: {path}", "check the path (or use zoo:NAME; `edgetqs zoo` lists them)")
        # Read once, as immutable bytes: the flatbuffer reader keeps them, and so can an interpreter.
        return cls.from_bytes(path.read_bytes(), path)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray, path: Path | None = None) -> "TFLiteGraph":
        where = str(path) if path else "the model bytes"
        if len(raw) < 8 or raw[4:8] != TFLITE_MAGIC:
            raise EdgeTQSError(
                f"{where} is not a TFLite flatbuffer (no 'TFL3' identifier)",
                "pass a .tflite produced by the TFLite/LiteRT converter, or a .keras, SavedModel or .onnx model",
            )
        try:
            # Read in place, through a memoryview: inline buffers come back as numpy views of ``raw``, buffers
            # stored after the flatbuffer (AEQ's and the converter's large-model layout) as memoryview slices,
            # not copies. (bytearray(raw) was a second float copy of the whole model; nothing writes through ModelT.)
            model = flatbuffer_utils.read_model_from_bytearray(memoryview(raw))
            for buf in model.buffers:
                if isinstance(buf.data, memoryview):  # numpy, as inline buffers: ModelT.Pack and deepcopy need it
                    buf.data = np.frombuffer(buf.data, np.uint8)
            return cls(model, path, raw)
        except EdgeTQSError:
            raise
        except Exception as exc:  # the flatbuffer runtime raises many types on truncation
            raise EdgeTQSError(
                f"{where} is a damaged .tflite (truncated or corrupt: {type(exc).__name__}: {exc})",
                "re-export or re-download the model; the file on disk is incomplete",
            ) from exc

    def _read_tensor(self, index: int, t, raw: bytes) -> Tensor:
        type_name, dtype = _TENSOR_TYPES.get(t.type, (f"TYPE{t.type}", None))
        shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        data = self._buffer_bytes(t.buffer, raw)
        if data is not None:
            if dtype is not None and type_name not in ("INT4", "INT2"):
                expected = int(np.prod(shape)) * np.dtype(dtype).itemsize if shape else np.dtype(dtype).itemsize
                if len(data) < expected:
                    raise EdgeTQSError(
                        f"tensor '{name}' has {len(data)} bytes of data, its shape needs {expected}",
                        "the .tflite is truncated or corrupt; re-export it",
                    )
                data = data[:expected].view(dtype).reshape(shape)
            else:
                data = np.frombuffer(data, dtype=np.uint8)  # packed sub-byte values: decode with the quantization
        return Tensor(index, name, shape, type_name, int(t.buffer), data, self._read_quantization(t.quantization))

    @staticmethod
    def _read_quantization(q) -> Quantization | None:
        if q is None:
            return None
        if q.detailsType == schema.QuantizationDetails.BlockwiseQuantization and q.details is not None:
            empty = np.zeros(0, np.float32)
            return Quantization(empty, empty.astype(np.int64), int(q.quantizedDimension),
                                int(q.details.blockSize), int(q.details.scales))
        if q.scale is not None and len(q.scale) > 0:
            zp = q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale), np.int64)
            return Quantization(np.asarray(q.scale, np.float32), np.asarray(zp, np.int64), int(q.quantizedDimension))
        return None

    def _buffer_bytes(self, buffer_index: int, raw: bytes) -> np.ndarray | None:
        """A constant's bytes as a read-only uint8 view of the model's one in-memory copy.

        (Copying every buffer doubled a 400 MB model's footprint.) Read-only:
        ``float_constant`` hands out copies; the engine shares these views.
        """
        if buffer_index <= 0 or buffer_index >= len(self.model.buffers):
            return None
        buf = self.model.buffers[buffer_index]
        if buf.data is not None and len(buf.data) > 0:
            view = np.frombuffer(buf.data, dtype=np.uint8)  # a view, never a copy
        elif stored_after_flatbuffer(getattr(buf, "offset", 0) or 0):  # large models keep buffers there
            view = np.frombuffer(raw, np.uint8, count=buf.size, offset=buf.offset)
        else:
            return None
        view.flags.writeable = False
        return view

    def _read_operator(self, index: int, op) -> Operator:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = flatbuffer_utils.get_builtin_code_from_operator_code(code)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            opcode = f"CUSTOM:{custom}"
        else:
            opcode = _OPCODE_NAMES.get(builtin, f"BUILTIN{builtin}")
        inputs = [int(i) for i in op.inputs] if op.inputs is not None else []
        outputs = [int(i) for i in op.outputs] if op.outputs is not None else []
        return Operator(index, opcode, inputs, outputs, op.builtinOptions)

    # -- queries -----------------------------------------------------------
    def tensor_by_name(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise EdgeTQSError(f"the model has no tensor named '{name}'", "list tensors with `edgetqs inspect MODEL`")

    def float_constant(self, tensor: Tensor) -> np.ndarray:
        """A constant tensor as float32 (fp16 widened; int8 dequantized with its scales)."""
        if tensor.data is None:
            raise EdgeTQSError(f"tensor '{tensor.name}' is not a constant", "pick a weight tensor")
        if tensor.type_name in ("FLOAT32", "FLOAT16", "FLOAT64"):
            return tensor.data.astype(np.float32)
        if tensor.type_name in ("INT4", "INT2", "INT8") and tensor.quantization is not None:
            return self._dequantize_low_bit(tensor)
        if tensor.type_name in ("INT8", "UINT8", "INT16", "INT32") and tensor.quantization is not None:
            return _affine_dequantize(tensor.data.astype(np.float32), tensor)
        if tensor.type_name in ("INT32", "INT64", "INT16", "INT8", "UINT8", "BOOL"):
            return tensor.data.astype(np.float32)
        raise EdgeTQSError(
            f"tensor '{tensor.name}' has type {tensor.type_name}, which edgetqs cannot read as float",
            "use a float model as input",
        )

    def integer_values(self, tensor: Tensor) -> np.ndarray:
        """The stored integers of a quantized constant, unpacked (INT4/INT2 hold 2/4 per byte)."""
        if tensor.type_name not in ("INT4", "INT2"):
            return tensor.data.astype(np.int32)
        bits = 4 if tensor.type_name == "INT4" else 2
        per_byte = 8 // bits
        packed = tensor.data.astype(np.uint8)
        # Value i sits in byte i // per_byte at bit offset (i % per_byte) * bits (low bits first).
        parts = [(packed >> (k * bits)) & ((1 << bits) - 1) for k in range(per_byte)]
        values = np.stack(parts, axis=1).reshape(-1)[: tensor.num_elements].astype(np.int32)
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)  # sign-extend
        return values.reshape(tensor.shape)

    def _dequantize_low_bit(self, tensor: Tensor) -> np.ndarray:
        q = tensor.quantization
        values = self.integer_values(tensor).astype(np.float32)
        if q.block_size:
            # Blockwise: one scale per `block_size` consecutive values (row-major), zero point 0.
            scales = self.tensors[q.scales_tensor].data.astype(np.float32)
            blocks = values.reshape(scales.size, -1) * scales.reshape(-1, 1)
            return blocks.reshape(tensor.shape)
        return _affine_dequantize(values, tensor)

    def producers(self) -> dict[int, Operator]:
        """Tensor index -> the operator that writes it."""
        return {out: op for op in self.operators for out in op.outputs}

    def consumers(self) -> dict[int, list[Operator]]:
        """Tensor index -> operators that read it."""
        result: dict[int, list[Operator]] = {}
        for op in self.operators:
            for i in op.inputs:
                if i >= 0:
                    result.setdefault(i, []).append(op)
        return result

    def input_shapes(self) -> list[tuple[int, ...]]:
        return [self.tensors[i].shape for i in self.inputs]

    def output_shapes(self) -> list[tuple[int, ...]]:
        return [self.tensors[i].shape for i in self.outputs]


def _affine_dequantize(values: np.ndarray, tensor: Tensor) -> np.ndarray:
    """(values - zero point) * scale, per channel along the quantized axis when there are several scales."""
    q = tensor.quantization
    shape = [1] * len(tensor.shape)
    if len(q.scales) > 1:
        shape[q.axis] = len(q.scales)
    scale = q.scales.reshape(shape) if len(q.scales) > 1 else q.scales[0]
    zp = q.zero_points.reshape(shape) if len(q.zero_points) > 1 else q.zero_points[0]
    return ((values - zp) * scale).astype(np.float32)


def replace_constants(graph: TFLiteGraph, new_values: dict[str, np.ndarray]) -> bytes:
    """Serialise a copy of the model with some float constant tensors replaced.

    This is the black-box path's way of perturbing weights: the flatbuffer is
    rewritten with new buffer contents (same shape and type), nothing else.
    """
    import copy

    model = copy.deepcopy(graph.model)
    for name, value in new_values.items():
        tensor = graph.tensor_by_name(name)
        if tensor.type_name != "FLOAT32":
            raise EdgeTQSError(f"tensor '{name}' is {tensor.type_name}, not FLOAT32", "perturb only float weights")
        value = np.array(value, dtype=np.float32, order="C")  # ascontiguousarray would turn a 0-d scalar 1-d
        if value.shape != tensor.shape:
            raise EdgeTQSError(f"new value for '{name}' has shape {value.shape}, expected {tensor.shape}", "keep the shape")
        model.buffers[tensor.buffer_index].data = np.frombuffer(value.tobytes(), dtype=np.uint8)
        model.buffers[tensor.buffer_index].offset = 0
        model.buffers[tensor.buffer_index].size = 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
