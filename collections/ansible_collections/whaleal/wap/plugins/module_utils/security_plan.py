# Copyright: WAP developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Enabling access control and TLS on a running deployment, planned as MongoDB documents it.

Access control (keyFile, no downtime): every process restarted with the keyFile and
``transitionToAuth`` (it accepts connections with or without authentication), then the
administrator and the users created, then every process restarted without ``transitionToAuth``.
TLS: every process restarted at allowTLS (accepts both, reaches its peers without TLS), then
preferTLS (reaches them with TLS), then requireTLS. Each is a rolling pass; a pass is planned only
while a process still runs below its level, so a second run plans nothing and a stopped one
resumes where it stopped. Pure functions, unit-tested; the module reads what each process runs.
"""

from __future__ import annotations

AUTH_LEVELS = ("open", "transitionToAuth", "enforced")
TLS_LEVELS = ("disabled", "allowTLS", "preferTLS", "requireTLS")


class SecurityRefused(ValueError):
    """The deployment cannot be secured as asked (a process down, settings that differ...)."""


def levels_of(security: dict) -> tuple[int, int]:
    """(access control level, TLS level) of one process from discovery.security_of's answer."""
    if security.get("auth"):
        auth = 2
    elif security.get("transition_to_auth") and security.get("key_file"):
        auth = 1
    else:
        auth = 0
    tls = security.get("tls") or "disabled"
    return auth, TLS_LEVELS.index(tls) if tls in TLS_LEVELS else 0


def connection_ways(tls_files: bool, credentials: bool) -> list[tuple[bool, bool]]:
    """The (TLS, authenticate) ways to try on a process whose settings are not known yet, the
    plainest first: a process in the middle of a pass accepts one of them."""
    ways = [(False, False)]
    if credentials:
        ways.append((False, True))
    if tls_files:
        ways.append((True, False))
        if credentials:
            ways.append((True, True))
    return ways


def _step(name: str, description: str, auth: int, tls: int, login: bool, use_tls: bool) -> dict:
    return {
        "name": name,
        "description": description,
        "auth_level": AUTH_LEVELS[auth],
        "tls_mode": TLS_LEVELS[tls],
        "login": login,
        "tls": use_tls,
    }


def _uniform(processes: list[dict], key: str, what: str) -> int:
    found = sorted({p[key] for p in processes})
    if len(found) > 1:
        raise SecurityRefused(
            f"the processes differ in {what} ("
            + ", ".join(
                f"{p['host']} {(AUTH_LEVELS if key == 'auth' else TLS_LEVELS)[p[key]]}"
                for p in processes
            )
            + f"): ask for {what} to be enabled to finish it"
        )
    return found[0] if found else 0


def plan_security(
    processes: list[dict], auth: bool, tls: bool, until: str = "end", who: str = "the deployment"
) -> dict:
    """The steps that take ``processes`` (each host, auth and tls levels, error when it did not
    answer) to access control and/or TLS. ``until`` "transition" stops where every process
    accepts both (transitionToAuth with the users made, preferTLS), so that clients can move
    before the last pass. Raises SecurityRefused before anything changes."""
    if until not in ("end", "transition"):
        raise SecurityRefused(f"until must be end or transition, not {until!r}")
    if not auth and not tls:
        raise SecurityRefused("ask for access control, TLS or both")
    down = [p for p in processes if p.get("error")]
    if down:
        raise SecurityRefused(
            "every process must answer before a rolling pass; "
            + "; ".join(f"{p['host']}: {p['error']}" for p in down)
        )
    if not processes:
        raise SecurityRefused(f"no process of {who} was found")
    steps: list[dict] = []
    auth_low = min(p["auth"] for p in processes)
    tls_low = min(p["tls"] for p in processes)
    auth_steps = auth and (auth_low < 1 or (auth_low < 2 and until == "end"))
    # Access control's passes keep each process's TLS mode: it must be one for all then.
    tls_now = _uniform(processes, "tls", "TLS") if auth_steps or not tls else tls_low
    if auth_steps:
        # Modules reach the processes over TLS only when they may refuse plain connections.
        over_tls = tls_now == 3
        if auth_low < 1:
            steps.append(
                _step(
                    "auth_transition",
                    "restart with the keyFile and transitionToAuth "
                    "(connections with or without authentication accepted)",
                    1,
                    tls_now,
                    False,
                    over_tls,
                )
            )
        steps.append(
            _step("users", "create the administrator and the users", 1, tls_now, True, over_tls)
        )
        if until == "end":
            steps.append(
                _step(
                    "auth_enforce",
                    "restart without transitionToAuth (access control enforced)",
                    2,
                    tls_now,
                    True,
                    over_tls,
                )
            )
        auth_now = 2 if until == "end" else 1
    else:
        auth_now = auth_low if auth else _uniform(processes, "auth", "access control")
        if auth and until == "transition":
            auth_now = 1
    tls_final = tls_now
    if tls:
        tls_final = max(tls_low, 3 if until == "end" else 2)
        what = {
            1: "allowTLS (TLS and plain accepted, peers reached without TLS)",
            2: "preferTLS (TLS and plain accepted, peers reached with TLS)",
            3: "requireTLS (only TLS accepted)",
        }
        for level in range(tls_low + 1, tls_final + 1):
            steps.append(
                _step(
                    TLS_LEVELS[level],
                    f"restart at {what[level]}",
                    auth_now,
                    level,
                    auth_now == 2,
                    level == 3,
                )
            )
    return {"steps": steps, "auth_level": AUTH_LEVELS[auth_now], "tls_mode": TLS_LEVELS[tls_final]}


def describe(plan: dict, processes: list[dict], who: str) -> list[str]:
    """The plan as lines: each step, with the processes restarted in order."""
    order = ", ".join(p["host"] for p in processes)
    lines = []
    for i, step in enumerate(plan["steps"], 1):
        if step["name"] == "users":
            lines.append(f"{i}. {step['description']}")
        else:
            lines.append(
                f"{i}. {step['description']}: {who}, member by member ({order}), "
                "each set's primary last after a step-down"
            )
    return lines
