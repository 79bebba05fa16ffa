"""Reading a plan for conversion, and checking it belongs to the model.

The planner owns the plan format (``edgetqs.plan`` v1, docs/ARCHITECTURE.md)
and its loader (planner/planfile.py); the converter adds the checks that need the model: the plan
was made for this model (sha256 of the canonical float .tflite), and every
weight tensor it names exists in it.
"""

from __future__ import annotations

from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.planner.planfile import Plan, load_plan, plan_from_dict


def read_plan(plan: str | Path | dict | Plan) -> dict:
    """A plan as a dict, from a path, a Plan or a dict, checked by the planner's loader."""
    if isinstance(plan, Plan):
        return plan.to_dict()
    if isinstance(plan, dict):
        return plan_from_dict(plan).to_dict()
    return load_plan(plan).to_dict()


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
