"""The typed plan: one format per unit, the plan file (``edgetqs.plan`` v1,
docs/ARCHITECTURE.md), and the checks that it belongs to a model.

The planner makes a :class:`Plan`; the converter takes one (``as_plan`` turns a
path or a dict into it, checked). Files are written through edgetqs/files.py:
to a temporary name, verified by :func:`load_plan`, then renamed, so a path
never holds half a plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, write_json
from edgetqs.quant.formats import get_format
from edgetqs.quant.modes import Mode

PLAN = JsonKind("edgetqs.plan", 1, "plan",
                "pass a plan written by `edgetqs plan` (make one with `edgetqs plan MODEL --scores S --target T "
                "-o plan.json`)")
PLAN_FORMAT, PLAN_VERSION = PLAN.format, PLAN.version


@dataclass
class Assignment:
    unit: str
    weight_tensors: list[str]
    format: str
    bytes: int  # what the unit's weights take in the .tflite in this format
    cost: float  # predicted rollout error, exp(gamma T) * ||delta(q)||


@dataclass
class Plan:
    model: dict  # name, tflite_sha256
    scores_sha256: str
    target: str | None
    runtime: str  # package==version whose conformance results filtered the formats
    budget_bytes: int  # what the model (file + arena) may take in memory
    allocator: str
    mode: Mode  # stored as its string value
    assignments: list[Assignment] = field(default_factory=list)
    predicted: dict = field(default_factory=dict)  # model_bytes, weights_bytes, arena_bytes, packed_weights_bytes
    # (absent in plans made before it was counted), delegate, memory_bytes, footprint_bytes, total_cost
    format: str = PLAN_FORMAT
    version: int = PLAN_VERSION

    def to_dict(self) -> dict:
        return PLAN.stamp(asdict(self))

    def formats(self) -> dict[str, str]:
        """Weight tensor -> format."""
        return {t: a.format for a in self.assignments for t in a.weight_tensors}

    def save(self, path: str | Path) -> Path:
        # load_plan verifies the file before it takes the real name
        return write_json(path, PLAN, self.to_dict(), allow_nan=False, verify=load_plan)

    def check_matches(self, graph, model_label: str) -> None:
        """The plan was made for this model (a TFLiteGraph), and names only tensors it has."""
        check_made_for(self.model, graph, "the plan", model_label,
                       "re-run `edgetqs score` and `edgetqs plan` for this model, or pass the model the plan was made for")
        names = {t.name for t in graph.tensors}
        missing = [(a.unit, t) for a in self.assignments for t in a.weight_tensors if t not in names]
        if missing:
            listed = ", ".join(f"{unit} ({tensor})" for unit, tensor in missing[:5])
            raise EdgeTQSError(f"the plan names {len(missing)} weight tensor(s) that {model_label} lacks: {listed}",
                               "re-run `edgetqs plan` against this model's scores")


def check_made_for(recorded: dict, graph, what: str, model_label: str, fix: str) -> None:
    """``recorded`` ({"name", "tflite_sha256"}, as plans and score files keep it) names ``graph``'s model."""
    recorded_sha = recorded.get("tflite_sha256")
    if recorded_sha != graph.sha256:
        raise EdgeTQSError(f"{what} was made for another model: it names {recorded.get('name')!r} with sha256 "
                           f"{str(recorded_sha)[:12]}…, but {model_label} is {graph.sha256[:12]}…", fix)


def plan_from_dict(data: dict, where: str = "the plan") -> Plan:
    """A checked Plan from a plan document: format and version, fields, mode, one known format per tensor."""
    body = {k: v for k, v in PLAN.check(data, where).items() if k not in ("format", "version")}
    try:
        body["assignments"] = [Assignment(**a) for a in body["assignments"]]
        plan = Plan(**body)
    except (KeyError, TypeError) as exc:
        raise EdgeTQSError(f"{where} is missing or has unexpected fields ({exc})", "re-run `edgetqs plan`") from exc
    plan.mode = Mode.parse(plan.mode, where)
    _check_formats(plan)
    return plan


def _check_formats(plan: Plan) -> None:
    formats: dict[str, str] = {}
    for assignment in plan.assignments:
        get_format(assignment.format)  # unknown names fail here with the list of known ones
        for name in assignment.weight_tensors:
            if formats.get(name, assignment.format) != assignment.format:
                raise EdgeTQSError(
                    f"the plan assigns tensor '{name}' two formats ({formats[name]} and {assignment.format})",
                    "re-run `edgetqs plan`; each weight tensor must belong to one unit")
            formats[name] = assignment.format


def load_plan(path: str | Path) -> Plan:
    return plan_from_dict(read_json(path, PLAN), str(path))


def as_plan(plan: str | Path | dict | Plan) -> Plan:
    """A checked Plan from a path, a plan document or a Plan (checked again: it may have been edited)."""
    if isinstance(plan, Plan):
        return plan_from_dict(plan.to_dict())
    if isinstance(plan, dict):
        return plan_from_dict(plan)
    return load_plan(plan)
