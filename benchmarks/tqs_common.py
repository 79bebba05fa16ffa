"""Shared pieces of the TQS benchmarks: the machine, the zoo models, a FLOP count."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/run_all.py points this elsewhere so quick runs never overwrite the full results.
RESULTS = Path(os.environ.get("EDGETQS_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "load_avg_1min": os.getloadavg()[0], "numba_threads": os.environ.get("NUMBA_NUM_THREADS", "default"), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def gemm_gflops(n: int = 512, repeats: int = 20) -> float:
    """numpy float32 GEMM throughput on this machine, now (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


GEMM_PER_CPU_SECOND = """
import time, numpy as np
n, repeats = 512, 20
rng = np.random.default_rng(0)
a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
a @ b
start = time.process_time()
for _ in range(repeats):
    a @ b
print(2 * n**3 * repeats / (time.process_time() - start) / 1e9)
"""


def gemm_gflops_per_cpu_second() -> float:
    """numpy float32 GEMM FLOPs per CPU-second on one thread (OpenBLAS single-threaded, in a
    child process: its spinning threads would count as CPU time). On a shared machine a
    stage's CPU seconds, unlike its wall time, do not count waiting for a core."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return float(subprocess.check_output([sys.executable, "-c", GEMM_PER_CPU_SECOND], env=env, text=True).split()[-1])


def forward_flops(graph) -> int:
    """Multiply-add FLOPs (x2) of one batch-1 forward pass: the linear ops, which dominate."""
    total = 0
    for op in graph.operators:
        tensors = [graph.tensors[i] if i >= 0 else None for i in op.inputs]
        out = graph.tensors[op.outputs[0]]
        if op.opcode == "FULLY_CONNECTED" and tensors[1] is not None:
            out_dim, in_dim = tensors[1].shape[0], int(np.prod(tensors[1].shape[1:]))
            rows = tensors[0].num_elements // max(in_dim, 1)
            total += 2 * rows * out_dim * in_dim
        elif op.opcode == "CONV_2D":
            _, kh, kw, cin = tensors[1].shape
            total += 2 * out.num_elements * kh * kw * cin
        elif op.opcode == "DEPTHWISE_CONV_2D":
            total += 2 * out.num_elements * tensors[1].shape[1] * tensors[1].shape[2]
        elif op.opcode == "BATCH_MATMUL":
            adj_x = bool(getattr(op.options, "adjX", False))
            k = tensors[0].shape[-2] if adj_x else tensors[0].shape[-1]
            total += 2 * out.num_elements * k
    return total


def zoo_names(argv: list[str]) -> list[str]:
    from edgetqs import zoo

    return argv or [e.name for e in zoo.list_models()]


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=float))
    return path
