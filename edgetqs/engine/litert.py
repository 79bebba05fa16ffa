"""The same forward/rollout through the real LiteRT interpreter.

Used to check the engine's agreement and as the black-box path for models the
engine cannot run (patch weights with ``replace_constants``, then run here).

The converter bakes batch 1 into some graphs (a GRU's time-major reshape, for
instance), so resizing the input to a batch can fail or, worse, run with
wrong shapes. The runner therefore checks the batched interpreter once
against batch-1 calls and, if it fails or disagrees, runs row by row.
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
    def __init__(self, model: bytes | str | Path, spec: RolloutSpec, num_threads: int | None = None):
        self.spec = spec.validate()
        self._content = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        self._threads = num_threads
        self._single = self._interpreter()  # batch 1, as converted
        self._batched: Interpreter | None = None
        self._batch = None
        self.batched_ok: bool | None = None  # None until tried; False: the graph only runs at batch 1

    def _interpreter(self) -> Interpreter:
        return load_interpreter(self._content, self._threads)

    @staticmethod
    def _invoke(interpreter: Interpreter, x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

    def _forward_rows(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._invoke(self._single, x[i : i + 1]) for i in range(x.shape[0])])

    def _forward_batched(self, x: np.ndarray) -> np.ndarray | None:
        batch = x.shape[0]
        if batch != self._batch:
            try:
                if self._batched is None:
                    self._batched = self._interpreter()
                details = self._batched.get_input_details()[0]
                self._batched.resize_tensor_input(details["index"], [batch, self.spec.window, self.spec.features])
                self._batched.allocate_tensors()
            except (ValueError, RuntimeError):
                self.batched_ok = False
                return None
            self._batch = batch
        y = self._invoke(self._batched, x)
        if self.batched_ok is None:  # first batched call: check the edge rows against batch-1 calls
            rows = [0, batch - 1]
            reference = self._forward_rows(x[rows])
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
