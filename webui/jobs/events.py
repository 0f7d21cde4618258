"""What of an ansible-runner event is kept: enough for the log, progress, recap and timeline,
nothing more. Thousands of events a second go to the store, Redis, every web server and every
browser following the job, so each field is paid for many times: the job's id travels once per
batch (webui.jobs.store, publish), the play's name and the event's uuid only with the play and task
starts that the timeline names and keys its tasks by (results name their task by `task_uuid`).

Task results (`res`) are dropped: they can hold anything a module returned. Known secret values are
masked in what is kept, in case a playbook prints one, as they are or encoded (base64, hex, URL).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "********"
STATS_KEYS = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored", "processed")
HOST_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")


def encodings(value: str) -> set[str]:
    """The forms a careless playbook prints a secret in: as is, base64 (standard and URL-safe,
    with or without padding), hex, URL-encoded."""
    raw = value.encode()
    forms = {value, raw.hex(), raw.hex().upper(), quote(value), quote(value, safe=""),
             quote_plus(value)}  # fmt: skip
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.update((encoded, encoded.rstrip("=")))
    return forms


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            values.update(encodings(secret.strip()))
            values.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
        self._values = sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text


def epoch(value: Any) -> float | None:
    """Seconds since the epoch from the ISO times ansible-runner's callback writes."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


STARTS = ("playbook_on_play_start", "playbook_on_task_start")


def trim(event: dict[str, Any], redact: Redactor) -> dict[str, Any]:
    data = event.get("event_data") or {}
    kind = str(event.get("event", ""))
    kept: dict[str, Any] = {
        "counter": int(event.get("counter", 0)),
        "event": kind,
        "stdout": redact(str(event.get("stdout", ""))),
        "created": time.time(),
    }
    for key in ("host", "task", "play") if kind in STARTS else ("host", "task"):
        if data.get(key):
            kept[key] = redact(str(data[key]))
    if kind in STARTS and event.get("uuid"):
        kept["uuid"] = str(event["uuid"])
    # for the timeline (webui.jobs.timeline): Ansible's own times and which task a result is of
    at = epoch(event.get("created"))
    if at is not None:
        kept["at"] = at
    if data.get("task_uuid"):
        kept["task_uuid"] = str(data["task_uuid"])
    if kind in HOST_EVENTS:
        res = data.get("res")
        kept["changed"] = bool(isinstance(res, dict) and res.get("changed"))
        for key in ("start", "end"):
            value = epoch(data.get(key))
            if value is not None:
                kept[key] = value
        if data.get("ignore_errors"):
            kept["ignored"] = True
    if kind == "playbook_on_stats":
        kept["stats"] = {k: dict(data.get(k) or {}) for k in STATS_KEYS}
        artifacts = data.get("artifact_data")
        if isinstance(artifacts, dict) and artifacts:
            # what the playbook reported with set_stats (provision_cluster.yml: its instances)
            kept["artifact_data"] = json.loads(redact(json.dumps(artifacts, default=str)))
    return kept
