"""Model intake: any supported model file becomes ONE canonical float32 .tflite
plus its card (rollout spec + layer table), cached under ``$EDGETQS_CACHE``.

Sources are the formats in ``edgetqs.model.formats.FORMATS`` (``zoo:NAME`` is
resolved above this layer, in ``edgetqs.zoo.resolve``). The canonical model has
batch 1 — a fixed input ``[1, window, features]`` keeps the graph free of
shape-computing ops (SHAPE/PACK) that a dynamic batch adds. Only builtin ops are
allowed: boards run builtin-only runtimes. Every conversion is checked
numerically against the source framework before it is cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.files import staged_directory, write_atomically
from edgetqs.model.buffer_layout import canonical
from edgetqs.model.card import ModelCard, RolloutSpec
from edgetqs.model.flatten_while import RE_EXPORT_FLAT
from edgetqs.model.formats import FORMATS, SUPPORTED, detect_format
from edgetqs.model.formats.base import AGREEMENT_TOLERANCE, relative_difference, source_files
from edgetqs.model.formats.onnx import DISAGREES_FIX
from edgetqs.model.formats.pytorch import export_module
from edgetqs.model.layers import infer_rollout, layer_table
from edgetqs.model.litert import run_tflite
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.model.window_input import with_channels_last_input, with_window_input
from edgetqs.quant.ops import op_spec

__all__ = ["CanonicalModel", "load_model", "load_torch_module", "canonicalize", "open_canonical", "cache_dir", "run_tflite",
           "detect_format", "SUPPORTED", "INTAKE_VERSION", "AGREEMENT_TOLERANCE"]

# Bump when the canonical form changes, so old cache entries are rebuilt (5: cards record the intake route;
# 6: buffers stored after the flatbuffer are in the canonical order, buffer_layout.py).
INTAKE_VERSION = 6


@dataclass
class CanonicalModel:
    graph: TFLiteGraph
    card: ModelCard
    tflite_path: Path

    @property
    def rollout(self) -> RolloutSpec:
        return self.card.rollout


def cache_dir() -> Path:
    return Path(os.environ.get("EDGETQS_CACHE", Path.home() / ".cache" / "edgetqs"))


# -- entry point --------------------------------------------------------------
def load_model(model: str | os.PathLike, rollout: RolloutSpec | None = None) -> CanonicalModel:
    """The canonical model for the model file or directory ``model``, built once and cached.

    A rollout spec given once for a file (``edgetqs inspect FILE --rollout ...``) is remembered
    for that file's content, so the later stages (score, plan, convert) find the same model
    without repeating it."""
    path = Path(model).expanduser()
    source_format = detect_format(path)
    remembered = _spec_memory(path)
    if rollout is None and remembered.exists():
        rollout = RolloutSpec(**json.loads(remembered.read_text())).validate()
    key = _cache_key(path, rollout)
    out_dir = cache_dir() / "models" / key
    if (out_dir / "model.tflite").exists() and (out_dir / "model.card.json").exists():
        return open_canonical(out_dir)
    model = canonicalize(path, source_format, out_dir, rollout, name=path.stem if path.is_file() else path.name,
                         source_label=str(path))
    if rollout is not None:
        write_atomically(remembered, json.dumps(dataclasses.asdict(rollout)))
    return model


def _spec_memory(path: Path) -> Path:
    """Where the rollout spec last given for ``path``'s content is kept."""
    return cache_dir() / "models" / "rollout-specs" / f"{_cache_key(path, None)}.json"


def load_torch_module(module, example_input, rollout: RolloutSpec | None = None, name: str | None = None) -> CanonicalModel:
    """The canonical model of a PyTorch ``nn.Module``, traced by torch.export on ``example_input``
    (shape [1, window, features]) and converted by litert-torch, like a .pt2 file."""
    with tempfile.TemporaryDirectory() as tmp:
        program = export_module(module, example_input, Path(tmp) / f"{name or type(module).__name__}.pt2")
        model = load_model(program, rollout)
    return model


def open_canonical(out_dir: Path) -> CanonicalModel:
    """A canonical model already written to ``out_dir`` (model.tflite + model.card.json)."""
    card = ModelCard.load(out_dir / "model.card.json")
    tflite_path = out_dir / "model.tflite"
    card.tflite_path = str(tflite_path)  # the cache may have moved since it was written
    return CanonicalModel(TFLiteGraph.load(tflite_path), card, tflite_path)


