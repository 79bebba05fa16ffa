"""WHILE loops with a static trip count, copied step by step into the main subgraph.

A rolled recurrent layer converted by the TFLite converter (Keras ``unroll=False``,
a ``tf.function`` holding one) is a WHILE op whose cond subgraph compares loop
counters that start from constants with constant limits, and whose body reads
step ``t`` of the sequence with a GATHER by the counter. The window is fixed,
so the trip count is fixed too: it is read by running the counters' part of the
cond and body subgraphs in numpy on the constant start values. Every iteration
then becomes one copy of the body's ops in the main subgraph, the loop state
threaded from one copy to the next, every op that only computes counters
dropped and what it computed (the GATHER's index) written as a constant of that
step. Each body constant (a kernel) becomes ONE main-subgraph tensor that every
copy reads: the planner prices, and the quantizer quantizes, each weight once.
The flat graph is then run once in LiteRT to give every step's tensors their
shapes and fold the first step's ops on the constant initial state, and the
steps' GATHERs become one UNPACK of the sequence and a sequence output's
per-step list writes one CONCATENATION: what the TFLite converter writes for a
layer it unrolls itself, and less graph for every plan's footprint to carry.

A loop whose trip count depends on the input, or whose counters are computed by
ops other than integer arithmetic and comparisons, is refused with how to
re-export the model flat. The caller checks the flat model against the original
file run in LiteRT.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from edgetqs.errors import EdgeTQSError
from edgetqs.model.compact import compact_tensor_names
from edgetqs.model.tflite_graph import _OPCODE_NAMES, _TENSOR_TYPES
from edgetqs.model.window_input import add_tensor, opcode_index

RE_EXPORT_FLAT = ("give edgetqs the source model instead (.keras, .pt2 or .onnx: intake unrolls recurrent layers over "
                  "the fixed window), or re-export a flat graph (Keras: unroll=True on every GRU/LSTM/SimpleRNN; "
                  "TFLite converter: no fused LSTM ops)")

# Ops that refer to other subgraphs: inside a loop body (a nested loop) or beside the loops they are refused.
_CONTROL_FLOW = {"WHILE", "IF", "CALL", "CALL_ONCE", "STABLEHLO_WHILE", "STABLEHLO_CASE", "STABLEHLO_COMPOSITE"}
# A loop longer than this is not a window over a forecaster's input: copying it would blow up the graph.
MAX_STEPS = 4096


def _binary(f):
    return lambda a, b, options: f(a, b)


# What the loop counters may be computed with: integer/boolean arithmetic, comparisons, re-viewing.
_COUNTER_OPS = {
    "ADD": _binary(np.add), "SUB": _binary(np.subtract), "MUL": _binary(np.multiply),
    "FLOOR_DIV": _binary(np.floor_divide), "FLOOR_MOD": _binary(np.mod),
    "MINIMUM": _binary(np.minimum), "MAXIMUM": _binary(np.maximum),
    "LESS": _binary(np.less), "LESS_EQUAL": _binary(np.less_equal), "GREATER": _binary(np.greater),
    "GREATER_EQUAL": _binary(np.greater_equal), "EQUAL": _binary(np.equal), "NOT_EQUAL": _binary(np.not_equal),
    "LOGICAL_AND": _binary(np.logical_and), "LOGICAL_OR": _binary(np.logical_or),
    "LOGICAL_NOT": lambda a, options: np.logical_not(a),
    "RESHAPE": lambda a, *rest: a.reshape([int(d) for d in (rest[0] if len(rest) == 2 else rest[-1].newShape)]),
    "SQUEEZE": lambda a, options: np.squeeze(a, tuple(options.squeezeDims) if options.squeezeDims is not None
                                             and len(options.squeezeDims) else None),
    "EXPAND_DIMS": lambda a, axis, options: np.expand_dims(a, int(np.asarray(axis).reshape(-1)[0])),
    "PACK": lambda *args: np.stack(args[:-1], axis=args[-1].axis),
}


def _op_name(model: schema.ModelT, op) -> str:
    return _OPCODE_NAMES.get(flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]),
                             "CUSTOM")


def _dtype(tensor) -> np.dtype | None:
    return _TENSOR_TYPES.get(tensor.type, (None, None))[1]


def _constant_value(model: schema.ModelT, tensor) -> np.ndarray | None:
    """The contents of a constant tensor (None for an activation or a type numpy lacks)."""
    data = model.buffers[tensor.buffer].data if 0 < tensor.buffer < len(model.buffers) else None
    dtype = _dtype(tensor)
    if data is None or len(data) == 0 or dtype is None:
        return None
    shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
    return np.frombuffer(bytes(data), dtype).reshape(shape)


def _is_counter_type(tensor) -> bool:
    dtype = _dtype(tensor)
    return dtype is not None and np.dtype(dtype).kind in "iub"


class _Refused(Exception):
    """Why a loop cannot be flattened (turned into an EdgeTQSError with the re-export fix)."""


def flatten_while_loops(tflite: bytes, path: Path | str) -> tuple[bytes, list[int]]:
    """``tflite`` with every WHILE op of its main subgraph copied step by step, and each loop's trip count.

    Raises EdgeTQSError with how to re-export when a loop's trip count is not static."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers):  # rewriting would drop the data after the flatbuffer
        raise EdgeTQSError(f"{path} holds WHILE loops and keeps its weights after the flatbuffer (buffer offsets), "
                           "which the loop flattener does not rewrite", RE_EXPORT_FLAT)
    try:
        trips = _Flattener(model).run()
    except _Refused as why:
        raise EdgeTQSError(f"{path} has control flow edgetqs cannot flatten: {why}", RE_EXPORT_FLAT) from None
    try:
        _settle_with_litert(model)
    except Exception as exc:  # LiteRT's own diagnostics for a flat graph it cannot run
        raise EdgeTQSError(f"{path}: its WHILE loops, copied step by step, do not run in LiteRT "
                           f"({type(exc).__name__}: {str(exc)[:200]})", RE_EXPORT_FLAT) from exc
    _join_sequence_writes(model)
    _gathers_to_unpack(model)
    _collect_garbage(model)
    return compact_tensor_names(bytes(flatbuffer_utils.convert_object_to_bytearray(model))), trips


