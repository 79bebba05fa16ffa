"""rollout_probes: every probe group in one batch equals the model with W + delta."""

from __future__ import annotations

import numpy as np
import pytest

from edgetqs.engine import Engine
from edgetqs.model.tflite_graph import TFLiteGraph, replace_constants

HORIZON = 4


def perturbed_engine(model, engine: Engine, delta: dict[str, np.ndarray]) -> Engine:
    """An engine on a .tflite whose weights were rewritten to W + delta (the black-box way)."""
    patched = {name: engine.weight(name) + d for name, d in delta.items()}
    return Engine(TFLiteGraph.from_bytes(replace_constants(model.graph, patched)), model.spec)


def float32_weights(model, engine: Engine) -> list[str]:
    """Weights replace_constants can rewrite (fp16 ones cannot hold W + delta)."""
    return [n for n in engine.weight_names() if model.graph.tensor_by_name(n).type_name == "FLOAT32"]


def probe_deltas(engine: Engine, names: list[str], seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The reference, then one group per weight tensor with a small random kick."""
    rng = np.random.default_rng(seed)
    groups = [{}]
    for name in names:
        w = engine.weight(name)
        scale = 0.05 * (np.sqrt(np.mean(w**2)) + 1e-3)
        groups.append({name: (scale * rng.standard_normal(w.shape)).astype(np.float32)})
    return groups


@pytest.mark.parametrize("kernel", ["blas", "numba"])
def test_zero_delta_reproduces_the_reference_exactly(standin, kernel):
    engine = Engine(standin.graph, standin.spec, gemm_kernel=kernel)
    zeros = [{name: np.zeros_like(engine.weight(name))} for name in engine.weight_names()]
    trajs = engine.rollout_probes(standin.contexts, HORIZON, [{}] + zeros)
    assert trajs.shape == (1 + len(zeros), len(standin.contexts), HORIZON * standin.spec.patch, standin.spec.features)
    for g in range(1, len(trajs)):
        np.testing.assert_array_equal(trajs[g], trajs[0])
    plain = engine.rollout(standin.contexts, HORIZON)
    if kernel == "numba":  # rows never depend on the batch: the plain rollout matches bit for bit too
        np.testing.assert_array_equal(trajs[0], plain)
    np.testing.assert_allclose(trajs[0], plain, rtol=1e-5, atol=1e-6)


def test_each_group_equals_the_model_with_its_weights_perturbed(standin):
    engine = Engine(standin.graph, standin.spec)
    deltas = probe_deltas(engine, float32_weights(standin, engine))
    trajs = engine.rollout_probes(standin.contexts, HORIZON, deltas)
    reference = trajs[0]
    for g, delta in enumerate(deltas[1:], start=1):
        direct = perturbed_engine(standin, engine, delta).rollout(standin.contexts, HORIZON)
        np.testing.assert_allclose(trajs[g], direct, rtol=1e-4, atol=1e-5 * np.abs(direct).max(), err_msg=str(list(delta)))
    moved = [np.abs(trajs[g] - reference).max() > 0 for g in range(1, len(deltas))]
    assert sum(moved) >= len(moved) - 1  # every kick reaches the output (one may be a dead constant)


def test_a_group_may_perturb_several_weights_at_once(standin):
    engine = Engine(standin.graph, standin.spec)
    singles = probe_deltas(engine, float32_weights(standin, engine), seed=3)[1:]
    together = {name: d for group in singles for name, d in group.items()}
    trajs = engine.rollout_probes(standin.contexts, HORIZON, [{}, together])
    direct = perturbed_engine(standin, engine, together).rollout(standin.contexts, HORIZON)
    np.testing.assert_allclose(trajs[1], direct, rtol=1e-4, atol=1e-5 * np.abs(direct).max())


@pytest.mark.slow
def test_probes_on_a_zoo_model(zoo_lorenz):
    engine = Engine(zoo_lorenz.graph, zoo_lorenz.spec)
    deltas = probe_deltas(engine, float32_weights(zoo_lorenz, engine))[:6]
    trajs = engine.rollout_probes(zoo_lorenz.contexts, HORIZON, deltas)
    for g, delta in enumerate(deltas[1:], start=1):
        direct = perturbed_engine(zoo_lorenz, engine, delta).rollout(zoo_lorenz.contexts, HORIZON)
        np.testing.assert_allclose(trajs[g], direct, rtol=1e-4, atol=1e-5 * np.abs(direct).max())


def test_fp16_weights_can_be_probed(standin_dir):
    from tests.engine.conftest import standin_model

    model = standin_model("depthwise_fp16", standin_dir)
    engine = Engine(model.graph, model.spec)
    fp16 = [n for n in engine.weight_names() if model.graph.tensor_by_name(n).type_name == "FLOAT16"]
    trajs = engine.rollout_probes(model.contexts, HORIZON, probe_deltas(engine, fp16))
    assert all(np.abs(trajs[g] - trajs[0]).max() > 0 for g in range(1, len(trajs)))


def test_numba_and_blas_gemm_kernels_agree(standin_dir):
    from tests.engine.conftest import standin_model

    model = standin_model("tcn", standin_dir)
    blas, numba = Engine(model.graph, model.spec), Engine(model.graph, model.spec, gemm_kernel="numba")
    deltas = probe_deltas(blas, float32_weights(model, blas))[:4]
    np.testing.assert_allclose(numba.rollout_probes(model.contexts, HORIZON, deltas),
                               blas.rollout_probes(model.contexts, HORIZON, deltas), rtol=1e-4, atol=1e-5)


def test_unknown_gemm_kernel_is_a_clear_error(standin_dir):
    from tests.engine.conftest import standin_model

    from edgetqs.errors import EdgeTQSError

    model = standin_model("mlp", standin_dir)
    with pytest.raises(EdgeTQSError, match="GEMM kernel"):
        Engine(model.graph, model.spec, gemm_kernel="cuda")
