"""Static vs dynamic vs probabilistic activation ranges on one model: the comparison
the benchmark and ``edgetqs ranges`` report.

Every quantized rollout is judged against the float model's own rollout from the
same contexts (METHOD.md §5 metrics); weights are fake-quantized the same way in
every row, so rows differ only in how activation ranges are chosen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgetqs.engine import Engine
from edgetqs.metrics import rollout_metrics
from edgetqs.model.card import RolloutSpec
from edgetqs.model.tflite_graph import TFLiteGraph
from edgetqs.ranges.calibration import calibrate, check_windows
from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
from edgetqs.ranges.report import miss_rates, working_memory

COMPARED_MODES = ("static", "dynamic", "probabilistic", "hybrid")


@dataclass
class ModeRow:
    mode: str
    act_bits: int | None  # None: float activations (weight-only reference row)
    rmse: float
    rmse_step1: float
    valid_prediction_time: float
    blow_up_fraction: float
    seconds_per_step: float


@dataclass
class Comparison:
    rows: list[ModeRow]
    miss: list[dict]  # per site, probabilistic ranges, over the test rollouts
    memory: dict[str, int]
    horizon: int
    calibration_windows: int
    granularity: str
    weight_bits: int | None
    fallback_sites: int
    sites: int
    extra: dict = field(default_factory=dict)

    def row(self, mode: str, act_bits: int | None) -> ModeRow:
        return next(r for r in self.rows if r.mode == mode and r.act_bits == act_bits)


def compare_modes(graph: TFLiteGraph, spec: RolloutSpec, calibration: np.ndarray, contexts: np.ndarray,
                  horizon: int, act_bits: tuple[int, ...] = (8, 4), granularity: str = "tensor",
                  weight_bits: int | None = 8, stride: int = 1, per_channel_weights: bool = True,
                  exact_mean: bool = False) -> Comparison:
    contexts = check_windows(contexts, "test contexts")
    reference = Engine(graph, spec).rollout(contexts, horizon)
    engine = FakeQuantEngine(graph, spec, QuantConfig("float", 8, weight_bits, granularity), stride=stride,
                             per_channel_weights=per_channel_weights, exact_mean=exact_mean)
    calibrate(engine, calibration)
    rows = [_rollout_row(engine, QuantConfig("float", 8, weight_bits, granularity), contexts, horizon, reference)]
    for bits in act_bits:
        for mode in COMPARED_MODES:
            rows.append(_rollout_row(engine, QuantConfig(mode, bits, weight_bits, granularity), contexts, horizon,
                                     reference))
    engine.config = QuantConfig("probabilistic", act_bits[0], weight_bits, granularity)
    miss = [m.to_dict() for m in miss_rates(engine, contexts, horizon)]
    return Comparison(rows, miss, working_memory(engine), horizon, len(calibration), granularity, weight_bits,
                      len(engine.estimator.fallback_sites), len(engine.sites))


def _rollout_row(engine, config, contexts, horizon, reference) -> ModeRow:
    engine.config = config
    start = time.perf_counter()
    trajectory = engine.rollout(contexts, horizon)
    seconds = (time.perf_counter() - start) / horizon
    m = rollout_metrics(trajectory, reference)
    return ModeRow(config.mode, config.act_bits if config.mode != "float" else None, m.rmse, m.rmse_per_step[0],
                   m.mean_valid_prediction_time, m.blow_up_fraction, seconds)


def table(comparison: Comparison) -> list[dict]:
    """The rows as plain dicts for printing (rich table or JSON)."""
    return [{"mode": r.mode, "act_bits": r.act_bits or "float", "rmse": round(r.rmse, 5),
             "rmse_step1": round(r.rmse_step1, 6), "vpt": round(r.valid_prediction_time, 1),
             "blow_up": round(r.blow_up_fraction, 3), "ms_per_step": round(1000 * r.seconds_per_step, 2)}
            for r in comparison.rows]
