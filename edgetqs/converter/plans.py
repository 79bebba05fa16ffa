"""Reading a plan for conversion, and checking it belongs to the model.

The planner owns the plan format (``edgetqs.plan`` v1, docs/ARCHITECTURE.md)
and its loader; the converter adds the checks that need the model: the plan
was made for this model (sha256 of the canonical float .tflite), and every
weight tensor it names exists in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.model.tflite_graph import TFLiteGraph

PLAN_FORMAT = "edgetqs.plan"
PLAN_VERSION = 1


def read_plan(plan: str | Path | dict) -> dict:
    """A plan as a dict, from a path (the planner's loader when it exists) or a dict."""
    if isinstance(plan, dict):
        data = plan
    else:
        data = _load(Path(plan))
    _check_shape(data, plan if not isinstance(plan, dict) else "the plan")
    return data


def _load(path: Path) -> dict:
    try:
        from edgetqs.planner.planfile import load_plan
    except ImportError:
        load_plan = None
    if load_plan is not None:
        loaded = load_plan(path)
        return loaded if isinstance(loaded, dict) else loaded.to_dict()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeTQSError(f"no such plan file: {path}", "make one with `edgetqs plan MODEL --scores S --target T -o plan.json`") from None
    except ValueError as exc:
        raise EdgeTQSError(f"{path} is not valid JSON: {exc}", "pass a plan written by `edgetqs plan`") from exc


def _check_shape(data: dict, where) -> None:
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise EdgeTQSError(f"{where} is not an edgetqs plan (format {data.get('format') if isinstance(data, dict) else None!r})",
                           "pass a plan written by `edgetqs plan`")
    if data.get("version") != PLAN_VERSION:
        raise EdgeTQSError(f"{where} is plan version {data.get('version')}, this edgetqs reads version {PLAN_VERSION}",
                           "re-run `edgetqs plan` with this edgetqs")
    for key in ("model", "assignments"):
        if key not in data:
            raise EdgeTQSError(f"{where} has no '{key}'", "pass a complete plan written by `edgetqs plan`")


def check_plan_matches(plan: dict, graph: TFLiteGraph, model_label: str) -> None:
    """The plan was made for this model, and names only tensors it has."""
    planned_sha = plan["model"].get("tflite_sha256")
    if planned_sha != graph.sha256:
        raise EdgeTQSError(
            f"the plan was made for another model: it names {plan['model'].get('name')!r} with sha256 "
            f"{str(planned_sha)[:12]}…, but {model_label} is {graph.sha256[:12]}…",
            "re-run `edgetqs score` and `edgetqs plan` for this model, or pass the model the plan was made for")
    names = {t.name for t in graph.tensors}
    missing = [(a["unit"], t) for a in plan["assignments"] for t in a["weight_tensors"] if t not in names]
    if missing:
        listed = ", ".join(f"{unit} ({tensor})" for unit, tensor in missing[:5])
        raise EdgeTQSError(f"the plan names {len(missing)} weight tensor(s) that {model_label} lacks: {listed}",
                           "re-run `edgetqs plan` against this model's scores")
