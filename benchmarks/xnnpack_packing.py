"""XNNPACK's packed weight copy per weight format and mode: what edgetqs/runtimes.py's
PACKED_WEIGHT_FRACTION says, re-measured.

    .venv/bin/python benchmarks/xnnpack_packing.py [--width 2048]

Builds the random-weight float MLP of tests/remote/forecast_bundle.py
(Flatten -> Dense(width) -> Dense(width) -> Dense(3)), exports it with AI Edge
Quantizer with its 2048x2048 kernel in each format and mode (the small layers
stay float), and runs each file in a fresh process on this host's LiteRT with
XNNPACK on and off (1 thread): allocate, one invoke, VmHWM. Per case: what
the peak holds beyond the runtime with a tiny model, the file and DEQUANTIZE's
float copies (and the small float layers' packed copy), over the kernel's
float32 bytes -- what the planner's fraction must cover -- with XNNPACK on and
off, and on minus off.
Writes benchmarks/results/xnnpack_packing.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "remote"))
sys.path.insert(0, str(HERE.parent))

from forecast_bundle import wide_float_forecaster  # noqa: E402
from tqs_common import machine, write_results  # noqa: E402

from edgetqs import runtimes  # noqa: E402
from edgetqs.model.tflite_graph import TFLiteGraph  # noqa: E402
from edgetqs.planner import costs  # noqa: E402
from edgetqs.quant import aeq  # noqa: E402
from edgetqs.quant.formats import FORMATS  # noqa: E402
from edgetqs.quant.modes import Mode  # noqa: E402

CASES = [("fp32", "dynamic"), ("fp16", "dynamic"), ("int8", "dynamic"), ("int8", "weight_only"),
         ("int4", "dynamic"), ("int4", "weight_only"), ("int2", "dynamic"), ("int4_b32", "dynamic"),
         ("int4_b64", "dynamic")]
PEAK = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
kw = {} if sys.argv[2] == "on" else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
it = Interpreter(model_path=sys.argv[1], num_threads=1, **kw); it.allocate_tensors()
d = it.get_input_details()[0]; it.set_tensor(d["index"], np.zeros(d["shape"], np.float32)); it.invoke()
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024)
"""


def peak_bytes(path: Path, xnnpack: bool) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(path), "on" if xnnpack else "off"],
                          capture_output=True, text=True, check=True, timeout=300)
    return int(done.stdout.split()[-1])


def lowest_peak(path: Path, xnnpack: bool) -> int:
    return min(peak_bytes(path, xnnpack) for _ in range(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xnnpack_packing_"))
    tiny, source = work / "tiny.tflite", work / "fp32.tflite"
    tiny.write_bytes(wide_float_forecaster(64))
    source.write_bytes(wide_float_forecaster(args.width))
    graph = TFLiteGraph.load(source)
    tensors = costs.weight_tensors(graph).values()
    big = [t for t in tensors if t.quantizable and t.elements >= args.width**2]
    big_float = 4 * sum(t.elements for t in big)
    rest_float = sum(4 * t.elements for t in tensors if t not in big)
    base = {on: lowest_peak(tiny, on) for on in (True, False)}  # runtime + numpy + a tiny model
    rows = []
    for fmt, mode in CASES:
        path = work / f"{fmt}_{mode}.tflite"
        path.write_bytes(source.read_bytes() if fmt == "fp32" else
                         aeq.export(source, aeq.build_recipe(graph, {t.name: fmt for t in big}, Mode(mode)), Mode(mode)))
        peak = {on: lowest_peak(path, on) for on in (True, False)}
        copies = sum(costs.dequantized_copy_bytes(t, FORMATS[fmt], Mode(mode)) for t in big)
        rest_packed = runtimes.packed_weight_fraction("xnnpack", "fp32", 32, mode) * rest_float
        # what the planner must add for the big kernel beyond file + DEQUANTIZE copies, per float32 byte
        beyond = {on: (peak[on] - base[on] - path.stat().st_size - copies - (rest_packed if on else 0)) / big_float
                  for on in (True, False)}
        planned = runtimes.packed_weight_fraction("xnnpack", fmt, FORMATS[fmt].bits, mode)
        rows.append({"format": fmt, "mode": mode, "file_bytes": path.stat().st_size, "peak_on": peak[True],
                     "peak_off": peak[False], "on_minus_off_fraction": (peak[True] - peak[False] - rest_packed
                                                                        - base[True] + base[False]) / big_float,
                     "beyond_prediction_xnnpack": beyond[True], "beyond_prediction_no_delegate": beyond[False],
                     "planner_fraction": planned})
        print(f"{fmt:9s} {mode:12s} XNNPACK on: {beyond[True]:5.2f} x float32 bytes beyond file + copies "
              f"(planner: {planned:.2f}{', UNDERCOUNTS' if beyond[True] > planned else ''}); "
              f"off: {beyond[False]:5.2f}; on - off: {rows[-1]['on_minus_off_fraction']:5.2f}")
    print(f"XNNPACK fixed buffers: {(base[True] - base[False]) / 2**20:.2f} MiB (inside the runtime overhead)")
    out = write_results("xnnpack_packing", {"machine": machine(), "width": args.width, "base_peak": base,
                                            "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
