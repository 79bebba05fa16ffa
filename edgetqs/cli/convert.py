"""`edgetqs convert`: a plan becomes a verified quantized LiteRT model and its deployment bundle."""

from __future__ import annotations

from rich.table import Table

from edgetqs.cli.common import add_command, add_json_flag, add_model_argument, console, line, print_json, styled
from edgetqs.quant.modes import MODE_NAMES


def run(args) -> int:
    from edgetqs.api import convert

    ranges = None
    if args.ranges:
        from edgetqs.ranges.export import read_ranges_json

        ranges = read_ranges_json(args.ranges)
    status = console.status("converting", spinner="dots")
    status.start()
    try:
        result = convert(args.model, args.plan, args.output, mode=args.mode, calibration=args.calibration,
                         target=args.target, horizon=args.horizon, windows=args.windows, seed=args.seed,
                         activation_ranges=ranges, overwrite=args.force, on_step=lambda text: status.update(text))
    finally:
        status.stop()
    if args.json:
        print_json(result.summary())
        return 0
    show(result)
    return 0


def show(result) -> None:
    v = result.verification
    console.print(line(styled("wrote", "bold green"), f" {result.out} ({result.mode} mode)"))
    console.print(f"  model {result.model_bytes:,} bytes ({result.model_bytes / result.float_bytes:.1%} of float "
                  f"{result.float_bytes:,})" + (f"; plan predicted {v.predicted_bytes:,}" if v.predicted_bytes else ""))
    console.print(f"  outputs vs the simulation of the same quantization: {v.simulation_rel_error:.2e} "
                  f"(relative L2; tolerance {v.tolerance:g})")
    table = Table("weight tensor", "exported as", box=None, pad_edge=False)
    for name, described in v.tensors.items():
        table.add_row(name, described)
    console.print(table)
    for finding in result.findings:
        console.print(f"  {finding}", highlight=False)
    runtimes = result.runtime.get("runtimes")
    console.print(f"  runs correctly on: {', '.join(runtimes) if runtimes else result.runtime.get('note', '-')}")


def register(subparsers):
    parser = add_command(
        subparsers, "convert", "quantize a model as a plan says, verify it, and write the deployment bundle",
        ["edgetqs convert zoo:mlp-lorenz96 --plan plan.json -o bundle/",
         "edgetqs convert model.keras --plan plan.json -o bundle.tar.gz --mode static --calibration data.csv",
         "edgetqs convert model.tflite --plan plan.json -o quantized.tflite   # the model alone"],
        run)
    add_model_argument(parser)
    parser.add_argument("--plan", required=True, help="plan file from `edgetqs plan`")
    parser.add_argument("-o", "--output", required=True,
                        help="bundle directory, bundle .tar.gz, or a .tflite path for the model alone")
    parser.add_argument("--mode", choices=MODE_NAMES,
                        help="weight-only, dynamic-range or static int8 activations (default: the plan's mode)")
    parser.add_argument("--calibration", metavar="FILE",
                        help="series (.csv/.npy, [time, features]) for context windows and static ranges; "
                             "default: the model's own free run (data-free)")
    parser.add_argument("--ranges", metavar="FILE",
                        help="static mode: activation ranges from the probabilistic estimator (edgetqs.activation_ranges "
                             "JSON), written over min/max calibration (tensors it lacks keep min/max)")
    parser.add_argument("--target", help="board to lint formats for (default: the plan's runtime)")
    parser.add_argument("--horizon", type=int, default=32, help="model calls in the reference rollouts (default 32)")
    parser.add_argument("--windows", type=int, default=8, help="context windows in the bundle (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data-free contexts and probes")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    add_json_flag(parser)
