"""Engine vs the LiteRT interpreter on every zoo model: first-step error and
how many model steps the two rollouts stay together (relative divergence of
the worst trajectory <= 1e-2), from true context windows of the test series.

    .venv/bin/python benchmarks/engine_agreement.py [--horizon 1000] [--windows 8] [models...]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgetqs import zoo  # noqa: E402
from edgetqs.engine import Engine, UnsupportedOpError  # noqa: E402
from edgetqs.engine.litert import LiteRTRunner  # noqa: E402


def relative_divergence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Worst trajectory's ||a_t - b_t|| / ||b_t|| per step."""
    err = np.linalg.norm(a - b, axis=-1) / np.maximum(np.linalg.norm(b, axis=-1), 1e-12)
    return err.max(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="zoo model names (default: all)")
    parser.add_argument("--horizon", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=1e-2)
    args = parser.parse_args()
    names = args.models or [e.name for e in zoo.list_models()]
    print(f"{'model':24s} {'ops':>4s} {'first-step rel':>15s} {'steps together':>15s}")
    for name in names:
        model = zoo.build(name)
        spec = model.card.rollout
        try:
            engine = Engine(model.graph, spec)
        except UnsupportedOpError as exc:
            print(f"{name:24s} unsupported: {', '.join(exc.ops)}")
            continue
        runtime = LiteRTRunner(model.tflite_path, spec)
        contexts, _ = zoo.true_trajectories(zoo.entry(name).system, spec.window, 1, count=args.windows)
        contexts = np.asarray(contexts, np.float32)
        first = relative_divergence(engine.forward(contexts), runtime.forward(contexts)).max()
        divergence = relative_divergence(engine.rollout(contexts, args.horizon), runtime.rollout(contexts, args.horizon))
        above = np.flatnonzero(~(divergence <= args.threshold))
        together = f"{above[0]}" if above.size else f">={len(divergence)}"
        print(f"{name:24s} {len(model.graph.operators):4d} {first:15.2e} {together:>15s}", flush=True)


if __name__ == "__main__":
    main()
