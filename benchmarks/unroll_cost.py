"""What unrolling a recurrent layer at intake costs in graph bytes and ops (issue #12, item 1), on the
issue's own shape: Conv1D -> GRU(32) -> Dense, ~5.5k parameters, saved by Keras with the default
unroll=False and taken in by `load_model` (unrolled there, checked against Keras).

    .venv/bin/python benchmarks/unroll_cost.py [--window 24] [--features 8]

Prints and writes benchmarks/results/unroll_cost.json: parameters, ops by kind, file bytes split into
constants (the weights) and graph (everything else), intake seconds. The issue's hand-unrolled model of
the same size was a 546-op file with a 92 KB graph against 24 KB of weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tqs_common import RESULTS, machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--features", type=int, default=8)
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((args.window, args.features))
    h = keras.layers.GRU(32)(keras.layers.Conv1D(16, 3, padding="causal", activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(args.features)(h))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conv-gru.keras"
        model.save(path)
        os.environ["EDGETQS_CACHE"] = str(Path(tmp) / "cache")  # measure a real intake, not the cache
        from edgetqs.model.intake import load_model

        started = time.perf_counter()
        graph = load_model(path).graph
        seconds = time.perf_counter() - started
    constants = sum(t.data.nbytes for t in graph.tensors if t.is_constant)
    result = {"params": model.count_params(), "window": args.window, "features": args.features,
              "intake_seconds": round(seconds, 1), "ops": len(graph.operators),
              "ops_by_kind": dict(Counter(op.opcode for op in graph.operators).most_common()),
              "file_bytes": graph.size_bytes, "constant_bytes": constants, "graph_bytes": graph.size_bytes - constants,
              "machine": machine()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "unroll_cost.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
