"""Allocators: budgets respected, exact = brute force, exact never worse than greedy."""

import itertools

import numpy as np
import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.planner.allocators import ALLOCATORS, Option, get_allocator, mckp, smallest_bytes, totals


def random_instance(rng, units, formats):
    """Units of random size with bit-width-like options: bytes ~ bits, cost ~ 2^-bits, random sensitivity."""
    bits = [2, 3, 4, 6, 8, 16, 32][-formats:]
    options = []
    for _ in range(units):
        params = int(rng.integers(16, 4000))
        sensitivity = np.exp(rng.normal(0, 2))
        options.append([Option(int(params * b // 8 + (12 * rng.integers(1, 20) if b < 16 else 0)),
                               0.0 if b == 32 else float(sensitivity * params**0.5 * 2.0**-b * rng.uniform(0.8, 1.2)))
                        for b in bits])
    return options


def brute_force(options, capacity):
    best = None
    for choice in itertools.product(*[range(len(o)) for o in options]):
        size, cost = totals(options, list(choice))
        if size <= capacity and (best is None or cost < best[0]):
            best = (cost, list(choice))
    return best


@pytest.mark.parametrize("seed", range(60))
def test_exact_matches_brute_force_and_beats_greedy(seed):
    rng = np.random.default_rng(seed)
    options = random_instance(rng, int(rng.integers(2, 6)), int(rng.integers(2, 5)))
    low, high = smallest_bytes(options), sum(max(o.bytes for o in u) for u in options)
    capacity = int(rng.integers(low, high + 1))
    best_cost, _ = brute_force(options, capacity)
    exact = get_allocator("mckp")(options, capacity)
    greedy = get_allocator("greedy")(options, capacity)
    exact_size, exact_cost = totals(options, exact)
    greedy_size, greedy_cost = totals(options, greedy)
    assert exact_size <= capacity and greedy_size <= capacity
    assert exact_cost == pytest.approx(best_cost, rel=1e-9, abs=1e-300)
    assert exact_cost <= greedy_cost * (1 + 1e-12)


@pytest.mark.parametrize("back_end", ["sparse_dp", "milp"])
def test_both_exact_back_ends_agree_with_brute_force(monkeypatch, back_end):
    # no reduced-cost fixing (every option stays), then the sparse DP or HiGHS solves it all
    monkeypatch.setattr(mckp, "_reduced_options", lambda prep, lam, cap, ub: (
        np.arange(prep.sizes.shape[1])[None, :] < prep.count[:, None], np.zeros(prep.sizes.shape[0])))
    monkeypatch.setattr(mckp, "STATE_LIMIT", 10**9 if back_end == "sparse_dp" else -1)
    rng = np.random.default_rng(7)
    for _ in range(15):
        options = random_instance(rng, 5, 4)
        capacity = int(rng.integers(smallest_bytes(options), sum(max(o.bytes for o in u) for u in options)))
        choice = mckp.allocate(options, capacity)
        assert totals(options, choice)[0] <= capacity
        assert totals(options, choice)[1] == pytest.approx(brute_force(options, capacity)[0], rel=1e-9)


def test_large_instance_exact_never_worse_than_greedy_and_within_budget():
    rng = np.random.default_rng(3)
    options = random_instance(rng, 400, 6)
    low, high = smallest_bytes(options), sum(max(o.bytes for o in u) for u in options)
    for capacity in np.linspace(low, high, 7).astype(int):
        exact, greedy = mckp.allocate(options, int(capacity)), get_allocator("greedy")(options, int(capacity))
        assert totals(options, exact)[0] <= capacity
        assert totals(options, exact)[1] <= totals(options, greedy)[1] * (1 + 1e-12)


@pytest.mark.parametrize("name", sorted(ALLOCATORS))
def test_infeasible_budget_returns_none_and_exact_fit_is_feasible(name):
    options = [[Option(10, 1.0), Option(20, 0.1)], [Option(5, 2.0), Option(40, 0.0)]]
    assert get_allocator(name)(options, 14) is None
    assert get_allocator(name)(options, 15) == [0, 0]
    assert get_allocator(name)(options, 60) == [1, 1]


def test_unknown_allocator():
    with pytest.raises(EdgeTQSError, match="greedy"):
        get_allocator("simulated-annealing")
