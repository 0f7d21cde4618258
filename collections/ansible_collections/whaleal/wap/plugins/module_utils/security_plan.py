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


AUTH_TEXT = {
    1: "with the keyFile and transitionToAuth (connections with or without authentication "
    "accepted)",
    2: "without transitionToAuth (access control enforced)",
}
TLS_TEXT = {
    1: "at allowTLS (TLS and plain accepted, peers reached without TLS)",
    2: "at preferTLS (TLS and plain accepted, peers reached with TLS)",
    3: "at requireTLS (only TLS accepted)",
}


def plan_security(
    processes: list[dict], auth: bool, tls: bool, until: str = "end", who: str = "the deployment"
) -> dict:
    """The steps that take ``processes`` (each host, auth and tls levels, error when it did not
    answer) to access control and/or TLS. ``until`` "transition" stops where every process
    accepts both ways (transitionToAuth with the users made, preferTLS), so that clients can
    move before the last pass. Raises SecurityRefused before anything changes.

    Each pass moves every process one level on each axis asked: processes one level apart on
    either axis reach each other (transitionToAuth tries the keyFile and goes on without it;
    allowTLS and preferTLS accept both), so access control and TLS share their passes when both
    are asked (keyFile + allowTLS, enforced + preferTLS, requireTLS: three restarts, not five).
    The users are made once every process has the keyFile, before access control is enforced."""
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
    auth_low = min(p["auth"] for p in processes)
    tls_low = min(p["tls"] for p in processes)
    auth_now = auth_low if auth else _uniform(processes, "auth", "access control")
    tls_now = tls_low if tls else _uniform(processes, "tls", "TLS")
    auth_stages = [lvl for lvl in (1, 2) if auth and auth_low < lvl <= (2 if until == "end" else 1)]
    tls_stages = [lvl for lvl in (1, 2, 3) if tls and tls_low < lvl <= (3 if until == "end" else 2)]
    steps: list[dict] = []
    for i in range(max(len(auth_stages), len(tls_stages))):
        if i < len(auth_stages) and auth_stages[i] == 2:
            steps.append(_users(auth_now, tls_now))
        a = auth_stages[i] if i < len(auth_stages) else auth_now
        t = tls_stages[i] if i < len(tls_stages) else tls_now
        what = [AUTH_TEXT[a]] if a != auth_now else []
        what += [TLS_TEXT[t]] if t != tls_now else []
        names = (["auth_transition" if a == 1 else "auth_enforce"] if a != auth_now else []) + (
            [TLS_LEVELS[t]] if t != tls_now else []
        )
        # Modules reach the processes with credentials once one may ask for them, over TLS once
        # one may refuse plain connections.
        steps.append(_step("+".join(names), "restart " + " and ".join(what), a, t, a == 2, t == 3))
        auth_now, tls_now = a, t
    if auth_stages == [1]:  # stopping at the transition: the users are made there
        steps.append(_users(auth_now, tls_now))
    return {"steps": steps, "auth_level": AUTH_LEVELS[auth_now], "tls_mode": TLS_LEVELS[tls_now]}


def _users(auth: int, tls: int) -> dict:
    return _step("users", "create the administrator and the users", auth, tls, True, tls == 3)


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
