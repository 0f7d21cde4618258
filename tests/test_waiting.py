"""tests/waiting.py: a wait returns what the condition gave, or fails naming what it waited for and
what it saw; it never waits without a bound."""

import itertools

import pytest

from tests.waiting import LONGEST_WAIT, WaitTimeout, wait_until


def test_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "ready", timeout=5, every=0, what="x") == (
        "ready"
    )


def test_fails_with_what_it_waited_for_and_the_last_value_seen() -> None:
    states = iter(["STARTUP", "STARTUP2", "RECOVERING"] + ["ROLLBACK"] * 1000)
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: next(states) == "SECONDARY" and 0, timeout=0.05, every=0, what="lab2")
    assert "for lab2" in str(info.value) and "saw: False" in str(info.value)

    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: None, timeout=0.05, what="a primary", seen=lambda: "lab1 ROLLBACK")
    assert "a primary" in str(info.value) and "saw: lab1 ROLLBACK" in str(info.value)
    assert isinstance(info.value, AssertionError)  # a test failure, not an error


def test_retried_exceptions_are_seen_and_others_raise() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("lab3:27017")

    with pytest.raises(WaitTimeout, match=r"ConnectionRefusedError\('lab3:27017'\)"):
        wait_until(refused, timeout=0.05, what="lab3", retry=OSError)
    with pytest.raises(ConnectionRefusedError):
        wait_until(refused, timeout=5, what="lab3")


def test_a_seen_that_fails_still_reports_the_last_check() -> None:
    def broken() -> str:
        raise KeyError("members")

    with pytest.raises(WaitTimeout, match=r"could not tell: KeyError\('members'\).*last check: 0"):
        wait_until(lambda: 0, timeout=0.05, what="x", seen=broken)


@pytest.mark.parametrize("timeout", [0, -1, LONGEST_WAIT + 1])
def test_every_wait_has_a_bound_under_pytests_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="needs a bound"):
        wait_until(lambda: True, timeout=timeout, what="x")
