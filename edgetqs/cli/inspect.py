"""`edgetqs inspect MODEL`: the model card — rollout spec and layer table."""

from __future__ import annotations

from rich.table import Table

from edgetqs.cli.common import add_command, add_json_flag, add_model_argument, console, line, print_json, styled
from edgetqs.model.card import INTAKE_ROUTES, ModelCard, RolloutSpec


def add_rollout_argument(parser) -> None:
    parser.add_argument("--rollout", metavar="SPEC", type=RolloutSpec.parse,
                        help="window=W,features=F[,patch=P][,input_layout=channels_first] when it cannot be read "
                             "from the model's shapes (remembered for this file: later commands need not repeat it)")


def print_card(card: ModelCard) -> None:
    spec = card.rollout
    console.print(line(styled(card.name, "bold"), f"  ({card.source_format}: {card.source})"))
    console.print(f"canonical: {card.tflite_path}  sha256 {card.tflite_sha256[:16]}…")
    console.print(line("intake route: ", *intake_route(card)))
    output = f"[1, {spec.patch}, {spec.outputs}]" if spec.output_rank == 3 else f"[1, {spec.outputs}]"
    # as --rollout writes them: i+j, or i+ for one feature
    given = f" covariates={'+'.join(map(str, spec.covariates))}{'+' * (len(spec.covariates) == 1)}" if spec.covariates else ""
    console.print(f"rollout: window={spec.window} features={spec.features} patch={spec.patch}{given} "
                  f"feedback={spec.feedback}  input [1, {spec.window}, {spec.features}] -> output {output}"
                  + ("  (normalised inputs)" if spec.norm_mean else ""))
    if spec.covariates:
        console.print(f"covariates: input features {spec.covariates} are given (fed from --data at every call), "
                      f"features {spec.fed_back} predicted and fed back")
    total_bytes = sum(layer.float_bytes for layer in card.layers)
    table = Table(title=f"{len(card.layers)} weighted layers, {card.total_params:,} parameters, "
                        f"{total_bytes:,} float bytes")
    # Tensor names are long; a narrow terminal gets the table without them (--json has everything).
    show_tensors = console.width >= 120
    columns = ["#", "layer", "block", "op"] + (["weight tensors (main first)"] if show_tensors else []) + ["shape", "params"]
    for column in columns:
        table.add_column(column, justify="right" if column in ("#", "params") else "left",
                         overflow="fold" if column.startswith("weight") else "ellipsis", no_wrap=column != columns[4])
    for i, layer in enumerate(card.layers):
        tensors = ["\n".join(layer.weight_tensors)] if show_tensors else []
        table.add_row(str(i), layer.name, layer.block, layer.op_type, *tensors,
                      "\n".join("x".join(map(str, s)) for s in layer.shapes), f"{layer.params:,}")
    console.print(table)
    if not show_tensors:
        console.print("weight tensor names: widen the terminal (>= 120 columns) or use --json")
    quality = card.extra.get("float_quality")
    if quality:
        console.print(f"float rollout vs truth ({card.extra.get('system')}): " +
                      ", ".join(f"{k}={v}" for k, v in quality.items()))


def intake_route(card: ModelCard) -> list:
    """The route's name, what it does and, if intake recorded one, why it was taken."""
    if not card.intake_route:
        return ["not recorded (the card was written before edgetqs recorded intake routes)"]
    parts = [styled(card.intake_route, "bold"), f" ({INTAKE_ROUTES.get(card.intake_route, 'unknown route')})"]
    return parts + ([f"; why: {card.intake_note}"] if card.intake_note else [])


def run(args) -> int:
    from edgetqs.zoo.resolve import load_model

    model = load_model(args.model, args.rollout)
    if args.json:
        print_json(model.card.to_dict())
    else:
        print_card(model.card)
    return 0


def register(subparsers) -> None:
    parser = add_command(subparsers, "inspect", "show a model's rollout spec and layer table (its model card)",
                         ["edgetqs inspect zoo:mlp-lorenz96",
                          "edgetqs inspect my_model.onnx --rollout window=16,features=3",
                          "edgetqs inspect my_forecaster.pt2",
                          "edgetqs inspect model.tflite --json"], run)
    add_model_argument(parser)
    add_rollout_argument(parser)
    add_json_flag(parser)
