"""Imported by litert_torch_worker.py in the litert-torch venv (not by edgetqs): onnx2torch,
made to handle what torch.onnx writes for forecasters and to give graphs torch.export can trace.

onnx2torch 1.5.15 has no converters for the ONNX recurrent ops, so GRU, LSTM and RNN are
registered here as nn.GRU / nn.LSTM / nn.RNN built from the node's weights (litert-torch then
unrolls them into FULLY_CONNECTED steps that share one weight tensor). Its Squeeze/Unsqueeze
(opset 13+), Gather and Reshape read their axes/indices/shape from tensors at run time, which
torch.export cannot trace (data-dependent values); with the input shape fixed those are
constants, so they are baked into the module here. Anything else unsupported raises
NotImplementedError, which the worker reports.
"""

import sys
import types

import torch

# onnx2torch imports torchvision for its NMS and RoiAlign converters only (detection ops, never in a
# forecaster). The torchvision wheel the index has for torch 2.13 is a CUDA build that cannot load
# beside the CPU torch, so those two modules are left out instead of importing it.
for _name in ("nms", "roialign"):
    sys.modules.setdefault(f"onnx2torch.node_converters.{_name}", types.ModuleType(_name))

import onnx2torch  # noqa: E402
from onnx2torch.node_converters import registry  # noqa: E402
from onnx2torch.node_converters.squeeze import OnnxSqueezeStaticAxes  # noqa: E402
from onnx2torch.node_converters.unsqueeze import OnnxUnsqueezeStaticAxes  # noqa: E402
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult, get_const_value  # noqa: E402

# Gate blocks in ONNX order -> torch order: GRU z,r,h -> r,z,n; LSTM i,o,f,c -> i,f,g,o.
GATE_ORDER = {"GRU": [1, 0, 2], "LSTM": [0, 2, 3, 1], "RNN": [0]}
TORCH_CELL = {"GRU": torch.nn.GRU, "LSTM": torch.nn.LSTM, "RNN": torch.nn.RNN}
TORCH_ACTIVATIONS = {"GRU": [["Sigmoid", "Tanh"]], "LSTM": [["Sigmoid", "Tanh", "Tanh"]], "RNN": [["Tanh"], ["Relu"]]}


def to_torch(path: str) -> torch.nn.Module:
    """The ONNX model at ``path`` (static input shape) as a torch module litert-torch can convert."""
    module = onnx2torch.convert(path).eval()
    with torch.no_grad():  # litert-torch 0.10 reads non-contiguous weights (onnx2torch's transposed Gemm B) wrongly
        for tensor in list(module.parameters()) + list(module.buffers()):
            tensor.data = tensor.data.contiguous()
    return module


class OnnxRecurrent(torch.nn.Module, OnnxToTorchModule):
    """An ONNX GRU/LSTM/RNN node: X [seq, batch, in] (+ initial_h, initial_c) -> Y [seq, dirs, batch, hidden], Y_h (, Y_c)."""

    def __init__(self, cell: torch.nn.Module, has_h: bool, has_c: bool):
        super().__init__()
        self.cell, self.has_h, self.has_c = cell, has_h, has_c

    def forward(self, x, *state):
        directions = 2 if self.cell.bidirectional else 1
        zeros = x.new_zeros(directions, x.shape[1], self.cell.hidden_size)
        h = state[0] if self.has_h else zeros
        if isinstance(self.cell, torch.nn.LSTM):
            c = state[int(self.has_h)] if self.has_c else zeros
            y, (h_n, c_n) = self.cell(x, (h, c))
            last = (h_n, c_n)
        else:
            y, h_n = self.cell(x, h)
            last = (h_n,)
        y = y.reshape(x.shape[0], x.shape[1], directions, self.cell.hidden_size).transpose(1, 2)
        return (y,) + last


def _check_recurrent(op: str, inputs: list, attributes) -> None:
    """Refuse what torch's cells cannot express (torch.onnx never writes these)."""
    if inputs[4] or (op == "LSTM" and inputs[7]):
        raise NotImplementedError(f"{op} with sequence_lens or peepholes")
    if attributes.get("layout", 0) or attributes.get("clip") is not None or attributes.get("input_forget", 0):
        raise NotImplementedError(f"{op} with layout=1, clip or input_forget")
    if _activations(op, attributes) not in TORCH_ACTIVATIONS[op]:
        raise NotImplementedError(f"{op} with activations {attributes.get('activations')}")
    if op == "GRU" and attributes.get("linear_before_reset", 0) != 1:
        raise NotImplementedError("GRU with linear_before_reset=0 (torch's GRU applies the reset gate after the linear)")
    if _direction(attributes) == "reverse":
        raise NotImplementedError(f"{op} with direction=reverse")


