"""Engine vs the LiteRT interpreter on every zoo model: first-step error and
how many model steps the two rollouts stay together (divergence of the worst
trajectory, relative to the RMS state norm of its context window, <= 1e-2),
from true context windows of the test series.

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


def relative_divergence(a: np.ndarray, b: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """Worst trajectory's ||a_t - b_t|| per step, relative to the RMS state norm of its context
    window (a per-step norm would blow up where a one-feature series crosses zero)."""
    scale = np.sqrt(np.mean(np.sum(contexts.astype(np.float64) ** 2, axis=-1), axis=-1, keepdims=True))
    return (np.linalg.norm(a - b, axis=-1) / np.maximum(scale, 1e-12)).max(axis=0)


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
        first = relative_divergence(engine.forward(contexts), runtime.forward(contexts), contexts).max()
        ours, theirs = engine.rollout(contexts, args.horizon), runtime.rollout(contexts, args.horizon)
        divergence = relative_divergence(ours, theirs, contexts)
        above = np.flatnonzero(~(divergence <= args.threshold))
        together = f"{above[0]}" if above.size else f">={len(divergence)}"
        blown = "  (LiteRT rollout blows up)" if not np.all(np.isfinite(theirs)) else ""
        print(f"{name:24s} {len(model.graph.operators):4d} {first:15.2e} {together:>15s}{blown}", flush=True)


if __name__ == "__main__":
    main()
