"""PyTorch: a ``torch.export`` program saved as ``.pt2`` (``torch.export.save``),
converted by litert-torch; and, from Python, an ``nn.Module`` with an example input.

litert-torch lowers recurrent cells (nn.GRU, nn.LSTM, nn.RNN) unrolled into
FULLY_CONNECTED ops and keeps each weight one constant. It runs in its own venv
(torch_env.py says why); the reference output comes from torch here, in
edgetqs' venv, so every conversion is still checked against its source.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgetqs.errors import EdgeTQSError
from edgetqs.model.card import LITERT_TORCH, RolloutSpec
from edgetqs.model.compact import compact_tensor_names
from edgetqs.model.formats import torch_env
from edgetqs.model.formats.base import Converted, fixed_input_shape, one_input_one_output, random_window
from edgetqs.model.layers import SourceNames

CONVERSION_TIMEOUT_S = 900


def load_program(path: Path):
    import torch

    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise EdgeTQSError(f"{path} is not a readable torch.export program ({type(exc).__name__}: {str(exc)[:200]})",
                           "save the model with torch.export.save(torch.export.export(model.eval(), (example,)), "
                           "'model.pt2')") from exc


def _input_shapes(program) -> list[list[int | None]]:
    """The user inputs' shapes; symbolic (dynamic) sizes are None."""
    user_inputs = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    shapes = []
    for spec in user_inputs:
        value = nodes[spec.arg.name].meta.get("val")
        shapes.append([int(d) if str(d).isdigit() else None for d in value.shape] if value is not None else [])
    return shapes


def source_names(program) -> SourceNames:
    """torch parameter names ('rnn.weight_hh_l0', 'encoder.layers.0.linear1.weight') for the weight matrices."""
    weights = ((re.sub(r"\.weight$", "", name), values.detach().cpu().numpy())
               for name, values in program.state_dict.items() if values.ndim >= 2)  # one at a time
    return SourceNames(set(), weights)


def convert(path: Path, rollout: RolloutSpec | None) -> Converted:
    import torch

    program = load_program(path)
    shapes = _input_shapes(program)
    one_input_one_output(path, len(shapes), len(program.graph_signature.user_outputs),
                         "export the forecaster with exactly one input window and one output")
    shape = fixed_input_shape(shapes[0], rollout, path)
    window = random_window(shape)
    with torch.no_grad():
        expected = program.module()(torch.from_numpy(window)).detach().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.tflite"
        tflite = run_litert_torch(path, out, shape, PT2_FIX)
    return Converted(tflite, source_names(program), (window, np.asarray(expected)), LITERT_TORCH)


PT2_FIX = ("check that the program runs in torch with a [1, window, features] input; "
           "replace ops litert-torch does not lower, or export the model as ONNX")


def run_litert_torch(source: Path, out: Path, shape: list[int], fix: str) -> bytes:
    """``source`` (a .pt2, or an .onnx with a static input shape) converted by litert-torch in its venv, as
    float .tflite bytes with short tensor names; ``fix`` is the error's advice when it fails."""
    command = [str(torch_env.python()), str(torch_env.WORKER), str(source), str(out), ",".join(map(str, shape))]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=CONVERSION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EdgeTQSError(f"litert-torch did not finish converting {source} in {CONVERSION_TIMEOUT_S} s",
                           "export a smaller model, or try again on a less loaded machine") from None
    if result.returncode != 0 or not out.exists():
        reason = next((line for line in result.stderr.splitlines() if line.startswith("error:")),
                      result.stderr.strip()[-300:])
        raise EdgeTQSError(f"litert-torch cannot convert {source}: {reason.removeprefix('error: ')}", fix)
    return compact_tensor_names(out.read_bytes())


def export_module(module, example_input, path: Path) -> Path:
    """``module`` traced by torch.export on ``example_input`` and saved as a .pt2 at ``path``."""
    import torch

    example = torch.as_tensor(np.asarray(example_input, np.float32))
    try:
        program = torch.export.export(module.eval(), (example,))
    except Exception as exc:
        raise EdgeTQSError(f"torch.export cannot trace {type(module).__name__}: {str(exc).splitlines()[0][:300]}",
                           "make forward() traceable (no data-dependent Python control flow), see "
                           "https://pytorch.org/docs/stable/export.html") from exc
    torch.export.save(program, str(path))
    return path
