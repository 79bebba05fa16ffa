"""`edgetqs conformance`: show or regenerate the capability matrix (which formats
each TFLite runtime executes correctly, per op and mode)."""

from __future__ import annotations

from rich.table import Table

from edgetqs.cli.common import add_command, add_json_flag, console, print_json, styled

# status -> (short label, style): short so the grid fits a terminal
STATUS_LABEL = {"ok": ("ok", "green"), "wrong": ("WRONG", "bold red"), "load_error": ("load", "yellow"),
                "run_error": ("run", "yellow"), "crash": ("crash", "bold red"), "quantize_error": ("-", "dim")}


def run(args) -> int:
    from edgetqs.planner import conformance

    if args.runtime:
        results = conformance.check_runtimes(args.runtime)
        merged = {**conformance.CapabilityMatrix.load().runtimes, **results} if conformance.MATRIX_PATH.exists() else results
        conformance.write_matrix(merged)
        console.print(f"wrote {conformance.MATRIX_PATH}")
    matrix = conformance.CapabilityMatrix.load()
    if args.json:
        print_json(matrix.data)
        return 0
    for spec, table in matrix.runtimes.items():
        _print_runtime(spec, table)
    console.print("ok: loads, runs, matches the numpy reference. WRONG: runs, computes wrong numbers. "
                  "load/run/crash: fails in the runtime. -: AEQ cannot produce it. The planner offers only ok (and fp32).")
    return 0


def _print_runtime(spec: str, table: dict) -> None:
    from edgetqs.planner.conformance import CHECKED_FORMATS

    grid = Table(title=spec)
    grid.add_column("op")
    grid.add_column("mode")
    for fmt in CHECKED_FORMATS:
        grid.add_column(fmt)
    for op, modes in table.items():
        for mode, cells in modes.items():
            row = []
            for fmt in CHECKED_FORMATS:
                status = cells.get(fmt, {}).get("status")
                label, style = STATUS_LABEL.get(status, (status or "", ""))
                row.append(styled(label, style) if style else label)
            grid.add_row(op.replace("_", " ").lower(), mode.replace("weight_only", "w-only"), *row)
    console.print(grid)


def register(subparsers):
    parser = add_command(
        subparsers, "conformance",
        "show which weight formats each TFLite runtime computes correctly (or re-check a runtime)",
        ["edgetqs conformance", "edgetqs conformance --runtime tflite-runtime==2.14.0"], run)
    parser.add_argument("--runtime", action="append", metavar="PKG==VER",
                        help="re-check this runtime in a throwaway venv and update the shipped matrix (repeatable)")
    add_json_flag(parser)
