// The live job page. Lossless and without duplicates across reloads, dropped connections and
// web-server restarts: on every (re)connect the page asks for everything after the last counter it
// shows; live events that arrive before that answer are held back, and anything at or below the
// last counter shown is ignored.
(function () {
  "use strict";
  const root = document.getElementById("job");
  const jobId = root.dataset.jobId;
  const log = document.getElementById("log");
  const statusEl = document.getElementById("job-status");
  const reasonEl = document.getElementById("job-reason");
  const connEl = document.getElementById("connection");
  const cancelForm = document.getElementById("cancel-form");
  const counts = { tasks: 0, ok: 0, changed: 0, failed: 0, unreachable: 0 };
  let last = 0;
  let caughtUp = false;
  let held = [];
  window.wapJob = { lines: () => last, received: 0 };

  function setText(id, value) { document.getElementById(id).textContent = String(value); }

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

  // Lines are added to the page once per animation frame, in one go: appending and scrolling
  // for each event would force a layout per line, and fall behind at thousands of lines a second.
  let pending = document.createDocumentFragment();
  let frame = 0;

  function flush() {
    frame = 0;
    setText("tasks-done", counts.tasks);
    setText("hosts-ok", counts.ok);
    setText("hosts-changed", counts.changed);
    setText("hosts-failed", counts.failed);
    setText("hosts-unreachable", counts.unreachable);
    if (!pending.childNodes.length) return;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
    log.appendChild(pending);
    pending = document.createDocumentFragment();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function show(ev) {
    if (ev.job_id !== jobId || ev.counter <= last) return;
    last = ev.counter;
    window.wapJob.received += 1;
    if (window.wapJob.onEvent) window.wapJob.onEvent(ev); // a hook for tests/bench
    if (ev.stdout) {
      const line = document.createElement("span");
      line.className = "line";
      line.dataset.counter = String(ev.counter);
      window.appendAnsi(line, ev.stdout + "\n");
      pending.appendChild(line);
    }
    progress(ev);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function setStatus(job) {
    statusEl.textContent = job.status;
    statusEl.className = "status " + job.status;
    reasonEl.textContent = job.reason || "";
    if (cancelForm) cancelForm.hidden = !["queued", "running"].includes(job.status);
    root.dataset.status = job.status;
  }

  const socket = io("/jobs", { transports: ["websocket", "polling"] });

  function follow() {
    caughtUp = false;
    socket.emit("follow", { job_id: jobId, after: last }, (answer) => {
      if (!answer || !answer.ok) {
        connEl.textContent = (answer && answer.message) || "cannot follow this job";
        return;
      }
      answer.events.forEach(show);
      if (answer.more) { follow(); return; }
      caughtUp = true;
      held.sort((a, b) => a.counter - b.counter).forEach(show);
      held = [];
      flush();
      setStatus(answer.job);
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
  socket.on("events", (batch) => {
    if (caughtUp) batch.forEach(show);
    else held.push(...batch);
  });
  socket.on("status", (job) => { if (job.job_id === jobId) setStatus(job); });
  // access to the project was lost (or the session ended): the server stopped the stream
  socket.on("revoked", (m) => { if (!m.job_id || m.job_id === jobId) connEl.textContent = m.message; });
})();
