"""Foreign forecasters, as ordinary exporters save them, through the whole pipeline:
model class x exporter -> furthest stage reached, source-vs-canonical agreement,
conversion (intake) time, and optionally flash + validate on a loopback sshd board.

    .venv/bin/python benchmarks/foreign_models.py             # every row; each verified bundle flashed + validated
    .venv/bin/python benchmarks/foreign_models.py --no-board  # stop at the verified bundle

The models are the foreign-model test suite's (tests/intake/test_foreign_models.py),
untrained and tiny (window 8, 3 features); intake caches into a fresh temp dir so
every conversion is measured. Writes benchmarks/results/foreign_models.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgetqs.errors import EdgeTQSError  # noqa: E402
from edgetqs.model.intake import load_model, run_tflite  # noqa: E402
from tests.intake import test_foreign_models as suite  # noqa: E402
from tests.intake.pipeline import through_pipeline  # noqa: E402

W, F = suite.WINDOW, suite.FEATURES


def _keras(kind, tmp):
    model = suite._keras_forecaster(kind)
    path = tmp / f"{kind}.keras"
    model.save(path)
    return path, lambda x: np.asarray(model(x))


def _tflite_while(kind, tmp):
    """The same Keras forecaster (default unroll=False) through the plain TFLiteConverter at batch 1: a float
    .tflite holding a WHILE loop, which intake flattens."""
    import keras
    import tensorflow as tf

    model = suite._keras_forecaster(kind)
    batch1 = keras.models.clone_model(model, input_tensors=keras.Input((W, F), batch_size=1))
    batch1.set_weights(model.get_weights())
    path = tmp / f"{kind}-while.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(batch1).convert())
    return path, lambda x: np.asarray(model(x))


def _torch_pt2(kind, tmp):
    import torch

    module = suite._torch_forecaster(kind)
    path = tmp / f"{kind}.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(1, W, F),)), str(path))
    return path, lambda x: module(torch.from_numpy(x)).detach().numpy()


def _torch_onnx(kind, tmp):
    import onnxruntime
    import torch

    path = tmp / f"{kind}.onnx"
    torch.onnx.export(suite._torch_forecaster(kind), (torch.zeros(1, W, F),), str(path), input_names=["window"],
                      output_names=["next"], dynamo=False, opset_version=17)
    return path, lambda x: onnxruntime.InferenceSession(str(path)).run(None, {"window": x})[0]


def _state_onnx(tmp):
    weights = suite._state_to_state_onnx(tmp / "state.onnx")
    def source(x):
        s = x.reshape(1, F)
        return s + np.tanh(s @ weights["fc1.weight"] + weights["fc1.bias"]) @ weights["fc2.weight"] + weights["fc2.bias"]
    return tmp / "state.onnx", source


def _savedmodel(tmp, recurrent):
    """The suite's tf.function SavedModels: a residual tanh MLP over the flattened window (converts flat), or a
    Keras LSTM traced rolled into the tf.function (its TensorList loop is lowered to a WHILE and flattened)."""
    path = tmp / ("tf-function-lstm" if recurrent else "tf-function")
    forward = suite._tf_function_savedmodel(path, recurrent=recurrent)
    return path, lambda x: np.asarray(forward(x))


ROWS = {
    **{f"keras {k}": (lambda t, k=k: _keras(k, t)) for k in suite.KERAS_RECURRENT},
    "savedmodel tf.function MLP": lambda t: _savedmodel(t, recurrent=False),
    "savedmodel tf.function LSTM": lambda t: _savedmodel(t, recurrent=True),  # a rolled loop, flattened at intake
    "tflite conv-gru (WHILE)": lambda t: _tflite_while("conv-gru", t),
    "tflite lstm (WHILE)": lambda t: _tflite_while("lstm", t),
    "torch gru (nn.Module)": None,  # built through load_torch_module below
    "torch lstm (.pt2)": lambda t: _torch_pt2("lstm", t),
    "torch patch-encoder (.pt2)": lambda t: _torch_pt2("patch-encoder", t),
    "torch gru (torch.onnx)": lambda t: _torch_onnx("gru", t),
    "torch lstm (torch.onnx)": lambda t: _torch_onnx("lstm", t),
    "torch patch-encoder (torch.onnx)": lambda t: _torch_onnx("patch-encoder", t),
    "onnx state-to-state": _state_onnx,
}


def exporter(name: str) -> str:
    """How the row's source was written (the table's exporter column)."""
    for marker, how in (("keras ", "keras Model.save (.keras)"), ("savedmodel ", "tf.saved_model.save (tf.function)"),
                        ("(nn.Module)", "torch.export in load_torch_module"), ("(.pt2)", "torch.export.save (.pt2)"),
                        ("(torch.onnx)", "torch.onnx.export"), ("onnx ", "onnx.helper (hand-built)"),
                        ("(WHILE)", "tf.lite.TFLiteConverter.from_keras_model (.tflite)")):
        if marker in name:
            return how
    raise ValueError(name)


def _agreement(model, source) -> float:
    x = np.random.default_rng(21).standard_normal((1, W, F)).astype(np.float32)
    if model.graph.input_shapes()[0][1] == 1:
        x = x[:, :1, :]
    expected = np.asarray(source(x.reshape(1, F) if model.graph.input_shapes()[0][1] == 1 else x), np.float32)
    got = run_tflite(model.tflite_path, x).reshape(expected.shape)
    return float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-6))


def run_row(name, tmp) -> dict:
    row = {"model": name, "exporter": exporter(name), "stage": "export"}
    try:
        started = time.perf_counter()
        if ROWS[name] is None:
            from edgetqs.model.intake import load_torch_module
            import torch

            module = suite._torch_forecaster("gru")
            model = load_torch_module(module, suite._torch_window(), name="torch-gru")
            source = lambda x: module(torch.from_numpy(x)).detach().numpy()  # noqa: E731
        else:
            path, source = ROWS[name](tmp)
            started = time.perf_counter()
            model = load_model(path)
        row.update(stage="inspect", conversion_s=round(time.perf_counter() - started, 1), route=model.card.intake_route,
                   route_note=model.card.intake_note, ops=len(model.graph.operators),
                   file_bytes=model.graph.size_bytes,
                   weight_bytes=sum(t.data.nbytes for t in model.graph.tensors if t.is_constant))
        row["agreement"] = _agreement(model, source)
        trip = through_pipeline(model, tmp / name.replace(" ", "_"))
        row.update(stage="verified bundle", bundle=str(trip["result"].out), pipeline_s=round(trip["seconds"], 1),
                   verify_rel_error=trip["result"].verification.simulation_rel_error,
                   quantized_bytes=trip["result"].model_bytes)
    except EdgeTQSError as exc:
        row.update(error=exc.problem[:200], fix=exc.fix)
    return row


def board(rows, out: Path) -> None:
    """Provision, flash and validate every verified bundle on its own loopback sshd board, as `edgetqs demo` does
    (~5 s a row at load 3 on 2 cores: the whole benchmark stays near 3 minutes, so no subset is offered)."""
    from edgetqs.cli.demo import _remote_steps

    for row in rows:
        if row["stage"] == "verified bundle":
            started = time.perf_counter()
            try:
                _remote_steps(Path(row["bundle"]), out / row["model"].replace(" ", "_"), horizon=6)
                row["stage"] = "validated on loopback board"
                row["board_s"] = round(time.perf_counter() - started, 1)
            except EdgeTQSError as exc:
                row["board_error"] = exc.problem[:200]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-board", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated row names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ROWS)
    started, load_at_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EDGETQS_CACHE"] = str(Path(tmp) / "cache")
        rows = [run_row(name, Path(tmp)) for name in names]
        if not args.no_board:
            board(rows, Path(tmp) / "board")
    for row in rows:
        row.pop("bundle", None)
        print(json.dumps(row))
    out = Path(__file__).parent / "results" / "foreign_models.json"
    wall_s = round(time.perf_counter() - started, 1)
    print(f"wall time {wall_s} s, load {os.getloadavg()}")
    out.write_text(json.dumps({"load_at_start": load_at_start, "load": os.getloadavg(), "wall_s": wall_s,
                               "board": not args.no_board, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
