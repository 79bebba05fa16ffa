"""`edgetqs score`: TQS sensitivity scores per unit -> JSON + CSV + PNG plots."""

from __future__ import annotations

from pathlib import Path

from edgetqs.cli.common import add_command, add_json_flag, add_model_argument, console, line, print_json, styled
from edgetqs.files import companion_path

EXAMPLES = [
    "edgetqs score zoo:mlp-lorenz96 -o scores.json",
    "edgetqs score model.tflite --data series.csv --probe both --granularity block --horizon 32 --windows 16 -o scores.json",
]


def output_paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    return {"json": out, "csv": companion_path(out, ".csv"), "scores_png": companion_path(out, ".png", "scores"),
            "curves_png": companion_path(out, ".png", "curves")}


def run(args) -> int:
    from edgetqs.zoo.resolve import load_model
    from edgetqs.tqs.plots import plot_curves, plot_scores
    from edgetqs.tqs.score import ScoreSettings, score_model

    settings = ScoreSettings(probe=args.probe, granularity=args.granularity, block_regex=args.block_regex,
                             horizon=args.horizon, windows=args.windows, seed=args.seed, probe_bits=args.probe_bits,
                             engine=args.engine, data=args.data).validate()
    canonical = load_model(args.model)
    graph, card = canonical.graph, canonical.card
    notes: list[str] = []
    scores = score_model(graph, card, settings, progress=not args.json, notes=notes)
    paths = output_paths(args.output)
    scores.save(paths["json"])
    scores.save_csv(paths["csv"])
    plot_scores(scores, paths["scores_png"])
    plot_curves(scores, paths["curves_png"])
    summary = _summary(scores, paths, notes)
    if args.json:
        print_json(summary)
    else:
        _print_table(scores, summary)
    return 0


def _summary(scores, paths, notes) -> dict:
    probe = "quant" if scores.settings["probe"] != "gauss" else "gauss"
    ranked = sorted((u for u in scores.units if not u.dead), key=lambda u: u.gamma(probe), reverse=True)
    return {"model": scores.model, "settings": scores.settings, "reference": scores.reference,
            "units": len(scores.units), "dead": [u.name for u in scores.units if u.dead],
            "most_sensitive": [{"unit": u.name, f"gamma_{probe}": u.gamma(probe)} for u in ranked[:5]],
            "notes": notes, "files": {k: str(v) for k, v in paths.items()}}


def _print_table(scores, summary) -> None:
    from rich.table import Table

    for note in summary["notes"]:
        console.print(line(styled("note:", "yellow"), f" {note}"))
    table = Table(title=f"TQS scores: {scores.model['name']} (engine {scores.settings['engine']})")
    for column in ("unit", "params", "gamma_quant", "gamma_gauss", "dead"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for u in scores.units:
        table.add_row(u.name, str(u.params), _fmt(u.gamma_quant), _fmt(u.gamma_gauss), "dead" if u.dead else "")
    console.print(table)
    blown = scores.reference["windows_blown_up"]
    if blown:
        console.print(line(styled(f"{len(blown)} reference window(s) blew up and were left out:", "yellow"), f" {blown}"))
    for path in summary["files"].values():
        console.print(f"wrote {path}")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def register(subparsers):
    parser = add_command(subparsers, "score", "score each unit's quantization sensitivity (TQS) by rolling the model out",
                         EXAMPLES, run)
    add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="SCORES.json",
                        help="score file to write; the CSV and PNG plots go next to it")
    parser.add_argument("--data", metavar="FILE", help="CSV or NPY series [time, features] for context windows "
                        "(default: data-free, the model's own free run after a burn-in)")
    parser.add_argument("--probe", choices=("quant", "gauss", "both"), default="both", help="perturbation probe(s)")
    parser.add_argument("--granularity", choices=("tensor", "layer", "block"), default="layer", help="what one score is about")
    parser.add_argument("--block-regex", metavar="R", help="group layers into blocks by this regex's first capture group")
    parser.add_argument("--horizon", type=int, default=32, metavar="T", help="rollout length in model calls")
    parser.add_argument("--windows", type=int, default=16, metavar="K", help="number of context windows")
    parser.add_argument("--seed", type=int, default=0, help="seed for the Gaussian probe and data-free contexts")
    parser.add_argument("--probe-bits", type=int, default=4, metavar="B", help="bit-width of the reference quantizer")
    parser.add_argument("--engine", choices=("numba", "litert"), default="numba",
                        help="rollout engine; litert is the black-box path (also the fallback)")
    add_json_flag(parser)
