"""`edgetqs ranges`: probabilistic activation ranges for a model (issue #8).

Calibrates the estimator on a few windows, writes the static int8 activation
ranges it predicts (the converter's ``activation_ranges`` hook), a report with
per-layer miss rates and the working memory of each activation mode, weight
histograms against the Gaussian the estimator assumes, and optionally the
static/dynamic/probabilistic rollout comparison.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

from edgetqs.cli.common import add_command, add_json_flag, add_model_argument, console, print_json
from edgetqs.errors import EdgeTQSError
from edgetqs.files import companion_path, write_atomically

EXAMPLES = [
    "edgetqs ranges zoo:tcn-lorenz96 -o tcn.ranges.json",
    "edgetqs ranges model.tflite --data series.csv --windows 8 --granularity channel --compare -o ranges.json",
]


def register(subparsers) -> None:
    parser = add_command(subparsers, "ranges", "estimate activation ranges (probabilistic) and compare range modes",
                         EXAMPLES, run)
    add_model_argument(parser)
    parser.add_argument("-o", "--output", default="ranges.json", help="activation-range JSON to write")
    parser.add_argument("--data", help="series (.csv/.npy) for calibration windows; default: the model's free run")
    parser.add_argument("--windows", type=int, default=8, help="calibration windows (default 8)")
    parser.add_argument("--horizon", type=int, default=20, help="model calls rolled out for export/miss rates")
    parser.add_argument("--granularity", default="tensor", choices=["tensor", "channel"])
    parser.add_argument("--stride", type=int, default=1, help="convolution sampling stride of the estimator")
    parser.add_argument("--weight-stats", default="channel", choices=["channel", "layer"],
                        help="estimator weight statistics per output channel (default) or one pair per layer")
    parser.add_argument("--weight-bits", type=int, default=8, help="weight fake-quantization bits (0: float)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true",
                        help="also roll out static/dynamic/probabilistic at int8 and int4 activations")
    add_json_flag(parser)


def run(args) -> int:
    from edgetqs.zoo.resolve import load_model
    from edgetqs.ranges.calibration import calibrate
    from edgetqs.ranges.executor import FakeQuantEngine, QuantConfig
    from edgetqs.ranges.export import estimator_ranges, write_ranges_json
    from edgetqs.ranges.report import miss_rates, weight_histograms, working_memory

    if args.windows < 1 or args.horizon < 1 or args.stride < 1:
        raise EdgeTQSError("--windows, --horizon and --stride must be at least 1", "pass positive counts")
    canonical = load_model(args.model)
    graph, spec = canonical.graph, canonical.rollout
    weight_bits = args.weight_bits or None
    per_channel_weights = args.weight_stats == "channel"
    engine = FakeQuantEngine(graph, spec, QuantConfig("probabilistic", 8, weight_bits, args.granularity),
                             stride=args.stride, per_channel_weights=per_channel_weights)
    calibration, tests = _windows(args, engine, spec)
    with console.status("calibrating and estimating ranges", spinner="dots") if not args.json else nullcontext():
        calibrate(engine, calibration)
        ranges = estimator_ranges(engine, calibration, args.horizon)
        miss = miss_rates(engine, tests, args.horizon)
    out = Path(args.output)
    write_ranges_json(ranges, out, graph.sha256)
    png = weight_histograms(engine, companion_path(out, ".png", "weights"))
    report = {"model": canonical.card.name, "ranges": str(out), "weights_png": str(png),
              "calibration_windows": len(calibration), "granularity": args.granularity, "stride": args.stride,
              "weight_stats": args.weight_stats,
              "memory_bytes": working_memory(engine), "miss": [m.to_dict() for m in miss]}
    if args.compare:
        from edgetqs.ranges.compare import compare_modes, table

        comparison = compare_modes(graph, spec, calibration, tests, args.horizon, granularity=args.granularity,
                                   weight_bits=weight_bits, stride=args.stride,
                                   per_channel_weights=per_channel_weights)
        report["comparison"] = table(comparison)
    report_path = write_atomically(companion_path(out, ".json", "report"), json.dumps(report, indent=2))
    report["report"] = str(report_path)
    if args.json:
        print_json(report)
    else:
        _print(report)
    return 0


def _windows(args, engine, spec):
    """Calibration windows and separate test contexts (from the data, or the model's free run)."""
    from edgetqs.tqs import contexts as ctx

    if args.data:
        both = ctx.from_file(args.data, spec, 2 * args.windows, args.horizon).windows
        return both[0::2], both[1::2]
    from edgetqs.engine import Engine

    free = ctx.free_run(Engine(engine.graph, spec), spec, 2 * args.windows, args.seed).windows
    return free[: args.windows], free[args.windows :]


def _print(report: dict) -> None:
    from rich.table import Table

    table = Table(title=f"probabilistic ranges: {report['model']} ({report['granularity']})")
    for column in ("tensor", "op", "rule", "miss rate", "width / exact"):
        table.add_column(column, justify="left" if column in ("tensor", "op", "rule") else "right")
    for m in report["miss"]:
        table.add_row(m["tensor"][-48:], m["op"], m["rule"], f"{m['miss_rate']:.4f}", f"{m['width_ratio']:.2f}")
    console.print(table)
    console.print(f"working memory (bytes per sample): {report['memory_bytes']}")
    if "comparison" in report:
        cmp_table = Table(title="rollout error vs float (weights int8)")
        for column in report["comparison"][0]:
            cmp_table.add_column(column)
        for row in report["comparison"]:
            cmp_table.add_row(*(str(v) for v in row.values()))
        console.print(cmp_table)
    console.print(f"wrote {report['ranges']}, {report['report']}, {report['weights_png']}")