def _cache_key(path: Path, rollout: RolloutSpec | None) -> str:
    digest = hashlib.sha256(f"intake-v{INTAKE_VERSION};rollout={rollout}".encode())
    for file in source_files(path):
        digest.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def canonicalize(path: Path, source_format: str, out_dir: Path, rollout: RolloutSpec | None, name: str,
                 source_label: str, extra: dict | None = None) -> CanonicalModel:
    """Convert ``path`` and write model.tflite + model.card.json into ``out_dir`` atomically."""
    converted = FORMATS[source_format].convert(path, rollout)
    # The same source gives the same bytes (sha256) on every intake: the converter places a large
    # model's buffers in a per-process order (buffer_layout.py). Already canonical: no copy.
    tflite_bytes, reference, source_names = canonical(converted.tflite), converted.reference, converted.source_names
    route, route_note = converted.route, converted.route_note
    del converted  # a rewritten input (below) must not leave the converter's bytes alive beside it
    graph = TFLiteGraph.from_bytes(tflite_bytes, path)
    if len(graph.input_shapes()[0]) == 2:  # state-to-state: the canonical input is a window of one step
        tflite_bytes = with_window_input(tflite_bytes)
        graph = TFLiteGraph.from_bytes(tflite_bytes, path)
    elif rollout is not None and rollout.input_layout == "channels_first":
        tflite_bytes = with_channels_last_input(tflite_bytes)
        graph = TFLiteGraph.from_bytes(tflite_bytes, path)
        if reference is not None:  # the source ran on [1, F, W]; the canonical model takes [1, W, F]
            reference = (reference[0].transpose(0, 2, 1), reference[1])
    _check_builtin_only(graph, path)
    spec = infer_rollout(graph, rollout)  # a copy of the user's spec, normalisation included
    if reference is not None:
        _check_agreement(graph, tflite_bytes, reference, source_format, path)
    card = ModelCard(name=name, source=source_label, source_format=source_format, tflite_path="",
                     tflite_sha256=graph.sha256, rollout=spec, layers=layer_table(graph, source_names),
                     extra=dict(extra or {}), intake_route=route, intake_note=route_note)
    return _write_atomically(out_dir, graph, tflite_bytes, card)


def _write_atomically(out_dir: Path, graph: TFLiteGraph, tflite_bytes: bytes, card: ModelCard) -> CanonicalModel:
    # If someone else finishes the same model first, theirs is equivalent: staged_directory keeps it.
    with staged_directory(out_dir) as staging:
        (staging / "model.tflite").write_bytes(tflite_bytes)
        card.tflite_path = str(out_dir / "model.tflite")
        card.save(staging / "model.card.json")
    if ModelCard.load(out_dir / "model.card.json").tflite_sha256 != graph.sha256:
        return open_canonical(out_dir)  # another process's conversion won the race: return what is cached
    # The graph in memory is the file's content (same sha256): reading the file again held a second copy.
    graph.path = out_dir / "model.tflite"
    return CanonicalModel(graph, card, graph.path)


# -- checks -------------------------------------------------------------------
def _check_builtin_only(graph: TFLiteGraph, path: Path) -> None:
    custom = sorted({op.opcode for op in graph.operators if op.opcode.startswith("CUSTOM:")})
    if custom:
        raise EdgeTQSError(f"{path} needs ops outside the TFLite builtin set: {', '.join(custom)}",
                           "boards run builtin-only runtimes: rewrite the model without these ops")
    if graph.num_subgraphs > 1:
        raise EdgeTQSError(f"{path} has control flow ({graph.num_subgraphs} subgraphs: WHILE/IF loops)",
                           RE_EXPORT_FLAT)
    fused = sorted({op.opcode for op in graph.operators if op_spec(op.opcode).every_constant_is_weight})
    if fused:  # AEQ would leave their weights float while the plan priced them quantized
        raise EdgeTQSError(f"{path} holds fused recurrent ops ({', '.join(fused)}) that edgetqs cannot "
                           "quantize or roll out step by step", RE_EXPORT_FLAT)
    weights = [t for t in graph.tensors if t.is_constant and t.type_name in ("INT8", "INT4", "UINT8", "INT2")
               and t.quantization is not None]
    if weights:
        raise EdgeTQSError(f"{path} is already quantized ({weights[0].name} is {weights[0].type_name})",
                           "pass the float model; edgetqs plans the quantization itself")


def _check_agreement(graph: TFLiteGraph, tflite_bytes: bytes, reference, source_format: str, path: Path) -> None:
    """``reference`` is (input, expected output) from the source framework; ``graph`` is ``tflite_bytes`` read.

    LiteRT's builtin kernels run the check: they compute every op as the TFLite schema defines it and
    read the weights in place (XNNPACK would pack another float copy of the whole model; the board's
    runtime, XNNPACK included, is checked when a bundle is validated)."""
    window, expected = reference
    window = window.reshape(graph.input_shapes()[0])  # [1, F] sources: [1, 1, F]
    try:
        got = run_tflite(tflite_bytes, window, xnnpack=False)
    except Exception as exc:
        raise EdgeTQSError(f"the converted {path} does not run in LiteRT: {exc}",
                           "report this model; try exporting it with simpler ops") from exc
    expected = np.asarray(expected, np.float32).reshape(got.shape) if expected.size == got.size else expected
    if got.shape != expected.shape:
        raise EdgeTQSError(f"the converted {path} returns shape {got.shape}, the {source_format} source {expected.shape}",
                           "report this model; the converter changed its layout")
    error = relative_difference(got, expected)
    if error > AGREEMENT_TOLERANCE:
        raise EdgeTQSError(f"the converted {path} disagrees with its {source_format} source "
                           f"(max relative difference {error:.2e} > {AGREEMENT_TOLERANCE})",
                           DISAGREES_FIX if source_format == "onnx" else "report this model; the conversion is not faithful")
