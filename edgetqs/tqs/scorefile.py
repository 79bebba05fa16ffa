"""The score file (`edgetqs.scores`, version 1; docs/ARCHITECTURE.md) and its CSV twin.

Written to a temporary name and renamed, so a path never holds half a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgetqs.errors import EdgeTQSError
from edgetqs.files import JsonKind, read_json, write_atomically, write_json

SCORES_FORMAT = "edgetqs.scores"
SCORES_VERSION = 1
SCORES = JsonKind(SCORES_FORMAT, SCORES_VERSION, "score file",
                  "run `edgetqs score MODEL -o scores.json` with this edgetqs and pass the JSON it writes")
PROBES = ("quant", "gauss")


@dataclass
class UnitScore:
    name: str
    weight_tensors: list[str]
    params: int
    gamma_quant: float | None = None
    gamma_gauss: float | None = None
    delta_norm_quant: float | None = None
    delta_norm_gauss: float | None = None
    curve_quant: list[float] | None = None  # mean over windows of d_t, t = 1..T
    curve_gauss: list[float] | None = None
    dead: bool = False

    def gamma(self, probe: str = "quant") -> float | None:
        return getattr(self, f"gamma_{probe}")


@dataclass
class ScoreFile:
    model: dict  # name, tflite_sha256, source
    settings: dict  # probe, granularity, horizon, windows, seed, probe_bits, contexts, engine, dead_floor
    reference: dict  # windows_used, windows_blown_up
    units: list[UnitScore] = field(default_factory=list)
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

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        return write_json(path, SCORES, self.to_dict(), allow_nan=False)

    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        write_atomically(path, scores_csv(self))
        return path


def scores_csv(scores: ScoreFile) -> str:
    """One row per unit: name, params, both gammas, delta norms, dead flag, final d_T."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["unit", "params", "gamma_quant", "gamma_gauss", "delta_norm_quant", "delta_norm_gauss",
                     "d_T_quant", "d_T_gauss", "dead", "weight_tensors"])
    for u in scores.units:
        writer.writerow([u.name, u.params, _cell(u.gamma_quant), _cell(u.gamma_gauss),
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


def load_scores(path: str | Path) -> ScoreFile:
    """Read and validate a score file (format, version, required fields)."""
    path = Path(path)
    data = read_json(path, SCORES)
    try:
        for unit in data["units"]:
            missing = UNIT_FIELDS - set(unit)
            if missing:
                raise KeyError(f"unit {unit.get('name')!r} lacks {sorted(missing)}")
        units = [UnitScore(**u) for u in data["units"]]
        scores = ScoreFile(data["model"], data["settings"], data["reference"], units)
    except (KeyError, TypeError) as exc:
        raise EdgeTQSError(f"score file {path} is missing or has unexpected fields ({exc})", "re-run `edgetqs score`") from exc
    if not units:
        raise EdgeTQSError(f"score file {path} has no units", "re-run `edgetqs score`")
    return scores
