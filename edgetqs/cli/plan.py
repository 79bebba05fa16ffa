"""`edgetqs plan`: scores + board -> per-unit formats within the memory budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from edgetqs.cli.common import add_command, add_json_flag, add_model_argument, console, print_json
from edgetqs.files import write_atomically
from edgetqs.planner.allocators import ALLOCATORS
from edgetqs.quant import aeq
from edgetqs.quant.formats import FORMATS
from edgetqs.quant.modes import MODE_NAMES
from edgetqs.runtimes import DEFAULT_HOST_RUNTIME


def _write_recipe(graph, plan, path: Path) -> Path | None:
    """The AEQ recipe for the plan, by the one AEQ adapter (so it is what `convert` runs)."""
    recipe = aeq.build_recipe(graph, plan.formats(), plan.mode)
    return write_atomically(path, json.dumps(recipe, indent=1))


def _front_outputs(problem, args, output: Path, board_budget: int | None) -> dict:
    from edgetqs.planner.front import pareto_front, plot_front

    front = pareto_front(problem, args.front_points, args.allocator, board_budget)
    png = plot_front(front, problem, output.with_suffix(".front.png"))
    table_path = output.with_suffix(".front.json")
    write_atomically(table_path, json.dumps(front.table(), indent=1))
    return {"front": front, "png": png, "table": table_path}


def run(args) -> int:
    from edgetqs.api import load, plan_with_options, verify_plan
    from edgetqs.targets import load_target
    from edgetqs.planner.front import unit_table
    from edgetqs.planner.plan import KeepFloat, format_size, parse_size, target_budget

    keep = KeepFloat(count=args.keep_float_count, names=args.keep_float or [],
                     bytes=parse_size(args.keep_float_bytes) if args.keep_float_bytes else 0)
    model = load(args.model)
    plan, problem = plan_with_options(model, args.scores, target=args.target, budget=args.budget,
                                      allocator=args.allocator, mode=args.mode, bottom=args.bottom, keep_float=keep,
                                      runtime=args.runtime, calibration=args.data)
    plan, search, why = verify_plan(model, args.scores, problem, plan, verify=args.verify,
                                    evaluations=args.search_evaluations, seconds=args.search_seconds, data=args.data)
    output = Path(args.output)
    plan.save(output)
    recipe = _write_recipe(model.graph, plan, output.with_suffix(".recipe.json"))
    board_budget = target_budget(load_target(args.target)) if args.target else None
    front = _front_outputs(problem, args, output, board_budget) if args.front else None
    units = unit_table(problem, plan)
    if args.json:
        result = {"plan": plan.to_dict(), "plan_path": str(output), "recipe_path": str(recipe), "units": units}
        if front:
            result.update(front=front["front"].table(), front_png=str(front["png"]))
        result["search"] = search.summary() if search is not None else None
        result["search_why"] = why
        print_json(result)
        return 0
    _print_units(units)
    p = plan.predicted
    console.print(
        f"{plan.model['name']} on {plan.target or 'budget'} ({plan.runtime}, {plan.mode}, {plan.allocator}): "
        f"model {format_size(p['model_bytes'])}, memory {format_size(p['memory_bytes'])} "
        f"(of which {p.get('delegate', 'no')} packed weights {format_size(p.get('packed_weights_bytes', 0))}) of "
        f"{format_size(plan.budget_bytes)} budget, predicted error {p['total_cost']:.4g}")
    if search is None:
        console.print(f"verified search: not run ({why})")
    else:
        console.print(f"verified search ({why}): {len(search.evaluated)} plans rolled out in {search.seconds:.1f} s "
                      f"({search.stopped}); rollout RMSE vs float {search.knapsack.rmse:.4g} (knapsack) -> "
                      f"{search.best.rmse:.4g} ({search.best.origin})")
    console.print(f"wrote {output} and the AEQ recipe {recipe}")
    if front:
        knee = front["front"].points[front["front"].knee]
        console.print(f"front: {len(front['front'].points)} plans, knee at {format_size(knee.memory_bytes)} "
                      f"-> {front['png']} and {front['table']}")
    return 0


def _print_units(units: list[dict]) -> None:
    table = Table(title="plan: one format per unit")
    for col in ("unit", "format", "bytes", "gamma", "cost", "error/byte of next drop"):
        table.add_column(col, justify="left" if col in ("unit", "format") else "right")
    for row in units:
        marginal = row["marginal_error_per_byte"]
        table.add_row(row["unit"], row["format"], f"{row['bytes']:,}",
                      "dead" if row["dead"] else f"{row['gamma']:.3f}", f"{row['cost']:.3g}",
                      "-" if marginal is None else f"{marginal:.3g}")
    console.print(table)


def register(subparsers):
    parser = add_command(
        subparsers, "plan", "choose a weight format per unit that fits a board's memory (exact MCKP on TQS costs)",
        ["edgetqs plan zoo:mlp-lorenz96 --scores scores.json --target rpi4 -o plan.json",
         "edgetqs plan model.tflite --scores scores.json --budget 384KiB --bottom int4 --front -o plan.json"],
        run)
    add_model_argument(parser)
    parser.add_argument("--scores", required=True, metavar="SCORES.json", help="score file from `edgetqs score`")
    parser.add_argument("--target", metavar="BOARD", help="board profile (targets/*.toml): budget and runtime")
    parser.add_argument("--budget", metavar="SIZE",
                        help="memory the model may take (.tflite + activation arena), e.g. 384KiB, 2MB; "
                             "overrides the target's RAM share")
    parser.add_argument("--runtime", metavar="PKG==VER",
                        help="runtime whose conformance results filter formats (default: the target's, "
                             f"else {DEFAULT_HOST_RUNTIME.spec})")
    parser.add_argument("--allocator", choices=sorted(ALLOCATORS), default="mckp", help="mckp is exact")
    parser.add_argument("--mode", choices=MODE_NAMES, default="dynamic",
                        help="dynamic: integer kernels read quantized weights (smallest in RAM); "
                             "weight_only: float compute after DEQUANTIZE (float copies in RAM)")
    parser.add_argument("--bottom", choices=[f for f in FORMATS if f != "fp32"],
                        help="lowest format allowed (e.g. int4 forbids int2)")
    parser.add_argument("--keep-float", action="append", metavar="UNIT", help="keep this unit in fp32 (repeatable)")
    parser.add_argument("--keep-float-count", type=int, default=0, metavar="N", help="keep the N most sensitive units in fp32")
    parser.add_argument("--keep-float-bytes", metavar="SIZE", help="keep the most sensitive units in fp32 within SIZE")
    parser.add_argument("--front", action="store_true", help="also write the Pareto front (PLAN.front.png/.json)")
    parser.add_argument("--front-points", type=int, default=20, metavar="N", help="budgets on the front")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                        help="then search: roll whole plans out (the exported model's arithmetic) from the scores' "
                             "contexts and keep the best measured one (docs/ROLLOUT_METHODS.md). Default: on for "
                             "models with >= 24 live units and a float file up to 64 MiB (where it pays, "
                             "docs/EVALUATION.md), else off; --no-verify turns it off")
    parser.add_argument("--search-evaluations", type=int, default=None, metavar="N",
                        help="plan rollouts the search may spend (default 2 per unit, at least 16)")
    parser.add_argument("--search-seconds", type=float, default=None, metavar="S", help="time limit of the search")
    parser.add_argument("--data", default=None, metavar="SERIES",
                        help="the series (CSV/NPY) the search's windows come from (default: the scores' own "
                             "contexts) and static mode is priced with (pass the file `convert --calibration` gets; "
                             "a model with covariates needs it)")
    parser.add_argument("-o", "--output", required=True, metavar="PLAN.json", help="plan file to write")
    add_json_flag(parser)
