"""Retry with backoff: which faults are retried, how long it waits, what it raises."""

import pytest

from edgetqs.errors import EdgeTQSError
from edgetqs.retry import with_backoff


def _flaky(failures: int, fault=ConnectionError):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= failures:
            raise fault(f"fault {len(calls)}")
        return "done"
    return action, calls


def _give_up(exc, attempts):
    return EdgeTQSError(f"gave up after {attempts}: {exc}", "check the network")


def test_retries_with_doubling_waits_then_succeeds():
    action, calls = _flaky(2)
    waits, faults = [], []
    assert with_backoff(action, attempts=4, backoff=0.5, faults=(ConnectionError,), give_up=_give_up,
                        on_fault=faults.append, sleep=waits.append) == "done"
    assert len(calls) == 3 and waits == [0.5, 1.0] and len(faults) == 2


def test_gives_up_with_the_callers_error_chained_to_the_fault():
    action, calls = _flaky(10)
    waits = []
    with pytest.raises(EdgeTQSError, match="gave up after 3: fault 3") as caught:
        with_backoff(action, attempts=3, backoff=1, faults=(ConnectionError,), give_up=_give_up, sleep=waits.append)
    assert len(calls) == 3 and waits == [1, 2] and isinstance(caught.value.__cause__, ConnectionError)


def test_other_exceptions_are_not_retried():
    action, calls = _flaky(1, fault=ValueError)
    with pytest.raises(ValueError):
        with_backoff(action, attempts=5, backoff=1, faults=(ConnectionError,), give_up=_give_up, sleep=lambda s: None)
    assert len(calls) == 1
