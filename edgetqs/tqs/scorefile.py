"""The score file (`edgetqs.scores`, version 2; docs/ARCHITECTURE.md) and its CSV twin.

One format for every sensitivity method (edgetqs/sensitivity.py): ``method``
names the method, each unit's ``score`` is that method's number for it (TQS:
the gamma of the method's probe; a baseline: its sensitivity ``s_l``), and the
method's cost model turns it into the planner's cost. TQS also keeps its raw
measurements per probe in ``probes`` ({probe: gamma, delta_norm, curve}).

Version 1 files (gamma_quant/gamma_gauss/... per unit, baselines disguised as
``gamma_quant = log s`` with horizon 1) are upgraded on reading.
Written to a temporary name and renamed, so a path never holds half a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, json_text, read_json, write_atomically, write_json

SCORES_FORMAT = "edgetqs.scores"
SCORES_VERSION = 2
PROBES = ("quant", "gauss")
DEFAULT_METHOD = "tqs-quant"


@dataclass
class ProbeResult:
    """What one TQS probe measured for one unit."""

    gamma: float
    delta_norm: float
    curve: list[float] | None = None  # mean over windows of d_t, t = 1..T


@dataclass
class UnitScore:
    name: str
    weight_tensors: list[str]
    params: int
    score: float | None = None  # the method's sensitivity of this unit (None: not measured, e.g. dead)
    probes: dict[str, ProbeResult] = field(default_factory=dict)  # TQS only: probe -> its measurements
    dead: bool = False

    def gamma(self, probe: str = "quant") -> float | None:
        result = self.probes.get(probe)
        return None if result is None else result.gamma

    # Read-only views of the probe results under their version-1 names (reports, plots, benchmarks).
    gamma_quant = property(lambda self: self.gamma("quant"))
    gamma_gauss = property(lambda self: self.gamma("gauss"))
    delta_norm_quant = property(lambda self: self._probe_field("quant", "delta_norm"))
    delta_norm_gauss = property(lambda self: self._probe_field("gauss", "delta_norm"))
    curve_quant = property(lambda self: self._probe_field("quant", "curve"))
    curve_gauss = property(lambda self: self._probe_field("gauss", "curve"))

    def _probe_field(self, probe: str, name: str):
        result = self.probes.get(probe)
        return None if result is None else getattr(result, name)


@dataclass
class ScoreFile:
    model: dict  # name, tflite_sha256, source
    settings: dict  # probe, granularity, horizon, windows, seed, probe_bits, contexts, engine, dead_floor
    reference: dict  # windows_used, windows_blown_up
    units: list[UnitScore] = field(default_factory=list)
    method: str = DEFAULT_METHOD  # the sensitivity method's registry name (edgetqs/sensitivity.py)
    format: str = SCORES_FORMAT
    version: int = SCORES_VERSION

    def to_dict(self) -> dict:
        data = asdict(self)
        return {"format": data.pop("format"), "version": data.pop("version"), **data}

    def unit(self, name: str) -> UnitScore:
        for u in self.units:
            if u.name == name:
                return u
        raise EdgeTQSError(f"the score file has no unit '{name}'", f"units: {', '.join(u.name for u in self.units)}")

    def gammas(self, probe: str = "quant") -> dict[str, float]:
        """Unit -> gamma for one probe (units without that probe left out)."""
        return {u.name: u.gamma(probe) for u in self.units if u.gamma(probe) is not None}

    def scores(self) -> dict[str, float]:
        """Unit -> the method's score (units without one left out)."""
        return {u.name: u.score for u in self.units if u.score is not None}

    def save(self, path: str | Path) -> Path:
        return write_json(path, SCORES, self.to_dict(), allow_nan=False)

    def sha256(self) -> str:
        """The sha256 of the file ``save`` writes (what a plan records as its scores' hash)."""
        return hashlib.sha256(json_text(SCORES, self.to_dict(), allow_nan=False).encode()).hexdigest()

    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        write_atomically(path, scores_csv(self))
        return path


def scores_csv(scores: ScoreFile) -> str:
    """One row per unit: name, params, the method's score, both gammas, delta norms, dead flag, final d_T."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["unit", "params", f"score_{scores.method}", "gamma_quant", "gamma_gauss", "delta_norm_quant", "delta_norm_gauss",
                     "d_T_quant", "d_T_gauss", "dead", "weight_tensors"])
    for u in scores.units:
        writer.writerow([u.name, u.params, _cell(u.score), _cell(u.gamma_quant), _cell(u.gamma_gauss),
                         _cell(u.delta_norm_quant), _cell(u.delta_norm_gauss),
                         _cell(u.curve_quant[-1] if u.curve_quant else None),
                         _cell(u.curve_gauss[-1] if u.curve_gauss else None),
                         int(u.dead), " ".join(u.weight_tensors)])
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


UNIT_FIELDS = {f.name for f in fields(UnitScore)}
PROBE_FIELDS = {f.name for f in fields(ProbeResult)}
SENSITIVITY_FLOOR = 1e-30  # the smallest sensitivity a log is taken of (version 1 stored log(max(s, floor)))


def _from_v1(data: dict) -> dict:
    """Version 1 -> 2: probe results into ``probes``; the method and each unit's score made explicit."""
    settings = data.get("settings", {})
    baseline = settings.get("baseline")
    units = []
    for unit in data.get("units", []):
        unit = dict(unit)
        probes = {}
        for probe in PROBES:
            gamma, norm, curve = (unit.pop(f"{key}_{probe}", None) for key in ("gamma", "delta_norm", "curve"))
            if gamma is not None:
                probes[probe] = {"gamma": gamma, "delta_norm": norm, "curve": curve}
        gamma = next((probes[p]["gamma"] for p in PROBES if p in probes), None)  # the v1 planner's choice
        if baseline and gamma is not None:
            gamma = math.exp(gamma) if gamma > math.log(SENSITIVITY_FLOOR) else 0.0  # gamma_quant was log(s)
        units.append({**unit, "score": gamma, "probes": {} if baseline else probes})
    if baseline:
        method = baseline.replace("_", "-")
    else:
        method = "tqs-quant" if any("quant" in u["probes"] for u in units) else "tqs-gauss"
    return {**data, "method": method, "units": units}


SCORES = JsonKind(SCORES_FORMAT, SCORES_VERSION, "score file",
                  "run `edgetqs score MODEL -o scores.json` with this edgetqs and pass the JSON it writes",
                  upgrades={1: _from_v1})


def load_scores(path: str | Path) -> ScoreFile:
    """Read and validate a score file (format, version, required fields); version 1 is upgraded."""
    data = read_json(path, SCORES)
    try:
        units = [_unit(u) for u in data["units"]]
        scores = ScoreFile(data["model"], data["settings"], data["reference"], units, data["method"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise EdgeTQSError(f"score file {path} is missing or has unexpected fields ({exc})", "re-run `edgetqs score`") from exc
    if not units:
        raise EdgeTQSError(f"score file {path} has no units", "re-run `edgetqs score`")
    return scores


def _unit(unit: dict) -> UnitScore:
    missing = UNIT_FIELDS - set(unit)
    if missing:
        raise KeyError(f"unit {unit.get('name')!r} lacks {sorted(missing)}")
    probes = {}
    for probe, result in unit["probes"].items():
        if PROBE_FIELDS - set(result):
            raise KeyError(f"unit {unit['name']!r} probe {probe!r} lacks {sorted(PROBE_FIELDS - set(result))}")
        probes[probe] = ProbeResult(**result)
    return UnitScore(**{**unit, "probes": probes})
