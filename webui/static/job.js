// The live job page. Lossless and without duplicates across reloads, dropped connections and
// web-server restarts: on every (re)connect the page asks for everything after the last counter it
// holds; live events that arrive before that answer are held back, and anything at or below the
// last counter held is ignored.
//
// Under load (thousands of lines a second) the page does per event only what is cheap: keep the
// line's text and fold the event into the counts and the timeline. Drawing happens in one batch
// per animation frame, at most every DRAW_EVERY ms and never more than a third of the time (each
// drawing lays out and paints its new lines, the browser's main cost under a burst; while it
// draws, arriving events wait: at 10,000 lines a second a drawing every 100 ms kept the page
// busy and events waited seconds), and the log's DOM keeps the latest MAX_LINES lines: earlier
// ones stay in memory, a click away ("Show earlier lines"), and the whole log is a plain-text
// link.
(function () {
  "use strict";
  const MAX_LINES = 2000; // lines in the DOM while following the end
  const DRAW_AT_MOST = 500; // new lines one drawing lays out while following: the latest ones
  const EARLIER_STEP = 2000; // lines one "Show earlier lines" click brings back
  const DRAW_EVERY = 100; // ms between two drawings of the log while events arrive
  const TIMELINE_EVERY = 500; // ms between two drawings of the timeline while events arrive
  const LANE = 6; // px per host lane in a task's bars
  const NS = "http://www.w3.org/2000/svg";
  const OUTCOMES = ["ok", "changed", "failed", "unreachable", "skipped", "running"];
  const HOST_EVENTS = { runner_on_ok: 1, runner_on_failed: 1, runner_on_skipped: 1, runner_on_unreachable: 1 };

  const root = document.getElementById("job");
  const jobId = root.dataset.jobId;
  const log = document.getElementById("log");
  const statusEl = document.getElementById("job-status");
  const reasonEl = document.getElementById("job-reason");
  const connEl = document.getElementById("connection");
  const cancelForm = document.getElementById("cancel-form");
  const earlierEl = document.getElementById("log-earlier");
  const hiddenEl = document.getElementById("log-hidden");
  const timelineEl = document.getElementById("timeline-body");
  const counts = { tasks: 0, ok: 0, changed: 0, failed: 0, unreachable: 0 };
  let last = 0;
  let caughtUp = false;
  let held = [];
  let finished = !["queued", "running"].includes(root.dataset.status);

  // every line with output, in counter order: lines[first .. drawn) are in the DOM
  const lines = [];
  let first = 0;
  let drawn = 0;
  let limit = MAX_LINES;
  let following = true;
  let frame = 0;
  let drawTimer = 0;
  let drawnAt = 0;
  let drawCost = 0; // ms the last drawing took, its layout included
  const shownCounts = {};

  window.wapJob = {
    lines: () => last,
    received: 0,
    counters: () => lines.map((l) => l[0]), // every line the page holds, in order
    inView: () => drawn - first,
  };

  function setText(id, value) { document.getElementById(id).textContent = String(value); }
  function setCount(id, value) { // only what changed: each write costs a layout
    if (shownCounts[id] !== value) { shownCounts[id] = value; setText(id, value); }
  }

  // ---- the timeline: the same fold as webui/jobs/timeline.py ---------------------------------
  const tl = { plays: [], tasks: new Map(), hosts: [], start: null, end: null, finished: false };
  let tlDirty = false;
  let tlDrawnAt = 0;

  function tlPlay(name, at) {
    if (!tl.plays.length) tl.plays.push({ name: name || "", start: at, end: at, tasks: [] });
    return tl.plays[tl.plays.length - 1];
  }

  function outcome(ev) {
    if (ev.event === "runner_on_ok") return ev.changed ? "changed" : "ok";
    if (ev.event === "runner_on_failed") return ev.ignored ? "ignored" : "failed";
    if (ev.event === "runner_on_skipped") return "skipped";
    if (ev.event === "runner_on_unreachable") return "unreachable";
    return "running";
  }

  function timelineFold(ev) {
    const at = ev.at || ev.created;
    if (!at) return;
    const kind = ev.event;
    const hostEvent = (HOST_EVENTS[kind] || kind === "runner_on_start") && ev.host;
    if (kind !== "playbook_on_play_start" && kind !== "playbook_on_task_start" &&
        kind !== "playbook_on_stats" && !hostEvent) return;
    tl.start = tl.start === null ? at : Math.min(tl.start, at);
    tl.end = tl.end === null ? at : Math.max(tl.end, at);
    tlDirty = true;
    if (kind === "playbook_on_play_start") {
      tl.plays.push({ name: ev.play || "", start: at, end: at, tasks: [] });
    } else if (kind === "playbook_on_task_start") {
      const task = { name: ev.task || "", start: at, end: at, hosts: new Map() };
      tlPlay(ev.play, at).tasks.push(task);
      tl.tasks.set(ev.uuid || "task:" + task.name, task);
    } else if (kind === "playbook_on_stats") {
      tl.finished = true;
      tl.end = at;
    } else {
      const key = ev.task_uuid || "task:" + (ev.task || "");
      let task = tl.tasks.get(key);
      if (!task) {
        task = { name: ev.task || "", start: at, end: at, hosts: new Map() };
        tlPlay(ev.play, at).tasks.push(task);
        tl.tasks.set(key, task);
      }
      const host = String(ev.host);
      if (!tl.hosts.includes(host)) tl.hosts.push(host);
      let entry = task.hosts.get(host);
      if (!entry) { entry = { host, start: at, end: null, outcome: "running" }; task.hosts.set(host, entry); }
      if (kind !== "runner_on_start") {
        entry.start = ev.start || entry.start;
        entry.end = Math.max(ev.end || at, entry.start);
        entry.outcome = outcome(ev);
      }
      const reached = entry.end || entry.start;
      task.end = Math.max(task.end, reached);
      if (!tl.finished) tl.end = Math.max(tl.end, reached);
    }
  }

  function seconds(value) { return (value || 0).toFixed(1) + " s"; }

  function el(tag, attrs, text) {
    const node = tag === "svg" || tag === "rect" || tag === "title"
      ? document.createElementNS(NS, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function timelineDraw() {
    tlDirty = false;
    tlDrawnAt = performance.now();
    if (!tl.plays.length) return;
    const now = Date.now() / 1000;
    const start = tl.start;
    const stop = Math.max(tl.finished || finished ? tl.end : Math.max(tl.end, now), start);
    const span = Math.max(stop - start, 1e-6);
    const lanes = Math.max(tl.hosts.length, 1);
    const place = (item, until) => ({
      x: (1000 * (item.start - start) / span).toFixed(2),
      w: Math.max(1000 * (until - item.start) / span, 1).toFixed(2),
      d: until - item.start,
    });
    const body = document.createDocumentFragment();
    const legend = el("p", { class: "muted tl-legend" },
      seconds(stop - start) + " in all · host lanes, top to bottom: " + (tl.hosts.join(", ") || "none") + " · ");
    for (const o of OUTCOMES) {
      legend.appendChild(el("span", { class: "tl-key tl-" + o }, o));
      legend.appendChild(document.createTextNode(" "));
    }
    body.appendChild(legend);
    const table = el("table", { class: "tl" });
    const head = table.createTHead().insertRow();
    head.appendChild(el("th", { scope: "col" }, "play / task"));
    head.appendChild(el("th", { scope: "col" }, "time"));
    head.appendChild(el("th", { scope: "col", class: "tl-axis" }, "0 → " + seconds(stop - start)));
    const tbody = table.createTBody();
    for (const play of tl.plays) {
      let playEnd = play.end;
      for (const task of play.tasks) playEnd = Math.max(playEnd, task.end);
      const p = place(play, playEnd);
      const row = tbody.insertRow();
      row.className = "tl-play";
      row.dataset.play = play.name;
      row.appendChild(el("th", { scope: "row" }, play.name || "(play)"));
      row.appendChild(el("td", { class: "tl-dur" }, seconds(p.d)));
      const svg = el("svg", { viewBox: "0 0 1000 6", preserveAspectRatio: "none", height: 6,
        role: "img", "aria-label": "play " + play.name + ": " + seconds(p.d) });
      const bar = el("rect", { class: "tl-bar tl-playbar", x: p.x, y: 0, width: p.w, height: 6 });
      bar.appendChild(el("title", {}, play.name + ": " + seconds(p.d)));
      svg.appendChild(bar);
      row.insertCell().className = "tl-lane";
      row.lastChild.appendChild(svg);
      for (const task of play.tasks) {
        const hosts = [...task.hosts.values()];
        const running = hosts.some((h) => h.end === null);
        const t = place(task, running ? stop : task.end);
        const trow = tbody.insertRow();
        trow.className = "tl-task";
        trow.dataset.task = task.name;
        trow.appendChild(el("th", { scope: "row" }, task.name || "(task)"));
        trow.appendChild(el("td", { class: "tl-dur" }, seconds(t.d)));
        const label = hosts.map((h) => h.host + " " + h.outcome + " " +
          seconds((h.end === null ? stop : h.end) - h.start)).join(", ");
        const tsvg = el("svg", { viewBox: "0 0 1000 " + lanes * LANE, preserveAspectRatio: "none",
          height: lanes * LANE, role: "img", "aria-label": task.name + ": " + label });
        for (const h of hosts) {
          const b = place(h, h.end === null ? stop : h.end);
          const rect = el("rect", { class: "tl-bar tl-" + h.outcome, "data-host": h.host,
            "data-outcome": h.outcome, x: b.x, y: tl.hosts.indexOf(h.host) * LANE, width: b.w,
            height: LANE - 1 });
          rect.appendChild(el("title", {}, h.host + ": " + h.outcome + ", " + seconds(b.d)));
          tsvg.appendChild(rect);
        }
        trow.insertCell().className = "tl-lane";
        trow.lastChild.appendChild(tsvg);
      }
    }
    body.appendChild(table);
    timelineEl.replaceChildren(body);
    root.dataset.timelineTasks = String(tl.tasks.size);
  }

  // ---- counts and recap ------------------------------------------------------------------------
  function progress(ev) {
    if (ev.event === "playbook_on_task_start") counts.tasks += 1;
    else if (ev.event === "runner_on_ok") counts[ev.changed ? "changed" : "ok"] += 1;
    else if (ev.event === "runner_on_failed") counts.failed += 1;
    else if (ev.event === "runner_on_unreachable") counts.unreachable += 1;
    if (ev.event === "playbook_on_stats" && ev.stats) recap(ev.stats);
  }

  function recap(stats) {
    const table = document.getElementById("recap-table");
    const hosts = new Set();
    Object.values(stats).forEach((per) => Object.keys(per || {}).forEach((h) => hosts.add(h)));
    for (const host of [...hosts].sort()) {
      const row = table.insertRow();
      row.insertCell().textContent = host;
      for (const key of ["ok", "changed", "dark", "failures", "skipped", "rescued", "ignored"]) {
        row.insertCell().textContent = String((stats[key] || {})[host] || 0);
      }
    }
    document.getElementById("recap").hidden = false;
  }

  // ---- the log ---------------------------------------------------------------------------------
  function lineNode(entry) {
    const line = document.createElement("span");
    line.className = "line";
    line.dataset.counter = String(entry[0]);
    window.appendAnsi(line, entry[1] + "\n");
    return line;
  }

  log.addEventListener("scroll", () => {
    following = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
  }, { passive: true });

  // Earlier lines back into the DOM, above what is in view, where the reader is.
  document.getElementById("log-more").addEventListener("click", () => {
    const from = Math.max(0, first - EARLIER_STEP);
    const batch = chunkOf(from, first);
    const height = log.scrollHeight;
    log.insertBefore(batch, log.firstChild);
    log.scrollTop += log.scrollHeight - height;
    limit += first - from;
    first = from;
    showEarlier();
  });

  function showEarlier() {
    earlierEl.hidden = first === 0;
    hiddenEl.textContent = String(first);
  }

  // Lines go into the log in chunks, one per drawing: a block each (job.css), so that a drawing
  // lays out its new lines only, not every line of one long preformatted text.
  function chunkOf(from, to) {
    const chunk = document.createElement("div");
    chunk.className = "chunk";
    for (let i = from; i < to; i++) chunk.appendChild(lineNode(lines[i]));
    return chunk;
  }

  function dropOldest(count) { // the oldest lines leave the DOM (they stay in `lines`)
    while (count > 0) {
      const chunk = log.firstElementChild;
      const size = chunk.childElementCount;
      if (size <= count) { chunk.remove(); count -= size; continue; }
      const range = document.createRange();
      range.setStartBefore(chunk.firstChild);
      range.setEndAfter(chunk.children[count - 1]);
      range.deleteContents();
      count = 0;
    }
  }

  function flush() {
    frame = 0;
    drawnAt = performance.now();
    setCount("tasks-done", counts.tasks);
    setCount("hosts-ok", counts.ok);
    setCount("hosts-changed", counts.changed);
    setCount("hosts-failed", counts.failed);
    setCount("hosts-unreachable", counts.unreachable);
    if (drawn < lines.length) {
      // more new lines than a drawing takes (while following) or than the DOM keeps: what is in
      // view goes, the latest lines come (a drawing's time, and the events waiting on it, stay
      // bounded however fast lines arrive; nobody reads 5,000 lines a second as they pass)
      const from = Math.max(drawn, lines.length - (following ? DRAW_AT_MOST : limit));
      if (from > drawn) {
        log.textContent = "";
        first = from;
      }
      log.appendChild(chunkOf(from, lines.length));
      if (window.wapJob.onDraw) window.wapJob.onDraw(lines[from][0], lines[lines.length - 1][0]);
      drawn = lines.length;
      const excess = drawn - first - limit;
      if (excess > 0) {
        dropOldest(excess);
        first += excess;
      }
      showEarlier();
      if (following) log.scrollTop = log.scrollHeight; // lays the log out now
    }
    drawCost = performance.now() - drawnAt;
    if (tlDirty) timelineSoon();
  }

  // The timeline is drawn at most every TIMELINE_EVERY ms, and again while a host runs a task
  // (its bar grows with the clock).
  let tlTimer = 0;
  function timelineSoon() {
    if (tlTimer) return;
    const wait = Math.max(0, TIMELINE_EVERY - (performance.now() - tlDrawnAt));
    tlTimer = setTimeout(() => {
      tlTimer = 0;
      requestAnimationFrame(() => {
        timelineDraw();
        if (!finished && !tl.finished && tl.plays.length) { tlDirty = true; timelineSoon(); }
      });
    }, wait);
  }

  function schedule() {
    if (frame || drawTimer) return;
    const wait = Math.max(DRAW_EVERY, 3 * drawCost) - (performance.now() - drawnAt);
    if (wait <= 0) { frame = requestAnimationFrame(flush); return; }
    drawTimer = setTimeout(() => { drawTimer = 0; frame = requestAnimationFrame(flush); }, wait);
  }

  function take(ev) {
    if (ev.counter <= last) return;
    last = ev.counter;
    window.wapJob.received += 1;
    if (window.wapJob.onEvent) window.wapJob.onEvent(ev); // a hook for tests/bench
    if (ev.stdout) lines.push([ev.counter, ev.stdout]);
    progress(ev);
    timelineFold(ev);
  }

  function setStatus(job) {
    statusEl.textContent = job.status;
    statusEl.className = "status " + job.status;
    reasonEl.textContent = job.reason || "";
    if (cancelForm) cancelForm.hidden = !["queued", "running"].includes(job.status);
    root.dataset.status = job.status;
    finished = !["queued", "running"].includes(job.status);
    if (finished) { tlDirty = true; timelineSoon(); }
  }

  const socket = io("/jobs", { transports: ["websocket", "polling"] });

  function follow() {
    caughtUp = false;
    socket.emit("follow", { job_id: jobId, after: last }, (answer) => {
      if (!answer || !answer.ok) {
        connEl.textContent = (answer && answer.message) || "cannot follow this job";
        return;
      }
      answer.events.forEach(take);
      if (answer.more) { follow(); return; }
      caughtUp = true;
      held.sort((a, b) => a.counter - b.counter).forEach(take);
      held = [];
      setStatus(answer.job);
      flush();
      if (tlDirty) timelineDraw();
      root.dataset.caughtUp = "1";
    });
  }

  socket.on("connect", () => { connEl.textContent = ""; follow(); });
  socket.on("disconnect", (reason) => {
    root.dataset.caughtUp = "0";
    // the server ends a session it revoked and the client does not come back: keep its message
    if (reason !== "io server disconnect") connEl.textContent = "(reconnecting…)";
  });
  socket.on("connect_error", () => { connEl.textContent = "(cannot reach the server, retrying…)"; });
  // a batch of live events: {job_id, events_json: "[...]"} (the events as the store keeps them)
  socket.on("events", (batch) => {
    if (!batch || batch.job_id !== jobId) return;
    const events = JSON.parse(batch.events_json);
    if (!caughtUp) { held.push(...events); return; }
    events.forEach(take);
    schedule();
  });
  socket.on("status", (job) => { if (job.job_id === jobId) setStatus(job); });
  // access to the project was lost (or the session ended): the server stopped the stream
  socket.on("revoked", (m) => { if (!m.job_id || m.job_id === jobId) connEl.textContent = m.message; });
})();
