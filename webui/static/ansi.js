// ANSI SGR colour codes to DOM nodes (no innerHTML: the text is never parsed as HTML).
(function () {
  "use strict";
  const SGR = /\x1b\[([0-9;]*)m/g;
  function classesFor(state) {
    const out = [];
    if (state.bold) out.push("ansi-bold");
    if (state.fg) out.push("ansi-" + state.fg);
    return out.join(" ");
  }
  function apply(state, codes) {
    for (const raw of (codes || "0").split(";")) {
      const code = Number(raw || 0);
      if (code === 0) { state.bold = false; state.fg = null; }
      else if (code === 1) state.bold = true;
      else if (code === 22) state.bold = false;
      else if (code === 39) state.fg = null;
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) state.fg = code;
    }
  }
  // Append `text` (with ANSI codes) to `parent` as spans; strips other escape sequences.
  window.appendAnsi = function (parent, text) {
    const state = { bold: false, fg: null };
    let last = 0;
    let match;
    const push = (chunk) => {
      chunk = chunk.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
      if (!chunk) return;
      const span = document.createElement("span");
      const cls = classesFor(state);
      if (cls) span.className = cls;
      span.textContent = chunk;
      parent.appendChild(span);
    };
    SGR.lastIndex = 0;
    while ((match = SGR.exec(text)) !== null) {
      push(text.slice(last, match.index));
      apply(state, match[1]);
      last = SGR.lastIndex;
    }
    push(text.slice(last));
  };
})();
