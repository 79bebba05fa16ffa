"""`edgetqs score`: TQS sensitivity scores per unit -> JSON + CSV + PNG plots."""

from __future__ import annotations

from pathlib import Path

from edgetqs.cli.common import add_command, add_json_flag, add_model_argument, console, line, print_json, styled
from edgetqs.files import companion_path
from edgetqs.tqs.adaptive import DEFAULT_SETTLED
from edgetqs.tqs.probes import PROBE_CHOICES

EXAMPLES = [
    "edgetqs score zoo:mlp-lorenz96 -o scores.json",
    "edgetqs score model.tflite --data series.csv --probe both --granularity block --horizon 32 --windows 16 -o scores.json",
    "edgetqs score zoo:mlp-lorenz96 --method weight-error -o weight-error.scores.json",
    "edgetqs score zoo:patchtf-118m --adaptive -o scores.json    # grow windows/horizon until the ranking settles",
    "edgetqs score zoo:mlp-ks --scheduler tcp://127.0.0.1:8786 -o scores.json    # tasks on a Dask cluster",
]


def output_paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    return {"json": out, "csv": companion_path(out, ".csv"), "scores_png": companion_path(out, ".png", "scores"),
            "curves_png": companion_path(out, ".png", "curves")}


def run(args) -> int:
    from edgetqs.api import score  # TensorFlow, AEQ, matplotlib: loaded when a command runs, not for --help
    from edgetqs.tqs.plots import has_curves, plot_curves, plot_scores

    notes: list[str] = []
    scores = score(args.model, args.method, progress=not args.json, notes=notes, probe=args.probe,
                   granularity=args.granularity, block_regex=args.block_regex, horizon=args.horizon,
                   windows=args.windows, seed=args.seed, probe_bits=args.probe_bits, engine=args.engine, data=args.data,
                   adaptive=args.adaptive, settled=args.settled, scheduler=args.scheduler)
    paths = output_paths(args.output)
    scores.save(paths["json"])
    scores.save_csv(paths["csv"])
    plot_scores(scores, paths["scores_png"])
    if has_curves(scores):
        plot_curves(scores, paths["curves_png"])
    else:
        del paths["curves_png"]  # a method that does not roll out has no d_t curves
    summary = _summary(scores, paths, notes)
    if args.json:
        print_json(summary)
    else:
        _print_table(scores, summary)
    return 0


def _summary(scores, paths, notes) -> dict:
    ranked = sorted((u for u in scores.units if not u.dead and u.score is not None), key=lambda u: u.score, reverse=True)
    return {"model": scores.model, "method": scores.method, "settings": scores.settings, "reference": scores.reference,
            "units": len(scores.units), "dead": [u.name for u in scores.units if u.dead],
            "most_sensitive": [{"unit": u.name, "score": u.score} for u in ranked[:5]],
            "notes": notes, "files": {k: str(v) for k, v in paths.items()}}


def _print_table(scores, summary) -> None:
    from rich.table import Table

    for note in summary["notes"]:
        console.print(line(styled("note:", "yellow"), f" {note}"))
    engine = f", engine {scores.settings['engine']}" if "engine" in scores.settings else ""
    table = Table(title=f"{scores.method} scores: {scores.model['name']}{engine}")
    for column in ("unit", "params", "score", "gamma_quant", "gamma_gauss", "dead"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for u in scores.units:
        table.add_row(u.name, str(u.params), _fmt(u.score), _fmt(u.gamma_quant), _fmt(u.gamma_gauss),
                      "dead" if u.dead else "")
    console.print(table)
    blown = scores.reference.get("windows_blown_up")
    if blown:
        console.print(line(styled(f"{len(blown)} reference window(s) blew up and were left out:", "yellow"), f" {blown}"))
    for path in summary["files"].values():
        console.print(f"wrote {path}")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def register(subparsers):
    from edgetqs.engine.backends import backend_names
    from edgetqs.sensitivity import DEFAULT_METHOD, get_method, method_names

    parser = add_command(subparsers, "score", "score each unit's quantization sensitivity (TQS by default) by "
                         "rolling the model out", EXAMPLES, run)
    add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="SCORES.json",
                        help="score file to write; the CSV and PNG plots go next to it")
    parser.add_argument("--data", metavar="FILE", help="CSV or NPY series [time, features] for context windows "
                        "(default: data-free, the model's own free run after a burn-in)")
    parser.add_argument("--method", choices=method_names(), default=DEFAULT_METHOD, metavar="METHOD",
                        help="sensitivity method: " + "; ".join(f"{n}: {get_method(n).summary}" for n in method_names()))
    parser.add_argument("--probe", choices=PROBE_CHOICES, default="both",
                        help="TQS perturbation probe(s) to run (the method's probe drives the cost)")
    parser.add_argument("--granularity", choices=("tensor", "layer", "block"), default="layer", help="what one score is about")
    parser.add_argument("--block-regex", metavar="R", help="group layers into blocks by this regex's first capture group")
    parser.add_argument("--horizon", type=int, default=32, metavar="T", help="rollout length in model calls")
    parser.add_argument("--windows", type=int, default=16, metavar="K", help="number of context windows")
    parser.add_argument("--seed", type=int, default=0, help="seed for the Gaussian probe and data-free contexts")
    parser.add_argument("--probe-bits", type=int, default=4, metavar="B", help="bit-width of the reference quantizer")
    parser.add_argument("--engine", choices=backend_names(), default=backend_names()[0],
                        help="rollout backend; litert is the black-box path (also the fallback), fake-quant rolls "
                             "out the int8 fake-quantized model")
    parser.add_argument("--adaptive", action="store_true",
                        help="start with few windows and a short horizon and grow them (up to --windows/--horizon) "
                             "only until the ranking is settled (much less work on large models)")
    parser.add_argument("--settled", type=float, default=DEFAULT_SETTLED, metavar="RHO",
                        help="Spearman between successive rankings that counts as settled (--adaptive)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the sweep's tasks on a Dask cluster: tcp://HOST:PORT of a running scheduler, "
                             "or local:N for N local workers (default: this process)")
    add_json_flag(parser)
