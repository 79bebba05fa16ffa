"""Reports on activation ranges: per-layer miss rates, working memory per mode,
and weight histograms against the Gaussian the estimator assumes (PNG)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgetqs.ranges.estimator import weight_rows
from edgetqs.ranges.executor import INPUT_SITE, FakeQuantEngine, observed_range, zero_inclusive


@dataclass
class SiteMisses:
    tensor: str
    op: str
    values: int
    missed: int
    width_ratio: float  # mean predicted range width / mean exact (dynamic) range width
    rule: str  # "closed-form", "carried", "fixed" or "prior" (static fallback)

    @property
    def miss_rate(self) -> float:
        return self.missed / max(self.values, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "miss_rate": self.miss_rate}


def miss_rates(engine: FakeQuantEngine, contexts: np.ndarray, horizon: int = 1) -> list[SiteMisses]:
    """Share of each site's values outside the probabilistic range, over a rollout of ``horizon`` steps.

    The rollout itself runs in the engine's current mode; the observer checks
    every site's float output against the estimator's interval (the range the
    probabilistic mode would quantize with, zero included).
    """
    per_channel = engine.config.granularity == "channel"
    counts: dict[int, list] = {}

    def observe(tensor, node, pre, post, pre_moments, lo, hi):
        predicted = engine.predicted_range(node, tensor, pre_moments, per_channel, post.shape[0])
        lo_p, hi_p = zero_inclusive(post, *predicted)
        missed = int(np.count_nonzero((post < lo_p) | (post > hi_p)))
        exact_lo, exact_hi = observed_range(post, per_channel)
        width = float(np.mean(hi_p - lo_p))
        exact = float(np.mean(np.maximum(exact_hi, 0) - np.minimum(exact_lo, 0)))
        entry = counts.setdefault(tensor, [node, 0, 0, [], []])
        entry[1] += post.size
        entry[2] += missed
        entry[3].append(width)
        entry[4].append(exact)

    engine.observer = observe
    try:
        engine.rollout(contexts, horizon)
    finally:
        engine.observer = None
    return [_site_row(engine, tensor, *entry) for tensor, entry in counts.items()]


def _site_row(engine, tensor, node, values, missed, widths, exacts) -> SiteMisses:
    est = engine.estimator
    if node is None:
        rule, op = "measured", "INPUT"
    else:
        op = node.opcode
        if op == "SOFTMAX":
            rule = "fixed"
        elif tensor in est.fallback_sites:
            rule = "prior"
        elif node.index in est.weight_stats:
            rule = "closed-form"
        else:
            rule = "carried"
    ratio = float(np.mean(widths) / max(np.mean(exacts), 1e-12))
    return SiteMisses(engine.tensor_name(tensor), op, values, missed, ratio, rule)


# -- working memory ------------------------------------------------------------
def working_memory(engine: FakeQuantEngine) -> dict[str, int]:
    """Bytes each activation mode needs beyond the quantized model, for one sample.

    static: two float32 per site (its range; per channel when granularity is channel);
    dynamic: the same ranges plus the largest float32 output any site must buffer
    whole before its range is known;
    probabilistic: alpha/beta per site (in place of the ranges), the estimator's
    weight statistics (two float32 per output channel of each weight tensor; an
    unrolled RNN's shared weights count once), and the fan-in sums of the layer
    being estimated (three float32: E[S], E[S^2], E[Q]);
    hybrid: as probabilistic, plus the largest output of the small sites it
    buffers whole (see executor.py).
    """
    per_channel = engine.config.granularity == "channel"
    shapes = {t.index: t.shape for t in engine.graph.tensors}
    site_shapes = [shapes[engine.graph.inputs[0] if s == INPUT_SITE else s] for s in engine.sites]
    range_floats = sum((shape[-1] if per_channel and shape else 1) for shape in site_shapes)
    largest = max(int(np.prod(shape)) for shape in site_shapes)
    estimator = engine.estimator
    per_weight = {n.inputs[1]: estimator.weight_stats[n.index]
                  for n in estimator.nodes if n.index in estimator.weight_stats}
    stats = sum(s.nbytes_float32 for s in per_weight.values())
    small = [int(np.prod(shape)) for s, shape in zip(engine.sites, site_shapes) if engine.is_small_site(s)]
    probabilistic = 4 * 2 * range_floats + stats + 4 * 3
    return {
        "static": 4 * 2 * range_floats,
        "dynamic": 4 * largest + 4 * 2 * range_floats,
        "probabilistic": probabilistic,
        "hybrid": probabilistic + 4 * max(small, default=0),
    }


# -- weight histograms -----------------------------------------------------------
def weight_histograms(engine: FakeQuantEngine, out_path: str | Path, max_layers: int = 12) -> Path:
    """One panel per weighted layer: its weights standardised per output channel,
    against N(0, 1), the distribution the estimator's surrogate assumes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [n for n in engine.nodes if n.index in engine.estimator.weight_stats][:max_layers]
    cols = min(4, max(len(nodes), 1))
    rows = -(-max(len(nodes), 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    grid = np.linspace(-4, 4, 200)
    gaussian = np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi)
    for ax, node in zip(axes.flat, nodes):
        w = weight_rows(node, engine.estimator.constants).astype(np.float64)
        z = (w - w.mean(axis=1, keepdims=True)) / np.maximum(w.std(axis=1, keepdims=True), 1e-12)
        ax.hist(z.ravel(), bins=40, range=(-4, 4), density=True, color="tab:blue", alpha=0.7)
        ax.plot(grid, gaussian, color="tab:red", lw=1.2)
        kurt = float(np.mean(z**4) - 3)
        ax.set_title(f"{node.opcode} #{node.index}\nexcess kurtosis {kurt:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(nodes):]:
        ax.axis("off")
    fig.suptitle(f"{Path(engine.graph.path).name if engine.graph.path else 'model'}: weights per channel vs N(0,1)",
                 fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
