"""The plan file (``edgetqs.plan`` v1, docs/ARCHITECTURE.md): one format per unit.

Written to a temporary name and renamed, so a path never holds half a plan.
The converter reads it through :func:`load_plan`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.files import write_atomically
from edgetqs.quant.modes import Mode

PLAN_FORMAT = "edgetqs.plan"
PLAN_VERSION = 1


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
    predicted: dict = field(default_factory=dict)  # model_bytes, weights_bytes, arena_bytes, footprint_bytes, total_cost
    format: str = PLAN_FORMAT
    version: int = PLAN_VERSION

    def to_dict(self) -> dict:
        data = asdict(self)
        return {"format": data.pop("format"), "version": data.pop("version"), **data}

    def formats(self) -> dict[str, str]:
        """Weight tensor -> format."""
        return {t: a.format for a in self.assignments for t in a.weight_tensors}

    def save(self, path: str | Path) -> Path:
        # load_plan verifies the file before it takes the real name
        return write_atomically(path, json.dumps(self.to_dict(), indent=1, allow_nan=False), verify=load_plan)


def plan_from_dict(data: dict, where: str = "the plan") -> Plan:
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise EdgeTQSError(f"{where} is not an edgetqs plan (format {found!r})", "pass a plan written by `edgetqs plan`")
    if data.get("version") != PLAN_VERSION:
        raise EdgeTQSError(f"{where} is plan version {data.get('version')}; this edgetqs reads version {PLAN_VERSION}",
                           "re-run `edgetqs plan` with this edgetqs")
    body = {k: v for k, v in data.items() if k not in ("format", "version")}
    try:
        body["assignments"] = [Assignment(**a) for a in body["assignments"]]
        plan = Plan(**body)
    except (KeyError, TypeError) as exc:
        raise EdgeTQSError(f"{where} is missing or has unexpected fields ({exc})", "re-run `edgetqs plan`") from exc
    plan.mode = Mode.parse(plan.mode, where)
    return plan


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgeTQSError(f"no such plan file: {path}",
                           "make one with `edgetqs plan MODEL --scores S --target T -o plan.json`") from None
    except (OSError, ValueError) as exc:
        raise EdgeTQSError(f"cannot read plan {path}: {exc}", "pass a plan written by `edgetqs plan`") from exc
    return plan_from_dict(data, str(path))
