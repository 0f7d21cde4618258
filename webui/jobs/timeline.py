"""A job's plays and tasks per host, with their times and outcomes, folded from its stored events.

The fold reads what `events.trim` keeps: the play and task start events (with Ansible's own time,
`at`), `runner_on_start` (a host began a task) and the host results (`start` and `end` as Ansible
measured them). A task's hosts run side by side; the linear strategy starts the next task when
the slowest host is done, which the bars show: what waited on what. `static/job.js` folds the
same events the same way in the browser, live.
"""

from __future__ import annotations

from typing import Any

from webui.jobs.events import HOST_EVENTS

KINDS = ("playbook_on_play_start", "playbook_on_task_start", "runner_on_start", *HOST_EVENTS,
         "playbook_on_stats")  # fmt: skip
WIDTH = 1000  # the bars' coordinate space (an SVG viewBox across the job's span)


def outcome(event: dict[str, Any]) -> str:
    kind = event.get("event")
    if kind == "runner_on_ok":
        return "changed" if event.get("changed") else "ok"
    if kind == "runner_on_failed":
        return "ignored" if event.get("ignored") else "failed"
    if kind == "runner_on_skipped":
        return "skipped"
    if kind == "runner_on_unreachable":
        return "unreachable"
    return "running"


def fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Plays, their tasks, each task's hosts: {name, start, end, outcome}; `end` is None while
    running. Events in counter order."""
    plays: list[dict[str, Any]] = []
    tasks: dict[str, dict[str, Any]] = {}
    hosts: list[str] = []
    start = end = None
    finished = None

    def play_for(event: dict[str, Any], at: float) -> dict[str, Any]:
        if not plays:
            plays.append({"name": event.get("play") or "", "start": at, "end": at, "tasks": []})
        return plays[-1]

    for event in events:
        kind = event.get("event")
        at = event.get("at") or event.get("created")
        if at is None:
            continue
        start = at if start is None else min(start, at)
        end = at if end is None else max(end, at)
        if kind == "playbook_on_play_start":
            plays.append({"name": event.get("play") or "", "start": at, "end": at, "tasks": []})
        elif kind == "playbook_on_task_start":
            task = {"name": event.get("task") or "", "start": at, "end": at, "hosts": {}}
            play_for(event, at)["tasks"].append(task)
            tasks[event.get("uuid") or f"task:{task['name']}"] = task
        elif kind == "playbook_on_stats":
            finished = at
        elif kind in KINDS and event.get("host"):
            key = event.get("task_uuid") or f"task:{event.get('task') or ''}"
            task = tasks.get(key)
            if task is None:  # a result without its task's start: a task of its own
                task = {"name": event.get("task") or "", "start": at, "end": at, "hosts": {}}
                play_for(event, at)["tasks"].append(task)
                tasks[key] = task
            host = str(event["host"])
            if host not in hosts:
                hosts.append(host)
            entry = task["hosts"].setdefault(
                host, {"host": host, "start": at, "end": None, "outcome": "running"}
            )
            if kind != "runner_on_start":
                entry["start"] = event.get("start") or entry["start"]
                entry["end"] = max(event.get("end") or at, entry["start"])
                entry["outcome"] = outcome(event)
            last = entry["end"] or entry["start"]
            task["end"] = max(task["end"], last)
            end = max(end, last)
    for play in plays:
        for task in play["tasks"]:
            task["hosts"] = list(task["hosts"].values())
            play["end"] = max(play["end"], task["end"])
    return {"start": start, "end": finished or end, "finished": finished is not None,
            "hosts": hosts, "plays": plays}  # fmt: skip


def laid_out(timeline: dict[str, Any], now: float) -> dict[str, Any]:
    """The timeline with durations, and each bar's `x` and `w` in 0..WIDTH of the job's span
    (a running host's bar reaches `now`)."""
    start = timeline["start"] or now
    stop = max(timeline["end"] or now, now if not timeline["finished"] else 0, start)
    span = max(stop - start, 1e-6)

    def place(item: dict[str, Any], until: float) -> None:
        item["duration"] = round(until - item["start"], 3)
        item["x"] = round(WIDTH * (item["start"] - start) / span, 2)
        item["w"] = round(max(WIDTH * (until - item["start"]) / span, 1.0), 2)

    for play in timeline["plays"]:
        place(play, play["end"])
        for task in play["tasks"]:
            running = any(h["end"] is None for h in task["hosts"])
            place(task, stop if running else task["end"])
            for host in task["hosts"]:
                place(host, stop if host["end"] is None else host["end"])
    timeline["duration"] = round(stop - start, 3) if timeline["start"] else 0
    return timeline
