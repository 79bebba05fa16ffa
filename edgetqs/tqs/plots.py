"""Score plots (matplotlib, Agg): gamma per unit for both probes, and the divergence curves d_t."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from edgetqs.files import save_figure  # noqa: E402

from edgetqs.tqs.scorefile import PROBES, ScoreFile  # noqa: E402


def plot_scores(scores: ScoreFile, path: str | Path) -> Path:
    """Grouped bars: gamma_quant and gamma_gauss per unit (a method without probes: its score); dead units hatched."""
    units = scores.units
    x = np.arange(len(units))
    probes = [p for p in PROBES if any(u.gamma(p) is not None for u in units)]
    series = {f"gamma_{p}": [u.gamma(p) for u in units] for p in probes} or {scores.method: [u.score for u in units]}
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(units) + 2), 4.2))
    for i, (label, column) in enumerate(series.items()):
        values = [v if v is not None else np.nan for v in column]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        for bar, unit in zip(bars, units):
            if unit.dead:
                bar.set_hatch("//")
                bar.set_alpha(0.4)
    ax.set_xticks(x, [u.name for u in units], rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("gamma (per model call)" if probes else f"{scores.method} sensitivity")
    if not probes and all(v is None or v > 0 for v in series[scores.method]):
        ax.set_yscale("log")
    ax.set_title(f"{scores.method} scores — {scores.model['name']} ({scores.settings['granularity']}, "
                 f"T={scores.settings['horizon']}, K={scores.settings['windows']})")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.legend()
    return _save(fig, path)


def plot_curves(scores: ScoreFile, path: str | Path, probe: str | None = None) -> Path:
    """d_t against t per unit (log scale), for one probe (the first one run by default).
    Only TQS score files have curves: see ``has_curves``."""
    probe = probe or next(p for p in PROBES if any(u.gamma(p) is not None for u in scores.units))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for unit in scores.units:
        curve = getattr(unit, f"curve_{probe}")
        if not curve or unit.dead:
            continue
        steps = np.arange(1, len(curve) + 1)
        ax.plot(steps, np.maximum(curve, 1e-30), label=unit.name, linewidth=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("rollout step t (model calls)")
    ax.set_ylabel(f"d_t, mean over windows ({probe} probe)")
    ax.set_title(f"Divergence from the float rollout — {scores.model['name']}")
    if len(scores.units) <= 20:
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def has_curves(scores: ScoreFile) -> bool:
    return any(u.probes for u in scores.units)


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path)
