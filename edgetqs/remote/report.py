"""The validation report: one self-contained HTML page per board run.

Plots are matplotlib PNGs inlined as base64, so the page can be mailed or
archived on its own: rollout error per horizon step, the latency histogram,
peak memory; then the board's facts, its runtime, thermals and every check
with its verdict.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from edgetqs.remote.validate import Validation  # noqa: E402
from edgetqs.files import write_atomically  # noqa: E402
from edgetqs.htmlpage import image, png_base64, table  # noqa: E402

STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
h1{margin-bottom:.2em} .verdict{font-size:1.4em;font-weight:bold;padding:.4em .8em;border-radius:6px;display:inline-block}
.pass{background:#d8f5d0;color:#145a0a} .fail{background:#fadbd8;color:#8a1208}
table{border-collapse:collapse;margin:.6em 0 1.4em} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%} code{font-size:.9em}
"""


def error_curves_png(validation: Validation) -> str:
    return png_base64(error_curves_figure(validation))


def error_curves_figure(validation: Validation):
    """RMSE per horizon step: board and host vs the float model, and board vs host.

    Errors span decades, so the axis is logarithmic; a log axis cannot show 0,
    so a curve that is 0 throughout says so in the legend, and when every curve
    is (the board reproduces the float model exactly) the axis turns linear and
    says "exact match" instead of showing nothing.
    """
    figure, axis = plt.subplots(figsize=(7, 3.6))
    steps = np.arange(1, validation.vs_float.horizon + 1)
    curves = [("board vs float model", validation.vs_float, "-o"),
              ("host (same .tflite) vs float model", validation.host_vs_float, "--"),
              ("board vs host", validation.vs_host, ":s")]
    if validation.vs_truth is not None:
        curves.append(("board vs truth", validation.vs_truth, "-."))
    values = [np.asarray(metrics.rmse_per_step, dtype=float) for _, metrics, _ in curves]
    exact = not any(v.any() for v in values)
    for (label, _, style), v in zip(curves, values):
        if exact:
            axis.plot(steps, v, style, label=label, markersize=3)
            continue
        if not v.any():
            label += " (identical: 0 at every step)"
        axis.plot(steps, np.where(v > 0, v, np.nan), style, label=label, markersize=3)
    if exact:
        axis.set_ylim(-1, 1)
        axis.text(0.5, 0.65, "exact match: every error is 0 at every step", transform=axis.transAxes,
                  ha="center", fontsize=11, color="#145a0a")
    else:
        axis.set_yscale("log")
    axis.set_xlabel("horizon step")
    axis.set_ylabel("RMSE")
    axis.set_title("Rollout error per horizon step")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    return figure


def latency_histogram_png(validation: Validation) -> str:
    figure, axis = plt.subplots(figsize=(7, 3.2))
    runs = [(label, np.asarray(run.latency_seconds, dtype=float) * 1000)
            for label, run in (("board", validation.board), ("host", validation.host))]
    every = np.concatenate([ms for _, ms in runs if ms.size] or [np.ones(1)])
    # Board and host can be orders of magnitude apart: log-spaced bins on a log axis.
    bins = np.geomspace(max(every.min(), 1e-6) * 0.9, every.max() * 1.1, 40)
    for label, ms in runs:
        if ms.size:
            axis.hist(ms, bins=bins, alpha=0.6, label=f"{label} ({ms.size} steps)")
    axis.set_xscale("log")
    p = validation.board.results.get("latency_ms", {})
    for name, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        if name in p:
            axis.axvline(p[name], color="k", linestyle=style, linewidth=1, label=f"board {name} {p[name]:.3g} ms")
    axis.set_xlabel("one model step (ms)")
    axis.set_ylabel("steps")
    axis.set_title("Latency per rollout step")
    axis.legend(fontsize=8)
    return png_base64(figure)