class _Flattener:
    def __init__(self, model: schema.ModelT):
        self.model = model
        self.main = model.subgraphs[0]
        self.names = {t.name for t in self.main.tensors}
        self.step_constants: dict[tuple, int] = {}  # (type, shape, bytes) -> main tensor: one per value

    def run(self) -> list[int]:
        main, trips = self.main, []
        replaced: dict[int, int] = {}  # a WHILE output -> the main tensor that now holds it
        operators = []
        for op in main.operators:
            op.inputs = [replaced.get(int(i), int(i)) for i in op.inputs]
            name = _op_name(self.model, op)
            if name == "WHILE":
                ops, outputs, steps = self._unroll(op)
                operators.extend(ops)
                replaced.update(zip([int(i) for i in op.outputs], outputs))
                trips.append(steps)
            elif name in _CONTROL_FLOW:
                raise _Refused(f"a {name} op (only WHILE loops with a static trip count are flattened)")
            else:
                operators.append(op)
        main.operators = operators
        main.outputs = [replaced.get(int(i), int(i)) for i in main.outputs]
        for signature in self.model.signatureDefs or []:
            for item in signature.outputs or []:
                item.tensorIndex = replaced.get(int(item.tensorIndex), int(item.tensorIndex))
        _drop_dead_ops(main)
        self.model.subgraphs = [main]
        _collect_garbage(self.model)
        return trips

    # -- one loop -------------------------------------------------------------
    def _unroll(self, op) -> tuple[list, list[int], int]:
        cond = self.model.subgraphs[op.builtinOptions.condSubgraphIndex]
        body = self.model.subgraphs[op.builtinOptions.bodySubgraphIndex]
        for subgraph in (cond, body):
            nested = sorted({_op_name(self.model, o) for o in subgraph.operators} & _CONTROL_FLOW)
            if nested:
                raise _Refused(f"the loop {body.name.decode()} holds {', '.join(nested)} (a nested loop)")
        initial = [int(i) for i in op.inputs]
        start = {i: _constant_value(self.model, self.main.tensors[t]) for i, t in enumerate(initial)
                 if _is_counter_type(self.main.tensors[t])}
        counters = {i for i, value in start.items() if value is not None}
        while True:  # a counter's next value must come from counters and constants only
            known = self._computable(body, {int(body.inputs[i]) for i in counters})
            still = {i for i in counters if int(body.outputs[i]) in known}
            if still == counters:
                break
            counters = still
        if int(cond.outputs[0]) not in self._computable(cond, {int(cond.inputs[i]) for i in counters}):
            raise _Refused(f"the loop {body.name.decode()} has no static trip count (its condition depends on "
                           "the input or on values computed in the loop, not only on counters that start from "
                           "constants)")
        steps, values = [], {i: start[i] for i in counters}
        while True:
            cond_values = self._evaluate(cond, {int(cond.inputs[i]): values[i] for i in counters})
            if not bool(np.asarray(cond_values[int(cond.outputs[0])]).reshape(-1)[0]):
                break
            if len(steps) >= MAX_STEPS:
                raise _Refused(f"the loop {body.name.decode()} runs more than {MAX_STEPS} steps")
            step = self._evaluate(body, {int(body.inputs[i]): values[i] for i in counters})
            steps.append(step)
            values = {i: step[int(body.outputs[i])] for i in counters}

        shared: dict[int, int] = {}  # body constant -> its one main-subgraph tensor, read by every step
        operators, state = [], list(initial)
        for step in steps:
            local = {int(t): state[i] for i, t in enumerate(body.inputs)}

            def resolve(t: int) -> int:
                if t < 0:
                    return t
                if t in step and _constant_value(self.model, body.tensors[t]) is None:
                    return self._step_constant(body.tensors[t], step[t])
                if t in local:
                    return local[t]
                if t not in shared:
                    shared[t] = self._add_tensor(body.tensors[t], keep_buffer=True)
                return shared[t]

            for body_op in body.operators:
                if all(int(o) in step for o in body_op.outputs):
                    continue  # counter arithmetic: its values are this step's constants
                copied = copy.deepcopy(body_op)
                copied.inputs = [resolve(int(i)) for i in body_op.inputs]
                copied.outputs = []
                for o in body_op.outputs:
                    local[int(o)] = self._add_tensor(body.tensors[int(o)], keep_buffer=False)
                    copied.outputs.append(local[int(o)])
                operators.append(copied)
            state = [resolve(int(t)) for t in body.outputs]
        outputs = [self._step_constant(self.main.tensors[int(t)], values[i]) if i in counters and steps else state[i]
                   for i, t in enumerate(op.outputs)]
        return operators, outputs, len(steps)

    def _computable(self, subgraph, known: set[int]) -> set[int]:
        """Tensors of ``subgraph`` computed from ``known`` and integer constants by counter ops alone."""
        known = set(known) | {i for i, t in enumerate(subgraph.tensors)
                              if _is_counter_type(t) and _constant_value(self.model, t) is not None}
        for op in subgraph.operators:
            if (_op_name(self.model, op) in _COUNTER_OPS and all(int(i) in known for i in op.inputs if int(i) >= 0)
                    and all(_is_counter_type(subgraph.tensors[int(o)]) for o in op.outputs)):
                known.update(int(o) for o in op.outputs)
        return known

    def _evaluate(self, subgraph, values: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Every counter tensor of ``subgraph`` (see ``_computable``) from the counters' ``values``."""
        known = self._computable(subgraph, set(values))
        values = dict(values)
        for i in known - set(values):
            constant = _constant_value(self.model, subgraph.tensors[i])
            if constant is not None:
                values[i] = constant
        for op in subgraph.operators:
            outputs = [int(o) for o in op.outputs]
            if not all(o in known for o in outputs) or all(o in values for o in outputs):
                continue
            args = [values[int(i)] for i in op.inputs if int(i) >= 0]
            result = _COUNTER_OPS[_op_name(self.model, op)](*args, op.builtinOptions)
            tensor = subgraph.tensors[outputs[0]]
            values[outputs[0]] = np.asarray(result).astype(_dtype(tensor)).reshape(
                [int(d) for d in tensor.shape] if tensor.shape is not None else [])
        return values

    # -- tensors --------------------------------------------------------------
    def _add_tensor(self, source, keep_buffer: bool) -> int:
        tensor = copy.deepcopy(source)
        if not keep_buffer:
            tensor.buffer = 0  # activations share the empty buffer 0 (their shapes: _settle_with_litert)
        name = tensor.name
        if keep_buffer and name in self.names:  # weights are addressed by name: keep names unique
            n = 2
            while name + f"#{n}".encode() in self.names:
                n += 1
            name = name + f"#{n}".encode()
        tensor.name = name
        self.names.add(name)
        self.main.tensors.append(tensor)
        return len(self.main.tensors) - 1

    def _step_constant(self, like, value: np.ndarray) -> int:
        """A main-subgraph constant holding ``value`` (a counter of one step): one tensor per distinct value."""
        value = np.array(value, dtype=_dtype(like), order="C")  # ascontiguousarray would make a scalar 1-d
        key = (like.type, value.shape, value.tobytes())
        if key not in self.step_constants:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(value.tobytes(), np.uint8)
            self.model.buffers.append(buffer)
            tensor = schema.TensorT()
            tensor.name = f"while/step_value_{len(self.step_constants)}".encode()
            tensor.shape, tensor.type = list(value.shape), like.type
            tensor.buffer = len(self.model.buffers) - 1
            self.main.tensors.append(tensor)
            self.step_constants[key] = len(self.main.tensors) - 1
        return self.step_constants[key]


def _drop_dead_ops(main) -> None:
    """Ops nothing reads (each step's copy of the loop's sequence output, of which only the last is used)."""
    needed = {int(i) for i in main.outputs}
    kept = []
    for op in reversed(main.operators):
        if any(int(o) in needed for o in op.outputs):
            kept.append(op)
            needed.update(int(i) for i in op.inputs if int(i) >= 0)
    main.operators = kept[::-1]


def _collect_garbage(model: schema.ModelT) -> None:
    """Drop tensors, buffers and operator codes nothing refers to any more, renumbering what stays."""
    main = model.subgraphs[0]
    used = sorted({int(i) for i in main.inputs} | {int(i) for i in main.outputs}
                  | {int(i) for op in main.operators for i in list(op.inputs) + list(op.outputs) if int(i) >= 0})
    renumber = {old: new for new, old in enumerate(used)}
    main.tensors = [main.tensors[i] for i in used]
    for op in main.operators:
        op.inputs = [renumber[int(i)] if int(i) >= 0 else -1 for i in op.inputs]
        op.outputs = [renumber[int(i)] for i in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [renumber[int(i)] for i in op.intermediates if int(i) in renumber]
    main.inputs = [renumber[int(i)] for i in main.inputs]
    main.outputs = [renumber[int(i)] for i in main.outputs]
    for signature in model.signatureDefs or []:
        for item in list(signature.inputs or []) + list(signature.outputs or []):
            item.tensorIndex = renumber[int(item.tensorIndex)]
    # Buffers: 0 (the empty one) stays first; metadata keeps its buffers.
    metadata = [m.buffer for m in model.metadata or []] + [int(b) for b in (model.metadataBuffer or [])]
    buffers = sorted({0} | {int(t.buffer) for t in main.tensors} | set(metadata))
    moved = {old: new for new, old in enumerate(buffers)}
    model.buffers = [model.buffers[i] for i in buffers]
    for tensor in main.tensors:
        tensor.buffer = moved[int(tensor.buffer)]
    for item in model.metadata or []:
        item.buffer = moved[item.buffer]
    if model.metadataBuffer is not None and len(model.metadataBuffer):
        model.metadataBuffer = [moved[int(b)] for b in model.metadataBuffer]
    codes = sorted({op.opcodeIndex for op in main.operators})
    recoded = {old: new for new, old in enumerate(codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in codes]
    for op in main.operators:
        op.opcodeIndex = recoded[op.opcodeIndex]


def _settle_with_litert(model: schema.ModelT) -> None:
    """Run the flat graph once in LiteRT and keep what it found.

    - Shapes: a body's tensors carry the shapes of no step in particular (a rolled ``return_sequences``
      layer writes step t by slicing its list to [t, ...]: 0 rows at the first step); LiteRT computes each
      step's, which are written as the static shapes (no shape signatures: nothing is resized any more).
      Empty slices are then dropped from the CONCATENATIONs that joined them.
    - Constants: ops whose inputs are all constants (the first step's, on the loop's constant initial
      state) are replaced by what they computed, as the TFLite converter folds a graph it unrolls itself:
      AI Edge Quantizer cannot make a hybrid FULLY_CONNECTED of a constant input.
    Nothing here depends on the input (zeros are fed)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgetqs.model.quiet import quiet_stderr

    main = model.subgraphs[0]
    with quiet_stderr():
        interpreter = Interpreter(model_content=bytes(flatbuffer_utils.convert_object_to_bytearray(model)),
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                  experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    constant = {i for i, t in enumerate(main.tensors) if _constant_value(model, t) is not None
                or (0 < t.buffer < len(model.buffers) and model.buffers[t.buffer].data is not None
                    and len(model.buffers[t.buffer].data))}
    used = {int(i) for op in main.operators for i in list(op.inputs) + list(op.outputs) if int(i) >= 0}
    for index in sorted(used - constant):
        tensor = main.tensors[index]
        tensor.shape = [int(d) for d in interpreter.get_tensor(index).shape]
        tensor.shapeSignature = None

    known, folded_ops, folded = set(constant), [], set()
    for op in main.operators:
        if all(int(i) in known for i in op.inputs if int(i) >= 0):
            folded_ops.append(op)
            folded.update(int(o) for o in op.outputs)
            known.update(int(o) for o in op.outputs)
    kept = [op for op in main.operators if not any(op is f for f in folded_ops)]
    for index in sorted(folded & ({int(i) for op in kept for i in op.inputs} | {int(o) for o in main.outputs})):
        value = np.array(interpreter.get_tensor(index), order="C")
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.tobytes(), np.uint8)
        model.buffers.append(buffer)
        main.tensors[index].buffer = len(model.buffers) - 1
        main.tensors[index].name = f"while/folded_{index}".encode()  # AEQ addresses tensors by unique name
    for op in kept:
        if _op_name(model, op) == "CONCATENATION":
            inputs = [int(i) for i in op.inputs]
            nonempty = [i for i in inputs if all(int(d) > 0 for d in main.tensors[i].shape)]
            if nonempty and len(nonempty) < len(inputs):
                op.inputs = nonempty
    main.operators = kept
    _drop_dead_ops(main)
    _collect_garbage(model)


# -- after settling: what the TFLite converter writes for an unrolled layer --------------------------
def _new_tensor(model: schema.ModelT, shape, type_code: int, name: str, data: bytes | None = None) -> int:
    return add_tensor(model, model.subgraphs[0], name, shape, type_code, data)


def _new_op(model: schema.ModelT, builtin: int, inputs, outputs, options_type: int = 0, options=None):
    op = schema.OperatorT()
    op.opcodeIndex = opcode_index(model, builtin)
    op.inputs, op.outputs = [int(i) for i in inputs], [int(o) for o in outputs]
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _join_sequence_writes(model: schema.ModelT) -> None:
    """A rolled layer's sequence output is written one step at a time: step t's list is
    CONCATENATION(SLICE(list, rows < t), row t, SLICE(list, rows > t)). Flattened, that is a chain of
    slices of concatenations; each tensor the chain ends in is rebuilt straight from the rows it holds
    (one CONCATENATION of the steps' rows for a whole sequence) and the chain is left dead."""
    main = model.subgraphs[0]
    tensors = main.tensors
    rows: dict[int, list[tuple[int, int, int]]] = {}  # tensor -> its axis-0 rows as (source, start, stop)

    def composition(t: int) -> list[tuple[int, int, int]]:
        return rows.get(t) or [(t, 0, int(tensors[t].shape[0]))]

    def full_beyond_axis0(t: int, begin, size) -> bool:
        shape = [int(d) for d in tensors[t].shape]
        return all(b == 0 and n in (-1, d) for b, n, d in zip(begin[1:], size[1:], shape[1:]))

    chain = set()  # ops whose outputs have a composition
    for op in main.operators:
        name = _op_name(model, op)
        inputs = [int(i) for i in op.inputs]
        if not (op.outputs is not None and len(op.outputs) == 1) or not all(len(tensors[i].shape) for i in inputs):
            continue
        out = int(op.outputs[0])
        if name == "SLICE":
            begin, size = (_constant_value(model, tensors[i]) for i in inputs[1:3])
            if begin is None or size is None or not full_beyond_axis0(inputs[0], begin, size):
                continue
            start = int(begin[0])
            stop = int(tensors[inputs[0]].shape[0]) if int(size[0]) == -1 else start + int(size[0])
            pieces, offset = [], 0
            for source, a, b in composition(inputs[0]):
                lo, hi = max(start, offset), min(stop, offset + b - a)
                if lo < hi:
                    pieces.append((source, a + lo - offset, a + hi - offset))
                offset += b - a
            rows[out] = pieces
            chain.add(id(op))
        elif name == "CONCATENATION" and op.builtinOptions is not None and op.builtinOptions.axis in (
                0, -len(tensors[out].shape)) and not op.builtinOptions.fusedActivationFunction:
            rows[out] = [piece for i in inputs for piece in composition(i)]
            chain.add(id(op))
    if not chain:
        return
    read_outside = {int(i) for op in main.operators if id(op) not in chain for i in op.inputs} | {
        int(o) for o in main.outputs}
    replaced: dict[int, int] = {}
    built = []
    for op in main.operators:
        if id(op) not in chain:
            op.inputs = [replaced.get(int(i), int(i)) for i in op.inputs]
            built.append(op)
            continue
        out = int(op.outputs[0])
        if out not in read_outside:
            continue
        merged: list[list[int]] = []
        for source, a, b in rows[out]:  # adjacent rows of one source join
            if merged and merged[-1][0] == source and merged[-1][2] == a:
                merged[-1][2] = b
            else:
                merged.append([source, a, b])
        parts = []
        for source, a, b in merged:
            shape = [int(d) for d in tensors[source].shape]
            if (a, b) == (0, shape[0]):
                parts.append(source)
                continue
            begin = np.array([a] + [0] * (len(shape) - 1), np.int32)
            size = np.array([b - a] + shape[1:], np.int32)
            part = _new_tensor(model, [b - a] + shape[1:], tensors[source].type, f"while/rows_{len(tensors)}")
            built.append(_new_op(model, schema.BuiltinOperator.SLICE, [
                source, _new_tensor(model, begin.shape, schema.TensorType.INT32, f"while/begin_{len(tensors)}",
                                    begin.tobytes()),
                _new_tensor(model, size.shape, schema.TensorType.INT32, f"while/size_{len(tensors)}", size.tobytes())],
                [part], schema.BuiltinOptions.SliceOptions, schema.SliceOptionsT()))
            parts.append(part)
        if len(parts) == 1:
            replaced[out] = parts[0]
            continue
        options = schema.ConcatenationOptionsT()
        options.axis = 0
        built.append(_new_op(model, schema.BuiltinOperator.CONCATENATION, parts, [out],
                             schema.BuiltinOptions.ConcatenationOptions, options))
    main.outputs = [replaced.get(int(o), int(o)) for o in main.outputs]
    main.operators = built
    _drop_dead_ops(main)


def _gathers_to_unpack(model: schema.ModelT) -> None:
    """Each step's GATHER of its row of the input sequence (a constant index on axis 0): one UNPACK of the
    sequence into its rows, as the TFLite converter writes an unrolled layer's input."""
    main = model.subgraphs[0]
    tensors = main.tensors
    by_source: dict[int, list] = {}
    for op in main.operators:
        if _op_name(model, op) != "GATHER" or (op.builtinOptions is not None and (
                op.builtinOptions.axis != 0 or op.builtinOptions.batchDims)):
            continue
        index = _constant_value(model, tensors[int(op.inputs[1])])
        if index is not None and index.ndim == 0:
            by_source.setdefault(int(op.inputs[0]), []).append((int(index), op))
    if not by_source:
        return
    gathers, unpack_before = set(), {}
    for source, found in by_source.items():
        shape = [int(d) for d in tensors[source].shape]
        steps = shape[0]
        outputs: dict[int, int] = {}
        for index, op in found:
            if index % steps in outputs:  # the same row twice: keep the second GATHER as it is
                continue
            outputs[index % steps] = int(op.outputs[0])
            gathers.add(id(op))
        unused = [_new_tensor(model, shape[1:], tensors[source].type, f"while/row_{source}_{k}")
                  for k in range(steps) if k not in outputs]
        unused.reverse()
        options = schema.UnpackOptionsT()
        options.num, options.axis = steps, 0
        first = min((op for _, op in found if id(op) in gathers), key=lambda o: main.operators.index(o))
        unpack_before[id(first)] = _new_op(model, schema.BuiltinOperator.UNPACK, [source],
                                           [outputs[k] if k in outputs else unused.pop() for k in range(steps)],
                                           schema.BuiltinOptions.UnpackOptions, options)
    main.operators = [new for op in main.operators
                      for new in ([unpack_before[id(op)]] if id(op) in unpack_before else [])
                      + ([] if id(op) in gathers else [op])]
