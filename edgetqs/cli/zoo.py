"""`edgetqs zoo`: list the example models; `edgetqs zoo build NAME|--all` trains and caches them."""

from __future__ import annotations

from rich.progress import Progress
from rich.table import Table

from edgetqs.cli.common import add_command, add_json_flag, console, print_json
from edgetqs.errors import EdgeTQSError


def _rows(tier: str = "core") -> list[dict]:
    from edgetqs import zoo
    from edgetqs.model.card import ModelCard

    rows = []
    for item in zoo.list_models(tier):
        row = {"name": item.name, "arch": item.arch, "system": item.system, "window": item.window,
               "source_format": item.source_format, "built": zoo.is_built(item.name),
               "params": None, "training_seconds": None, "float_quality": None}
        if row["built"]:
            card = ModelCard.load(zoo.model_dir(item.name) / "model.card.json")
            row.update(params=card.total_params, training_seconds=card.extra.get("training_seconds"),
                       float_quality=card.extra.get("float_quality"))
        rows.append(row)
    return rows


def _print_table(rows: list[dict]) -> None:
    # Arch and system are in the name (<arch>-<system>); few, narrow columns fit 80 characters.
    table = Table(title="edgetqs zoo: float rollout vs the true system")
    table.add_column("name", no_wrap=True)
    for column in ("params", "train s", "VPT/T", "RMSE", "blow-up"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        quality = row["float_quality"] or {}
        if not row["built"]:
            table.add_row(row["name"], "not built", "-", "-", "-", "-")
            continue
        table.add_row(row["name"], f"{row['params']:,}", f"{row['training_seconds']:.1f}",
                      f"{quality['valid_prediction_time']:.1f}/{quality['horizon']}", f"{quality['rmse']:.3f}",
                      f"{quality['blow_up_fraction']:.0%}")
    console.print(table)
    console.print("VPT/T: mean steps until the normalised error first exceeds 0.4, of a T-step rollout; "
                  "RMSE in normalised units.")
    if not all(row["built"] for row in rows):
        console.print("build with: edgetqs zoo build NAME  (or --all)")


def _build(args) -> int:
    from edgetqs import zoo

    names = [item.name for item in zoo.list_models(args.tier)] if args.all else [n.removeprefix("zoo:") for n in args.names]
    if not names:
        raise EdgeTQSError("no zoo model named to build", "give NAME(s) or --all (`edgetqs zoo` lists them)")
    from edgetqs.zoo import large

    for name in names:
        if name not in large.BY_NAME:
            zoo.entry(name)  # fail early on a typo, before any training
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("building", total=len(names))
        for name in names:
            progress.update(task, description=f"building {name}")
            zoo.build(name)
            progress.advance(task)
    rows = [row for row in _rows("all") if row["name"] in names]
    big = [row for row in _large_rows() if row["name"] in names]
    if args.json:
        print_json(rows + big)
    else:
        _print_table(rows) if rows else None
        _print_large(big) if big else None
    return 0


def _large_rows() -> list[dict]:
    """The large tier (zoo/large.py): untrained, so no quality columns."""
    from edgetqs.model.card import ModelCard
    from edgetqs.zoo import large

    rows = []
    for item in large.ENTRIES:
        row = {"name": item.name, "arch": item.arch, "tier": "large", "trained": False,
               "built": large.is_built(item.name), "params": None, "description": item.description}
        if row["built"]:
            row["params"] = ModelCard.load(large.model_dir(item.name) / "model.card.json").total_params
        rows.append(row)
    return rows


def _print_large(rows: list[dict]) -> None:
    table = Table(title="large tier: structured random weights, not trained (built on demand)")
    for column in ("name", "params", "what"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for row in rows:
        table.add_row(row["name"], f"{row['params']:,}" if row["params"] else "not built", row["description"])
    console.print(table)


def _data(args) -> int:
    """The path of each named model's series file (raw units, NPY), for --data."""
    from edgetqs import zoo

    if not args.names:
        raise EdgeTQSError("no zoo model named", "give NAME: `edgetqs zoo data mlp-duffing`")
    for name in args.names:
        zoo.entry(name)
        print(zoo.series_file(name))
    return 0


def run(args) -> int:
    if args.action == "build":  # argparse allows only build, data, list or nothing
        return _build(args)
    if args.action == "data":
        return _data(args)
    rows = _rows(args.tier)
    big = _large_rows() if args.tier == "all" else []
    if args.json:
        print_json(rows + big)
    else:
        _print_table(rows)
        _print_large(big or _large_rows())
    return 0


def register(subparsers) -> None:
    parser = add_command(subparsers, "zoo", "list the example forecasters, or build (train + convert + judge) them",
                         ["edgetqs zoo", "edgetqs zoo build mlp-lorenz96", "edgetqs zoo build --all", "edgetqs zoo build --all --tier deep",
                          "edgetqs zoo build patchtf-118m    # the large tier: 118M parameters, untrained",
                          "edgetqs zoo data mlp-duffing    # its series file, for --data (covariate models need it)",
                          "edgetqs zoo --json"],
                         run)
    parser.add_argument("action", nargs="?", choices=["list", "build", "data"],
                        help="list (default), build, or data (print the path of a model's series, for --data)")
    parser.add_argument("names", nargs="*", metavar="NAME", help="zoo models to build")
    parser.add_argument("--all", action="store_true", help="build every zoo model of the tier")
    parser.add_argument("--tier", default="core", choices=["core", "deep", "all"],
                        help="core: the CI-sized models (default); deep: >= 24 units, minutes to train; all")
    add_json_flag(parser)