def memory_png(validation: Validation) -> str:
    figure, axis = plt.subplots(figsize=(5, 2.2))
    runs = [("board", validation.board.results.get("peak_memory_kib")),
            ("host", validation.host.results.get("peak_memory_kib"))]
    labels = [name for name, kib in runs if kib]
    values = [kib / 1024 for _, kib in runs if kib]
    axis.barh(labels, values, color=["#4a7ebb", "#aaaaaa"][: len(values)])
    for y, value in enumerate(values):
        axis.text(value, y, f" {value:.1f} MiB", va="center")
    axis.set_xlabel("peak resident memory of the runner process (VmHWM, MiB)")
    axis.set_xlim(0, max(values or [1]) * 1.3)
    return png_base64(figure)


def _table(rows, header=None) -> str:
    # Validation tables show what the board did not report as "not exposed".
    return table(rows, header, missing="not exposed")


def _thermal_value(facts: dict, key: str):
    value = facts.get(key)
    return "none (all clear)" if key == "throttled_flags" and value == [] else value


def render_html(validation: Validation) -> str:
    data = validation.to_dict()
    verdict = "PASS" if validation.passed else "FAIL"
    runtime = data["runtime"] or {}
    manifest = validation.bundle_manifest
    thermal = data.get("thermal") or {}
    metric_rows = [(name, *(data[key][m] if data[key] else None for key in
                            ("vs_float", "host_vs_float", "vs_host", "vs_truth")))
                   for name, m in (("RMSE (horizon)", "rmse"), ("RMSE step 1", "rmse_step1"),
                                   ("valid prediction time (steps)", "valid_prediction_time"),
                                   ("anomaly correlation, last step", "acc_final"),
                                   ("blow-up fraction", "blow_up_fraction"))]
    sections = [
        f"<h1>edgetqs validation: {html.escape(validation.board_name)}</h1>",
        f'<p class="verdict {verdict.lower()}">{verdict}</p>',
        f"<p>model sha256 <code>{html.escape(manifest['model']['sha256'])}</code>, "
        f"bundle created {html.escape(str(manifest.get('created')))}, "
        f"{data['vs_float']['horizon']} steps from {len(validation.board.trajectories)} context windows; "
        f"the host run differs from the bundle's host reference by at most {data['host_vs_bundle_reference']:.3g}.</p>",
        "<h2>Checks</h2>",
        _table([(c.name, "ok" if c.passed else "FAIL", c.detail) for c in validation.checks],
               ["check", "verdict", "detail"]),
        "<h2>Rollout error</h2>", image(error_curves_png(validation), "rollout error per horizon step"),
        _table(metric_rows, ["metric", "board vs float", "host vs float", "board vs host", "board vs truth"]),
        "<h2>Latency</h2>", image(latency_histogram_png(validation), "latency histogram"),
        _table([(who, *(run.get(k) for k in ("p50", "p90", "p99", "mean", "count")))
                for who, run in (("board", data["latency_ms"] or {}), ("host", data["host_latency_ms"] or {}))],
               ["", "p50 ms", "p90 ms", "p99 ms", "mean ms", "steps"]),
        "<h2>Memory</h2>", image(memory_png(validation), "peak memory"),
        "<h2>Board and runtime</h2>",
        _table([(k, v) for k, v in (data["board_facts"] or {}).items()]
               + [(f"runtime {k}", v) for k, v in runtime.items()]),
        "<h2>Temperature and throttling</h2>",
        _table([(label, *(_thermal_value(thermal.get(when) or {}, key) for when in ("before", "after")))
                for label, key in (("thermal zones (°C)", "thermal_zones_c"),
                                   ("vcgencmd measure_temp", "vcgencmd_temp"),
                                   ("vcgencmd get_throttled", "vcgencmd_throttled"),
                                   ("throttling flags", "throttled_flags"),
                                   ("tegrastats", "tegrastats"))],
               ["", "before the rollouts", "after"]),
        "<h2>Thresholds</h2>", _table(sorted(validation.thresholds.items())),
    ]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>edgetqs validation {html.escape(validation.board_name)}: {verdict}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")


def write_report(validation: Validation, path: str | Path) -> Path:
    """Write the page to ``path`` (via a temporary name, so no half-written report)."""
    return write_atomically(path, render_html(validation))
