"""The first engine of a process compiles numba's kernels in a child process, and this process
then loads them from numba's disk cache instead of compiling (engine/precompile.py)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from tests.engine.conftest import standin_model

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh process with an empty numba cache: what a first run after install sees.
FIRST_RUN = """
import json, pickle, sys
import numpy as np
from edgetqs.engine import Engine, precompile
from edgetqs.model.tflite_graph import TFLiteGraph

path, spec, contexts = pickle.load(open(sys.argv[1], "rb"))
before = precompile.uncached_kernels()
engine = Engine(TFLiteGraph.load(path), spec)
after = precompile.uncached_kernels()
name = engine.weight_names()[0]
engine.rollout_probes(contexts, 3, [{}, {name: np.full_like(engine.weight(name), 0.01)}])
kernels = [kernel for kernel, _ in precompile.kernel_samples()]
print(json.dumps({"before": before, "after": after,
                  "misses": {k.__name__: sum(k.stats.cache_misses.values()) for k in kernels},
                  "hits": {k.__name__: sum(k.stats.cache_hits.values()) for k in kernels}}))
"""


def test_first_engine_compiles_in_a_child_and_loads_from_the_cache(tmp_path, standin_dir):
    model = standin_model("transformer", standin_dir)  # FC GEMMs, GELU and attention's softmax
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump((model.path, model.spec, model.contexts), f)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", FIRST_RUN, str(tmp_path / "model.pkl")], env=env,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["before"]) == set(result["misses"])  # nothing was cached yet
    assert result["after"] == []  # the child compiled every kernel into the cache
    assert all(count == 0 for count in result["misses"].values()), result  # and this process compiled none
    for used in ("_gemm_serial", "_gelu_exact", "_softmax_rows_serial"):
        assert result["hits"][used] >= 1, result  # the kernels the model ran came from the cache
