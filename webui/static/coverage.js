// Continuous backup's coverage (backups/_coverage.html): per replica set a lane of restorable
// windows (from a base snapshot to the last durable oplog entry), gaps with their bounds and
// reason, and entries a restore cannot reproduce (and, for several sets, the whole cluster's
// windows: the moments every set reaches), drawn as SVG from GET
// /api/v1/clusters/{id}/backup-coverage and read again every few seconds, so that "restorable
// until" moves without a reload (less often when the store is slow to read, not while the page
// is hidden). A moment typed (or a window's end, Enter on it) is checked against the coverage
// and explained: the base snapshot of each set and the last oplog entry replayed, with a link to
// the restore wizard of that snapshot, the moment filled in. Every shape
// takes the focus (Tab; arrow keys move between them) and says what it is in words.
(function () {
  "use strict";
  const section = document.getElementById("backup-coverage");
  if (!section) return;
  const SVG = "http://www.w3.org/2000/svg";
  const every = Number(section.dataset.every || 5000);
  const until = document.getElementById("restorable-until");
  const figure = document.getElementById("coverage-figure");
  const chart = document.getElementById("coverage-chart");
  const detail = document.getElementById("coverage-detail");
  const empty = document.getElementById("coverage-empty");
  const followers = document.getElementById("coverage-followers");
  const WIDTH = 1000, LABEL = 170, RIGHT = 20, LANE = 46, TOP = 10, AXIS = 34;
  let shown = "";

  function utc(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function point(p) {
    return `${utc(p.t)} (oplog Timestamp(${p.t}, ${p.i}))`;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text != null) e.textContent = text;
    return e;
  }

  function followerText(f) {
    if (!f) return { text: "no follower has stored anything", silent: true };
    if (f.silent) {
      const since = f.reported_at ? `no report since ${utc(Math.floor(f.reported_at))}` : "no report";
      return { text: `follower silent: ${since}`, silent: true };
    }
    return { text: "following: reporting", silent: false };
  }

  function bounds(sets) {
    let low = Infinity, high = -Infinity;
    const see = (p) => { if (p) { low = Math.min(low, p.t); high = Math.max(high, p.t); } };
    for (const s of Object.values(sets)) {
      s.windows.forEach((w) => { see(w.from); see(w.until); });
      s.gaps.forEach((g) => { see(g.after); see(g.resumed); });
      s.unrestorable.forEach((u) => see(u.at));
      see(s.last_durable);
    }
    if (low === Infinity) return null;
    const pad = Math.max(30, (high - low) * 0.03);
    return [low - pad, high + pad];
  }

  function shape(tag, attrs, label, key) {
    const e = svg(tag, { ...attrs, tabindex: "0", role: "img", "aria-label": label,
      "data-key": key, class: `cov-shape ${attrs.class}` });
    e.append(svg("title", {}, label));
    return e;
  }

  function draw(answer) {
    const sets = answer.replica_sets;
    const names = Object.keys(sets);
    const range = bounds(sets);
    // several sets (a sharded cluster): a lane of the moments every set reaches, its windows
    const whole = names.length > 1 ? answer.windows || [] : null;
    const rows = names.length + (whole ? 1 : 0);
    const height = TOP + rows * LANE + AXIS;
    chart.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    chart.replaceChildren();
    followers.replaceChildren();
    const [low, high] = range;
    const x = (t) => LABEL + ((t - low) / (high - low)) * (WIDTH - LABEL - RIGHT);
    const span = (a, b) => ({ x: x(a).toFixed(1), width: Math.max(3, x(b) - x(a)).toFixed(1) });
    names.forEach((name, row) => {
      const s = sets[name];
      const y = TOP + row * LANE;
      const lane = svg("g", { class: "cov-lane", "data-set": name, role: "group",
        "aria-label": `replica set ${name}` });
      const state = followerText(s.follower);
      lane.append(svg("text", { x: 4, y: y + 16, class: "cov-lane-label" }, name),
        svg("text", { x: 4, y: y + 32, class: `cov-lane-state${state.silent ? " cov-silent" : ""}` },
          state.silent ? "follower silent" : "following"));
      const item = document.createElement("li");
      item.dataset.follower = state.silent ? "silent" : "reporting";
      item.className = state.silent ? "cov-silent" : "";
      const last = s.last_durable ? `; last durable entry ${point(s.last_durable)}` : "";
      item.textContent = `${name}: ${state.text}${last}`;
      followers.append(item);
      s.windows.forEach((w) => {
        let label = `Restorable window of ${name}: from ${point(w.from)}, the end of base snapshot ` +
          `${w.snapshot_id}, until ${point(w.until)} (${w.ends})`;
        if (w.snapshots.length > 1) label += `; ${w.snapshots.length} base snapshots within it`;
        if (w.closes_gap) {
          label += `; its base snapshot was taken to close the gap after ${point(w.closes_gap)}`;
        }
        lane.append(shape("rect", { ...span(w.from.t, w.until.t), y: y + 6, height: 26,
          class: `cov-window${w.closes_gap ? " cov-closes" : ""}`,
          "data-until": `${w.until.t}:${w.until.i}` }, label, `w:${name}:${w.snapshot_id}`));
      });
      s.gaps.forEach((g) => {
        const end = g.resumed || s.last_durable || g.after;
        let label = `Gap in ${name}: entries after ${point(g.after)} ` +
          (g.resumed ? `and before ${point(g.resumed)}` : "(its end not known yet)") +
          ` are lost: ${g.reason}`;
        label += g.closed_by ? `; closed by base snapshot ${g.closed_by}`
          : "; no base snapshot closes it yet";
        lane.append(shape("rect", { ...span(g.after.t, end.t), y: y + 10, height: 18,
          class: "cov-gap" }, label, `g:${name}:${g.after.t}.${g.after.i}`));
      });
      s.unrestorable.forEach((u) => {
        const cx = x(u.at.t);
        const label = `Unrestorable at ${point(u.at)} in ${name}: ${u.reason}; a restore reaches ` +
          `${point(u.prev)} at most before it`;
        lane.append(shape("polygon", { points: `${cx - 6},${y + 2} ${cx + 6},${y + 2} ${cx},${y + 14}`,
          class: "cov-mark" }, label, `u:${name}:${u.at.t}.${u.at.i}`));
      });
      chart.append(lane);
    });
    if (whole) {
      const y = TOP + names.length * LANE;
      const lane = svg("g", { class: "cov-lane cov-whole", role: "group",
        "aria-label": "the whole cluster: the moments every set reaches" });
      lane.append(svg("text", { x: 4, y: y + 16, class: "cov-lane-label" }, "whole cluster"),
        svg("text", { x: 4, y: y + 32, class: "cov-lane-state" },
          whole.length ? "every set" : "no common moment"));
      whole.forEach((w) => {
        const label = `Restorable window of the whole cluster (every set restored to one ` +
          `moment): from ${point(w.from)} until ${point(w.until)}`;
        lane.append(shape("rect", { ...span(w.from.t, w.until.t), y: y + 6, height: 26,
          class: "cov-window cov-cluster", "data-until": `${w.until.t}:${w.until.i}` },
          label, `c:${w.from.t}.${w.from.i}`));
      });
      chart.append(lane);
    }
    const base = TOP + rows * LANE;
    chart.append(svg("line", { x1: LABEL, x2: WIDTH - RIGHT, y1: base, y2: base, class: "cov-axis" }));
    for (let k = 0; k <= 4; k++) {
      const t = low + ((high - low) * k) / 4;
      const anchor = k === 0 ? "start" : k === 4 ? "end" : "middle";
      chart.append(svg("line", { x1: x(t), x2: x(t), y1: base, y2: base + 5, class: "cov-axis" }),
        svg("text", { x: x(t), y: base + 20, "text-anchor": anchor, class: "cov-tick" },
          utc(Math.round(t)).replace(" UTC", "")));
    }
  }

  function say(answer) {
    const p = answer.restorable_until;
    until.replaceChildren();
    if (p) {
      const strong = document.createElement("strong");
      strong.id = "restorable-until-time";
      strong.dataset.t = p.t;
      strong.dataset.i = p.i;
      strong.textContent = `${utc(p.t)} (oplog Timestamp(${p.t}, ${p.i}))`;
      until.append("Restorable until ", strong, ` · read ${utc(answer.read_at)}`);
    } else {
      until.textContent = "Not restorable to any moment yet: a replica set has no restorable " +
        "window (a base snapshot followed by its oplog).";
    }
  }

  function off(message, keepChart, policy) {
    if (!keepChart) {
      figure.hidden = true;
      shown = "";
      until.textContent = "Continuous backup is off for this cluster.";
    }
    if (!empty.hidden && empty.dataset.message === message) return;  // the answer stays read
    empty.hidden = false;
    empty.dataset.message = message;
    empty.replaceChildren();
    const link = document.createElement("a");
    link.href = section.dataset.policy;
    link.textContent = "backup policy";
    empty.append(message, " To turn it on: save a ", link, " (where to store), take a base " +
      "snapshot with \"Back up now\", then turn continuous backup on: the agent of one of the " +
      "cluster's hosts (with oplog_follow on its allow list) then follows the oplog from that " +
      "snapshot's end into the store, and goes on after its restarts until turned off.");
    if (!policy) return;
    const button = document.createElement("button");
    button.type = "button";
    button.id = "coverage-start";
    button.textContent = "Turn continuous backup on";
    const said = document.createElement("p");
    said.id = "coverage-start-answer";
    said.setAttribute("aria-live", "polite");
    button.addEventListener("click", async () => {
      const token = document.querySelector("input[name=csrf_token]");
      try {
        const response = await fetch(section.dataset.follow, { method: "POST",
          credentials: "same-origin", body: JSON.stringify({ action: "start" }),
          headers: { Accept: "application/json", "Content-Type": "application/json",
            "X-CSRF-Token": token ? token.value : "" } });
        const body = await response.json().catch(() => ({}));
        const asked = body.sets  // a sharded cluster: one follower per set
          ? `Asked the agents of ${[...new Set(body.sets.map((s) => s.host))].join(", ")} to ` +
            `follow the oplogs of ${body.sets.map((s) => s.replica_set).join(", ")}`
          : `Asked the agent of ${body.host} to follow the oplog`;
        said.textContent = response.ok
          ? `${asked} from ${point(body.start)}; the timeline fills in as it stores entries.`
          : `Not turned on: ${body.message || response.status}`;
      } catch (error) {
        said.textContent = "The platform did not answer: try again.";
      }
    });
    empty.append(" ", button, said);
  }

  function update(answer) {
    const sets = Object.values(answer.replica_sets);
    say(answer);
    if (!sets.length || !bounds(answer.replica_sets)) {
      off("Nothing is backed up in its store yet.", false, true);
      return;
    }
    if (sets.some((s) => s.follower)) {
      empty.hidden = true;
    } else {
      off("No oplog is followed yet: only its snapshots can be restored, each to its end.", true,
        true);
    }
    // drawn again only when something other than the follower's report time changed
    const moving = ["read_at", "silent_for", "reported_at"];
    const text = JSON.stringify(answer, (k, v) => (moving.includes(k) ? 0 : v));
    if (text === shown) return;
    shown = text;
    figure.hidden = false;
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.key : null;
    draw(answer);
    if (focused) {
      const again = chart.querySelector(`[data-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  chart.addEventListener("focusin", (event) => {
    const label = event.target.getAttribute("aria-label");
    if (label && event.target.dataset.key) detail.textContent = label;
  });
  chart.addEventListener("keydown", (event) => {
    if (!["ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp"].includes(event.key)) return;
    const shapes = Array.from(chart.querySelectorAll(".cov-shape"));
    const at = shapes.indexOf(document.activeElement);
    if (at < 0) return;
    const step = event.key === "ArrowRight" || event.key === "ArrowDown" ? 1 : -1;
    const next = shapes[Math.min(shapes.length - 1, Math.max(0, at + step))];
    next.focus();
    event.preventDefault();
  });

  const form = document.getElementById("coverage-target");
  const answer = document.getElementById("coverage-target-answer");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const at = form.elements.at.value;
    answer.textContent = "Looking at the coverage…";
    try {
      const response = await fetch(`${form.action}?at=${encodeURIComponent(at)}`,
        { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        answer.dataset.within = "no";
        answer.textContent = `Not restorable: ${body.message || response.status}`;
        return;
      }
      const bases = Object.entries(body.replica_sets).map(([name, b]) =>
        `${name} from base snapshot ${b.snapshot_id} (its end ${point(b.snapshot_end)})`);
      answer.dataset.within = "yes";
      answer.textContent = `Restorable. ${body.explained}. A restore starts ${bases.join("; ")}, ` +
        `then replays the followed oplog up to and including ${point(body.last_entry)}. `;
      const base = Object.values(body.replica_sets)[0].snapshot_id;
      const restore = document.createElement("a");
      restore.id = "coverage-restore-link";
      restore.href = section.dataset.snapshot.replace("SNAPSHOT", encodeURIComponent(base)) +
        `?at=${encodeURIComponent(at)}#restore-form`;
      restore.textContent = "Restore to this moment…";
      answer.append(restore);
    } catch (error) {
      answer.textContent = "The platform did not answer: try again.";
    }
  });
  chart.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !event.target.dataset.until) return;
    const [t, i] = event.target.dataset.until.split(":");
    form.elements.at.value = `Timestamp(${t}, ${i})`;
    form.elements.at.focus();
  });

  async function look() {
    const began = performance.now();
    if (document.hidden) {  // nobody looking: the store is not read
      setTimeout(look, every);
      return;
    }
    try {
      const response = await fetch(section.dataset.url, { credentials: "same-origin",
        headers: { Accept: "application/json" } });
      if (response.status === 404) {
        const body = await response.json().catch(() => ({}));
        if ((body.message || "").includes("no backup policy")) off("It has no backup policy yet.");
        else until.textContent = body.message || "No such cluster.";
      } else if (response.ok) {
        update(await response.json());
      } else {
        const body = await response.json().catch(() => ({}));
        until.textContent = `The backup store could not be read: ${body.message || response.status}`;
      }
    } catch (error) {
      // the platform away for a moment: the next look tries again
    }
    // a store slow to list (many objects, a far region) is read less often
    setTimeout(look, Math.max(every, 3 * (performance.now() - began)));
  }
  look();
})();