def _direction(attributes) -> str:
    return _text(attributes.get("direction", "forward"))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _activations(op: str, attributes) -> list[str]:
    """One direction's activations (ONNX repeats them per direction); the default when none are given."""
    given = [_text(a) for a in attributes.get("activations", [])]
    if not given:
        return TORCH_ACTIVATIONS[op][0]
    first = given[: len(given) // (2 if _direction(attributes) == "bidirectional" else 1)]
    return first if given == first * (len(given) // max(len(first), 1)) else given


def _torch_gates(weights: torch.Tensor, op: str) -> torch.Tensor:
    blocks = torch.chunk(weights, len(GATE_ORDER[op]), dim=0)
    return torch.cat([blocks[i] for i in GATE_ORDER[op]], dim=0)


def _recurrent(node, graph) -> OperationConverterResult:
    op, attributes = node.operation_type, node.attributes
    inputs = list(node.input_values) + [""] * 8  # optional inputs may be missing or ''
    _check_recurrent(op, inputs, attributes)
    w, r = (graph.initializers[name].to_torch() for name in inputs[1:3])  # [dirs, gates*hidden, in|hidden]
    b = graph.initializers[inputs[3]].to_torch() if inputs[3] else torch.zeros(w.shape[0], 2 * w.shape[1])
    options = {"nonlinearity": _activations(op, attributes)[0].lower()} if op == "RNN" else {}
    cell = TORCH_CELL[op](w.shape[2], attributes["hidden_size"], bidirectional=_direction(attributes) == "bidirectional",
                          **options)
    with torch.no_grad():
        for d, suffix in enumerate(["_l0", "_l0_reverse"][: w.shape[0]]):
            input_bias, recurrent_bias = torch.chunk(b[d], 2)
            for name, values in (("weight_ih", w[d]), ("weight_hh", r[d]), ("bias_ih", input_bias),
                                 ("bias_hh", recurrent_bias)):
                getattr(cell, name + suffix).copy_(_torch_gates(values, op))
    has_h, has_c = bool(inputs[5]), op == "LSTM" and bool(inputs[6])
    mapped = (inputs[0],) + ((inputs[5],) if has_h else ()) + ((inputs[6],) if has_c else ())
    return OperationConverterResult(OnnxRecurrent(cell, has_h, has_c), OnnxMapping(mapped, tuple(node.output_values)))


class ConstantGather(torch.nn.Module, OnnxToTorchModule):
    def __init__(self, axis: int, indices):
        super().__init__()
        self.axis, self.indices = axis, indices  # a Python int, or nested lists

    def forward(self, x):
        axis = self.axis % x.dim()
        if isinstance(self.indices, int):
            return x.select(axis, self.indices % x.shape[axis])
        indices = torch.tensor(self.indices, dtype=torch.long)
        picked = torch.index_select(x, axis, indices.reshape(-1) % x.shape[axis])
        return picked.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])


class ConstantReshape(torch.nn.Module, OnnxToTorchModule):
    def __init__(self, shape: list):
        super().__init__()
        self.shape = shape

    def forward(self, x):  # ONNX Reshape: 0 keeps that dimension (allowzero=0), -1 is inferred
        return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])


def _constant(node, graph, index: int):
    """The value of the node's ``index``-th input as Python numbers, or None when it is computed at run time."""
    names = node.input_values
    if len(names) <= index or not names[index]:
        return None
    try:
        return get_const_value(names[index], graph).tolist()
    except KeyError:
        return None


def _first_input_only(module, node) -> OperationConverterResult:
    return OperationConverterResult(module, OnnxMapping((node.input_values[0],), tuple(node.output_values)))


def _with_constant_input(op: str, version: int, make):
    """Replace onnx2torch's converter for (op, version) by ``make(node, value)`` when input 1 is a constant."""
    key = registry.OperationDescription(registry.defs.ONNX_DOMAIN, op, version)
    original = registry._CONVERTER_REGISTRY[key]  # no public way to override a registered converter

    def convert(node, graph):
        value = _constant(node, graph, 1)
        if value is None or (op == "Reshape" and node.attributes.get("allowzero", 0)):
            return original(node, graph)
        return _first_input_only(make(node, value), node)

    registry._CONVERTER_REGISTRY[key] = convert


# The opset versions each op's schema changed at (onnx2torch looks converters up by those).
for _version in (7, 14, 22):
    for _op in TORCH_CELL:
        registry.add_converter(operation_type=_op, version=_version)(_recurrent)
for _version in (13, 21):
    _with_constant_input("Squeeze", _version, lambda node, axes: OnnxSqueezeStaticAxes(axes))
_with_constant_input("Unsqueeze", 13, lambda node, axes: OnnxUnsqueezeStaticAxes(axes))
for _version in (1, 11, 13):
    _with_constant_input("Gather", _version, lambda node, indices: ConstantGather(node.attributes.get("axis", 0), indices))
for _version in (5, 13, 14):
    _with_constant_input("Reshape", _version, lambda node, shape: ConstantReshape(shape))
