// Charts of a host and one of its MongoDB processes on one time axis (uPlot, vendored from npm).
// One query per refresh asks the metrics API for every series the panels draw; every chart has
// the same time range and width and the cursors move together, so a spike in one is seen against
// the others. "Live" queries again every step (at least every 10 s) and the range ends at now.
(function () {
  "use strict";
  const section = document.getElementById("charts");
  if (!section || typeof uPlot === "undefined") return;
  const grid = document.getElementById("chart-grid");
  const status = document.getElementById("chart-status");
  const processSelect = document.getElementById("chart-process");
  const live = document.getElementById("chart-live");
  const RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000, "1y": 31536000 };
  const COLOURS = ["#1a5fb4", "#e66100", "#2e7d32", "#b3261e", "#813d9c", "#00838f", "#8a6d00", "#5a6470"];
  const short = (name) => name.replace(/^(host|mongodb)_/, "").replace(/_(bytes|seconds)?_?(per_second)?$/, "");
  const PANELS = [
    { id: "cpu", title: "CPU busy, by mode (cores)", scope: "host", names: ["host_cpu_seconds_per_second"],
      keep: (l) => l.mode !== "idle", label: (l) => l.mode, unit: "" },
    { id: "memory", title: "Memory and swap", scope: "host",
      names: ["host_memory_used_bytes", "host_memory_available_bytes", "host_swap_used_bytes"],
      label: (l, n) => short(n), unit: "B" },
    { id: "disk", title: "Disk I/O", scope: "host",
      names: ["host_disk_read_bytes_per_second", "host_disk_written_bytes_per_second"],
      label: (l, n) => `${l.device} ${n.includes("_read_") ? "read" : "written"}`, unit: "B/s" },
    { id: "network", title: "Network", scope: "host",
      names: ["host_network_receive_bytes_per_second", "host_network_transmit_bytes_per_second"],
      keep: (l) => l.device !== "lo",
      label: (l, n) => `${l.device} ${n.includes("receive") ? "in" : "out"}`, unit: "B/s" },
    { id: "operations", title: "Operations per second", scope: "mongodb",
      names: ["mongodb_op_counters_per_second"], label: (l) => l.type, unit: "" },
    { id: "connections", title: "Connections", scope: "mongodb", names: ["mongodb_connections"],
      keep: (l) => l.state === "current", label: () => "current", unit: "" },
    { id: "cache", title: "WiredTiger cache", scope: "mongodb",
      names: ["mongodb_wiredtiger_cache_bytes", "mongodb_wiredtiger_cache_max_bytes"],
      label: (l) => l.type || "maximum", unit: "B" },
    { id: "latency", title: "Latency, mean per operation", scope: "mongodb", ratio: true,
      names: ["mongodb_op_latencies_seconds_per_second", "mongodb_op_latencies_ops_per_second"],
      label: (l) => l.type, unit: "s" },
    { id: "lag", title: "Replication lag", scope: "mongodb",
      names: ["mongodb_replset_member_replication_lag_seconds"], label: (l) => l.member, unit: "s" },
  ];
  const NAMES = [...new Set(PANELS.flatMap((p) => p.names))];
  let range = "1h";
  let charts = {};
  let timer = null;
  let generation = 0;
  const shownRange = { start: 0, end: 0 };

  function human(value, unit) {
    if (value == null) return "";
    if (unit === "s") return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${value.toFixed(2)} s`;
    const base = unit.startsWith("B") ? 1024 : 1000;
    const steps = ["", "k", "M", "G", "T"];
    let n = Math.abs(value), i = 0;
    while (n >= base && i < steps.length - 1) { n /= base; i += 1; }
    const digits = n >= 100 || i === 0 && Number.isInteger(value) ? 0 : 1;
    return `${(Math.sign(value) * n).toFixed(digits)} ${steps[i]}${unit}`.trim();
  }

  function selected() {
    const option = processSelect ? processSelect.selectedOptions[0] : null;
    return {
      hostId: option ? option.dataset.hostId : section.dataset.hostId,
      instance: option ? option.value : "",
    };
  }

  // The series each panel draws, as [label, Map(t -> value)].
  function panelSeries(panel, series, instance) {
    const mine = series.filter((s) => panel.names.includes(s.name)
      && (panel.scope === "host" ? !s.labels.instance : s.labels.instance === instance)
      && (!panel.keep || panel.keep(s.labels)));
    const values = (s) => new Map(s.t.map((t, i) => [t, s.mean[i]]));
    if (!panel.ratio) return mine.map((s) => [panel.label(s.labels, s.name), values(s)]);
    const [top, bottom] = panel.names;
    return mine.filter((s) => s.name === top).flatMap((s) => {
      const other = mine.find((o) => o.name === bottom && o.labels.type === s.labels.type);
      if (!other) return [];
      const ops = values(other);
      const ratio = new Map();
      values(s).forEach((v, t) => { const n = ops.get(t); ratio.set(t, n ? v / n : null); });
      return [[panel.label(s.labels, s.name), ratio]];
    });
  }

  // Each panel's figure, made once per process shown; a refresh with the same series gives its
  // chart new data (no flicker, the cursor stays), other series make a new chart.
  function figure(panel) {
    let box = document.getElementById(`chart-${panel.id}`);
    if (!box) {
      box = document.createElement("figure");
      box.className = "chart";
      box.id = `chart-${panel.id}`;
      const caption = document.createElement("figcaption");
      caption.textContent = panel.title;
      box.append(caption);
      grid.append(box);
    }
    return box;
  }

  function draw(answer, instance) {
    const shown = PANELS.filter((p) => p.scope === "host" || instance);
    if (grid.dataset.instance !== instance) {
      Object.values(charts).forEach((c) => c.chart && c.chart.destroy());
      charts = {};
      grid.replaceChildren();
      grid.dataset.instance = instance;
    }
    shown.forEach((panel) => {
      const lines = panelSeries(panel, answer.series, instance);
      const box = figure(panel);
      // The panel's own times (its series are read together, host and MongoDB ones at moments
      // of their own): every chart has the same x range, so a time is at one place on all.
      const xs = [...new Set(lines.flatMap(([, m]) => [...m.keys()]))].sort((a, b) => a - b);
      const data = [xs, ...lines.map(([, m]) => xs.map((t) => (m.has(t) ? m.get(t) : null)))];
      box.dataset.points = String(data.slice(1).reduce((n, ys) => n + ys.filter((v) => v != null).length, 0));
      const signature = lines.map(([label]) => label).join("\n");
      const kept = charts[panel.id];
      if (kept && kept.signature === signature && kept.chart) {
        kept.chart.setData(data);
        return;
      }
      if (kept && kept.chart) kept.chart.destroy();
      box.querySelectorAll("p.muted").forEach((p) => p.remove());
      charts[panel.id] = { signature, chart: null };
      if (!lines.length) {
        const none = document.createElement("p");
        none.className = "muted";
        none.textContent = "No data in this range.";
        box.append(none);
        return;
      }
      const options = {
        width: width(box),
        height: 170,
        cursor: { sync: { key: "wap-charts" } },
        legend: { live: true },
        scales: { x: { time: true, range: () => [shownRange.start, shownRange.end] } },
        axes: [{}, { size: 84, values: (u, ticks) => ticks.map((v) => human(v, panel.unit)) }],
        series: [{}, ...lines.map(([label], i) => ({
          label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
          value: (u, v) => human(v, panel.unit),
        }))],
      };
      charts[panel.id].chart = new uPlot(options, data, box);
    });
  }

  function width(box) {
    return Math.max(280, box.clientWidth - 8);
  }

  async function refresh() {
    const mine = ++generation;
    const { hostId, instance } = selected();
    if (!hostId) return;  // no agent reported yet: the page says so
    const end = Math.floor(Date.now() / 1000);
    const start = end - RANGES[range];
    const query = new URLSearchParams({ host: hostId, from: start, to: end, points: 600 });
    NAMES.forEach((n) => query.append("name", n));
    let answer;
    try {
      const response = await fetch(`${section.dataset.api}?${query}`, { credentials: "same-origin",
        headers: { Accept: "application/json" } });
      answer = await response.json();
      if (!response.ok) throw new Error(answer.message || response.statusText);
    } catch (error) {
      status.textContent = `Charts could not be read: ${error.message}`;
      schedule(10);
      return;
    }
    if (mine !== generation) return;  // a newer request was made meanwhile
    shownRange.start = start;
    shownRange.end = end;
    draw(answer, instance);
    status.textContent = `${range}: ${answer.tier} samples, a point every ${answer.step} s;` +
      ` read at ${new Date().toLocaleTimeString()}.`;
    schedule(Math.max(10, answer.step || 0));
  }

  function schedule(seconds) {
    clearTimeout(timer);
    if (live && live.checked) timer = setTimeout(refresh, seconds * 1000);
  }

  section.querySelectorAll("button[data-range]").forEach((button) => {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      section.querySelectorAll("button[data-range]").forEach((b) =>
        b.setAttribute("aria-pressed", String(b === button)));
      refresh();
    });
  });
  if (processSelect) processSelect.addEventListener("change", refresh);
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => Object.entries(charts).forEach(([id, c]) => {
      if (c.chart) c.chart.setSize({ width: width(document.getElementById(`chart-${id}`)), height: 170 });
    }), 150);
  });
  if (live) live.addEventListener("change", () => (live.checked ? refresh() : clearTimeout(timer)));
  refresh();
})();
