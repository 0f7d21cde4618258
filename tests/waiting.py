"""Waiting in tests, one way: until a condition holds, within a bound, or fail saying what was seen.

Every wait of a test has its own bound, well under pytest's timeout (the last guard, `timeout` in
pyproject.toml), and fails with what it waited for and what it saw last: a member's state, a job's
status, the exception the check raised. Never a bare timeout, never a sleep before an assertion.

    job = wait_until(lambda: store.job(job_id)["status"] == "lost" and store.job(job_id),
                     timeout=30, what="the job to be marked lost",
                     seen=lambda: store.job(job_id)["status"])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# The longest a single wait of a test may last: pytest's own timeout (900 s) must never be how a
# test fails. Anything that needs longer is a benchmark, not a test.
LONGEST_WAIT = 600.0


class WaitTimeout(AssertionError):
    """A wait ran out of time; the message says what was awaited and what was seen."""


def wait_until(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    every: float = 0.1,
    seen: Callable[[], Any] | None = None,
    retry: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check()`` until it returns something truthy, and return that.

    An exception of a type in ``retry`` counts as "not yet" (a member still electing, a server
    still starting). After ``timeout`` seconds the wait fails with a `WaitTimeout` naming
    ``what`` and what was seen: ``seen()`` when given (its own failure is reported too), else the
    last value ``check()`` returned or the last exception it raised.
    """
    if not 0 < timeout <= LONGEST_WAIT:
        raise ValueError(f"a wait needs a bound in (0, {LONGEST_WAIT:.0f}] s, not {timeout}")
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            value = check()
        except retry as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"waited {timeout:g} s ({attempts} checks) for {what}; saw: {_describe(seen, last)}"
            )
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))


def _describe(seen: Callable[[], Any] | None, last: Any) -> str:
    if seen is None:
        return repr(last)
    try:
        return str(seen())
    except Exception as exc:  # what was seen cannot be read: say so, with the last check
        return f"(could not tell: {exc!r}); last check: {last!r}"


def member_states(members: Mapping[str, Any], close: bool = False) -> str:
    """What each replica set member says of itself, for failure messages: name -> a pymongo
    client connected directly to it (short server selection timeouts, please). One line each:
    state, term, last applied optime, sync source and message, or why it did not answer."""
    from pymongo.errors import PyMongoError

    lines = []
    for name, client in members.items():
        try:
            status = client.admin.command("replSetGetStatus")
        except PyMongoError as exc:
            lines.append(f"{name}: no status ({type(exc).__name__}: {str(exc)[:160]})")
            continue
        finally:
            if close:
                client.close()
        me = next((m for m in status.get("members", []) if m.get("self")), {})
        applied = status.get("optimes", {}).get("appliedOpTime", {})
        parts = [
            me.get("stateStr", f"state {status.get('myState')}"),
            f"term {status.get('term')}",
            f"applied {applied.get('ts')}/t{applied.get('t')}",
        ]
        if status.get("syncSourceHost"):
            parts.append(f"syncing from {status['syncSourceHost']}")
        if me.get("infoMessage"):
            parts.append(repr(me["infoMessage"]))
        others = [m for m in status.get("members", []) if not m.get("self")]
        others = ", ".join(f"{m['name']} {m.get('stateStr')}" for m in others)
        lines.append(f"{name}: {'; '.join(parts)} (sees {others})")
    return "\n  " + "\n  ".join(lines)
