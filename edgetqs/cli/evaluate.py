"""`edgetqs evaluate MODEL`: the chosen methods' plans at the chosen budgets, exported,
verified and rolled out in LiteRT; error-vs-bytes fronts, win tables and an HTML report."""

from __future__ import annotations

from rich.status import Status
from rich.table import Table

from edgetqs.cli.common import add_command, add_json_flag, console, print_json
from edgetqs.errors import EdgeTQSError
from edgetqs.quant.modes import MODE_NAMES

QUICK_METHODS = ["tqs-quant", "tqs-saturation", "verified-search", "weight-error", "single-step",
                 "uniform-at-budget", "uniform-int4"]


def _numbers(text: str | None, kind, what: str) -> list:
    if not text:
        return []
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EdgeTQSError(f"{what} '{text}' is not a comma-separated list of numbers",
                           f"write it like {'3,4,5,6' if kind is float else '20000,40000'}") from None


def _settings(args):
    from edgetqs.evaluation import EvaluationSettings

    settings = EvaluationSettings(budgets_bytes=_numbers(args.budget_bytes, int, "--budget-bytes"),
                                  data=args.data, score_contexts=args.score_contexts, seed=args.seed,
                                  search_evaluations=args.search_evaluations, search_seconds=args.search_seconds)
    if args.budgets is not None:
        settings.budgets_bits = _numbers(args.budgets, float, "--budgets")
    elif args.budget_bytes:  # byte budgets alone replace the default average bits
        settings.budgets_bits = []
    if args.quick:
        settings.methods, settings.random_seeds = list(QUICK_METHODS), 2
        settings.score_horizon, settings.score_windows, settings.judge_windows, settings.judge_steps = 16, 8, 8, 32
        settings.search_evaluations = settings.search_evaluations or 12
        if args.budgets is None and not args.budget_bytes:
            settings.budgets_bits = [4.0, 6.0]
    if args.methods:
        settings.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.mode is not None:
        settings.modes = comma_list(args.mode)  # checked against the Mode registry by the settings
    return settings


def comma_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _print_wins(result_payload: dict) -> None:
    from edgetqs.evaluation.report import rate_text

    for method, blocks in result_payload["win_rates"].items():
        table = Table(title=f"{method}: win rate per budget cell (won/tied/lost)")
        table.add_column("vs", no_wrap=True)
        for criterion in blocks:
            table.add_column(criterion, justify="right")
        for vs in blocks["rmse_vs_float"]["win_rate"]:
            table.add_row(vs, *[rate_text(blocks[criterion]["win_rate"].get(vs)) for criterion in blocks])
        console.print(table)


def run(args) -> int:
    import json

    from edgetqs.evaluation import evaluate

    settings = _settings(args)
    with Status("evaluating", console=console) as status:
        result = evaluate(args.model, settings, out_dir=args.out, name=args.name, progress=status.update)
    payload = json.loads(result.paths[0].read_text())
    if args.json:
        print_json({"model": result.model, "paths": [str(p) for p in result.paths], "win_rates": payload["win_rates"],
                    "timings": result.timings, "notes": result.notes, "skipped": result.skipped})
        return 0
    _print_wins(payload)
    for note in result.notes:
        console.print(f"note: {note}")
    for s in result.skipped:
        console.print(f"skipped: {s['mode']} {s['method'] or 'mode'}: {s['reason']}")
    console.print("wrote: " + ", ".join(str(p) for p in result.paths))
    return 0


def register(subparsers) -> None:
    from edgetqs.evaluation.methods import METHODS
    from edgetqs.evaluation.run import SCORE_CONTEXTS

    parser = add_command(
        subparsers, "evaluate",
        "plan MODEL with each method at each budget, export, verify and roll out in LiteRT; compare at matched bytes",
        ["edgetqs evaluate zoo:mlp-lorenz96 --out eval/", "edgetqs evaluate model.onnx --data series.csv --budgets 3,4,6",
         "edgetqs evaluate zoo:mlp-sunspots --quick --out eval/", "edgetqs evaluate zoo:mlp-co2 --mode dynamic,static"], run)
    parser.add_argument("model", metavar="MODEL", help="zoo:NAME or a model file the intake accepts")
    parser.add_argument("--out", default="evaluation", help="directory for the JSON, CSV, PNG and HTML report")
    parser.add_argument("--name", default=None, help="file name stem (default evaluation-<model>)")
    parser.add_argument("--budgets", default=None, help="average weight bits, comma-separated (default 3,4,5,6)")
    parser.add_argument("--budget-bytes", default=None, help="memory budgets in bytes, comma-separated")
    parser.add_argument("--methods", default=None, help="comma-separated, of: " + ", ".join(METHODS))
    parser.add_argument("--data", default=None,
                        help="the model's series (CSV/NPY, raw units): scoring/search on its first 70%%, judging on "
                             "the rest; default data-free (zoo models: judged on their test series)")
    parser.add_argument("--score-contexts", default=SCORE_CONTEXTS[0], choices=list(SCORE_CONTEXTS),
                        help="zoo models: what scoring and the verified search roll out from — the model's own free "
                             "run (data-free, default) or the zoo's training series; judged on the test series either way")
    parser.add_argument("--mode", default=None,
                        help="activation modes, comma-separated, of: " + ", ".join(MODE_NAMES) +
                             " (default dynamic); a mode the planner refuses for the model is skipped, with why")
    parser.add_argument("--search-evaluations", type=int, default=None, help="plan rollouts per verified search")
    parser.add_argument("--search-seconds", type=float, default=None, help="time limit per verified search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="few methods, 2 budgets, short rollouts (a smoke run)")
    add_json_flag(parser)
