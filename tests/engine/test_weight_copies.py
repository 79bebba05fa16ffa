"""Float copies of the weights the runners hold: the LiteRT runner one interpreter and no copy of
the bytes it is given; an engine its GEMM transposes, which go with it (or, for an engine making
one call, with each op). What each copy costs is measured in benchmarks/convert_phases.py."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from edgetqs.engine import Engine, gemm, litert
from edgetqs.engine.litert import LiteRTRunner
from tests.engine.conftest import standin_model


@pytest.fixture
def interpreters(monkeypatch) -> list:
    """Every interpreter the runner loads (XNNPACK packs a float copy of the weights into each)."""
    made = []

    def counting(*args, **kwargs):
        made.append(load(*args, **kwargs))
        return made[-1]

    load = litert.load_interpreter
    monkeypatch.setattr(litert, "load_interpreter", counting)
    return made


# mlp runs batched; the GRU stand-in has batch 1 baked in, so its resize is refused and it runs row by row.
@pytest.mark.parametrize("name, batched", [("mlp", True), ("gru", False)])
def test_one_interpreter_serves_batch_one_and_the_batch(name, batched, standin_dir, interpreters):
    model = standin_model(name, standin_dir)
    content = model.path.read_bytes()
    runner = LiteRTRunner(content, model.spec)
    assert runner._content is content  # the caller's bytes, not a copy
    rows = np.concatenate([runner.forward(w[None]) for w in model.contexts])
    together = runner.forward(model.contexts)
    rollout = runner.rollout(model.contexts, 3)
    assert runner.batched_ok is batched
    assert len(interpreters) == 1
    np.testing.assert_allclose(together, rows, rtol=1e-5, atol=1e-6)
    # Batch 1 after the batch (or after the refused resize) gives the same numbers as before it.
    np.testing.assert_array_equal(runner.forward(model.contexts[:1]), rows[:1])
    fresh = LiteRTRunner(model.path, model.spec).rollout(model.contexts, 3)
    np.testing.assert_array_equal(rollout, fresh)


def test_an_engines_transposed_weights_go_with_it(standin_dir):
    model = standin_model("mlp", standin_dir)
    engine = Engine(model.graph, model.spec)
    engine.forward(model.contexts)
    held = {id(value) for value in engine.constants.values()}
    transposes = [weakref.ref(w_t) for key, (_, w_t) in gemm._TRANSPOSED.items() if key in held]
    assert transposes
    del engine
    gc.collect()
    assert all(t() is None for t in transposes)


def test_an_engine_for_one_call_keeps_no_transposes_and_computes_the_same(standin_dir):
    model = standin_model("mlp", standin_dir)
    kept = Engine(model.graph, model.spec).forward(model.contexts)
    before = set(gemm._TRANSPOSED)
    once = Engine(model.graph, model.spec, keep_transposed=False)
    np.testing.assert_array_equal(once.forward(model.contexts), kept)
    assert set(gemm._TRANSPOSED) <= before
