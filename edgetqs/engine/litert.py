"""The same forward/rollout through the real LiteRT interpreter.

Used to check the engine's agreement and as the black-box path for models the
engine cannot run (patch weights with ``replace_constants``, then run here).

The converter bakes batch 1 into some graphs (a GRU's time-major reshape, for
instance), so resizing the input to a batch can fail or, worse, run with
wrong shapes. The runner therefore checks its first batched call against
batch-1 calls and, if the resize fails or disagrees, runs row by row.

Memory: one interpreter, resized between batch 1 and the batch, not one per
batch size: XNNPACK packs its own float copy of every weight into each
interpreter it prepares (1x the float bytes; a second interpreter whose resize
then failed still held its copy). The interpreter runs on the model bytes it
is given without copying them, so a caller that already holds the file (a
TFLiteGraph's ``content``) passes those and the runner adds no copy of its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edgetqs.engine.rollout import check_windows, roll_out
from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import RolloutSpec


def load_interpreter(content: bytes, num_threads: int | None = None) -> Interpreter:
    """``content`` in a LiteRT interpreter with its tensors allocated (the default delegate, XNNPACK,
    prepares its nodes here, so a graph it cannot run fails here); failures are EdgeTQSError."""
    try:
        interpreter = Interpreter(model_content=content, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EdgeTQSError(f"LiteRT cannot load the model: {exc}", "check that it is a valid float .tflite") from exc
    return interpreter


class LiteRTRunner:
    def __init__(self, model: bytes | bytearray | str | Path, spec: RolloutSpec, num_threads: int | None = None):
        """``model``: the .tflite's bytes (used as they are: bytes are never copied) or its path (read once)."""
        self.spec = spec.validate()
        self._content = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        self._threads = num_threads
        self._interpreter = load_interpreter(self._content, self._threads)
        self._batch_one = list(self._interpreter.get_input_details()[0]["shape"])  # as converted
        self._batch = 1
        self.batched_ok: bool | None = None  # None until tried; False: the graph only runs at batch 1

    def _resize(self, batch: int) -> bool:
        """Make the interpreter take ``batch`` windows; False (and back at batch 1) if the graph refuses."""
        if batch == self._batch:
            return True
        shape = self._batch_one if batch == 1 else [batch, self.spec.window, self.spec.features]
        try:
            self._interpreter.resize_tensor_input(self._interpreter.get_input_details()[0]["index"], shape)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError):
            if batch == 1:
                raise
            self._batch = None
            self._resize_back()
            return False
        self._batch = batch
        return True

    def _resize_back(self) -> None:
        """Batch 1 again after a refused resize; a fresh interpreter if this one will not go back
        (the old one released first, so two never hold packed weights at once)."""
        try:
            self._resize(1)
        except (ValueError, RuntimeError):
            self._interpreter = None
            self._interpreter = load_interpreter(self._content, self._threads)
            self._batch = 1

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

    def _forward_rows(self, x: np.ndarray) -> np.ndarray:
        self._resize(1)
        return np.concatenate([self._invoke(x[i : i + 1]) for i in range(x.shape[0])])

    def _forward_batched(self, x: np.ndarray) -> np.ndarray | None:
        batch = x.shape[0]
        rows = [0, batch - 1]
        # First batched call: the edge rows at batch 1 (before resizing) to check the batched outputs against.
        reference = self._forward_rows(x[rows]) if self.batched_ok is None else None
        if not self._resize(batch):
            self.batched_ok = False
            return None
        y = self._invoke(x)
        if self.batched_ok is None:
            self.batched_ok = y.size == x.shape[0] * reference[0].size and np.allclose(
                y.reshape(batch, -1)[rows], reference.reshape(len(rows), -1), rtol=1e-5, atol=1e-6)
            if not self.batched_ok:
                return None
        return y

    def forward(self, x: np.ndarray) -> np.ndarray:
        """windows [B, window, F] -> [B, patch, F]."""
        x = check_windows(x, self.spec)
        y = None
        if x.shape[0] > 1 and self.batched_ok is not False:
            y = self._forward_batched(x)
        if y is None:
            y = self._forward_rows(x)
        return y.reshape(x.shape[0], self.spec.patch, self.spec.outputs)

    def rollout(self, contexts: np.ndarray, horizon: int, covariates: np.ndarray | None = None) -> np.ndarray:
        """contexts [K, window, F] (+ covariates [K, horizon*patch, C]) -> [K, horizon*patch, F - C]."""
        return roll_out(self.forward, contexts, horizon, self.spec, covariates)
