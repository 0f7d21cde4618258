// The cluster's topology, drawn again from GET /api/v1/clusters/{id}/topology every few seconds
// (the same picture clusters/_topology.html renders on the server), so that an election shows
// without a reload.
(function () {
  "use strict";
  const section = document.getElementById("topology");
  if (!section) return;
  const every = Number(section.dataset.every || 3000);
  const when = document.getElementById("topology-at");

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = text;
    return e;
  }

  function stamp(seconds) {
    return new Date(seconds * 1000).toLocaleString();
  }

  function node(m, kind) {
    const li = el("li", `node state-${m.state.toLowerCase().replaceAll(" ", "-")}${m.stale ? " stale" : ""}`);
    li.dataset.address = m.address;
    const detail = [];
    if (kind === "member") {
      detail.push(`health ${m.health}`);
      if (m.lag_seconds != null) detail.push(`lag ${m.lag_seconds.toFixed(1)} s`);
    } else {
      detail.push(m.up ? "up" : "down");
      if (m.version) detail.push(m.version);
    }
    if (m.connections != null) detail.push(`${Math.trunc(m.connections)} connections`);
    if (m.stale) detail.push(`last report ${stamp(m.seen_at)}`);
    const host = el("span", "node-host", m.host_id ? null : m.host || "host not registered");
    if (m.host_id) {
      const link = el("a", null, m.host);
      link.href = `${section.dataset.hosts}/${encodeURIComponent(m.host_id)}`;
      host.append(link);
    }
    li.append(el("span", "node-state", m.state), el("span", "node-address", m.address), host,
      el("span", "node-detail", detail.join(" · ")));
    return li;
  }

  function group(className, title, role, nodes) {
    const box = el("div", className);
    const h3 = el("h3", null, `${title} `);
    if (role) h3.append(el("span", "muted", role));
    const ul = el("ul", "topo-members");
    ul.append(...nodes);
    box.append(h3, ul);
    return box;
  }

  function draw(t) {
    const diagram = el("div", "topo");
    diagram.id = "topology-diagram";
    if (t.routers.length) {
      diagram.append(group("topo-routers", "Routers (mongos)", null, t.routers.map((r) => node(r, "router"))));
    }
    if (t.sets.length) {
      const sets = el("div", "topo-sets");
      t.sets.forEach((s) => {
        const box = group("topo-set", s.name, s.role, s.members.map((m) => node(m, "member")));
        box.dataset.set = s.name;
        if (!s.primary) box.append(el("p", "field-error", "No primary reported: writes to this set fail until one is elected."));
        sets.append(box);
      });
      diagram.append(sets);
    } else if (!t.routers.length) {
      const old = document.getElementById("topology-empty");
      if (old) diagram.append(old.cloneNode(true));
    }
    document.getElementById("topology-diagram").replaceWith(diagram);
    // The charts' choice of process says each one's state as of now, too.
    const members = t.sets.flatMap((s) => s.members).concat(t.routers);
    document.querySelectorAll("#chart-process option").forEach((option) => {
      const m = members.find((x) => x.address === option.value);
      if (m) option.textContent = `${m.address}${m.host ? ` on ${m.host}` : ""} (${m.state})`;
    });
    if (when) when.textContent = `As the agents last reported; read at ${stamp(t.at)}, again every ${every / 1000} s.`;
  }

  async function poll() {
    try {
      const response = await fetch(section.dataset.url, { credentials: "same-origin",
        headers: { Accept: "application/json" } });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.message || response.statusText);
      draw(answer);
    } catch (error) {
      if (when) when.textContent = `The topology could not be read (${error.message}); trying again.`;
    }
    setTimeout(poll, every);
  }

  setTimeout(poll, every);
})();
