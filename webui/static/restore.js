// The restore wizard shows only the fields of the target chosen (hidden fields are disabled, so
// they are not sent; without JavaScript every field shows and the server reads those of the
// target chosen). A running restore's page follows it: its progress every 2 s from the API, and
// the page again once it ends, with its verification report.
(function () {
  document.querySelectorAll("form[data-restore-form]").forEach((form) => {
    const radios = form.querySelectorAll("input[name=target]");
    function show() {
      let chosen = "";
      radios.forEach((r) => { if (r.checked) chosen = r.value; });
      form.querySelectorAll("[data-target]").forEach((part) => {
        const on = part.dataset.target === chosen;
        part.hidden = !on;
        part.querySelectorAll("input, select, textarea").forEach((f) => { f.disabled = !on; });
      });
    }
    radios.forEach((r) => r.addEventListener("change", show));
    show();
  });
  const state = document.getElementById("restore-state");
  if (!state || !["running", "waiting"].includes(state.dataset.status)) return;
  async function follow() {
    try {
      const response = await fetch(state.dataset.url, { credentials: "same-origin",
        headers: { Accept: "application/json" } });
      if (response.ok) {
        const restore = await response.json();
        if (restore.status !== state.dataset.status) { window.location.reload(); return; }
        const progress = restore.progress || {};
        const bar = document.getElementById("restore-progress");
        if (bar && typeof progress.fraction === "number") bar.value = progress.fraction;
        const message = document.getElementById("restore-message");
        if (message && progress.message) message.textContent = progress.message;
      }
    } catch (error) {
      // the platform away for a moment: the next look tries again
    }
    setTimeout(follow, 2000);
  }
  setTimeout(follow, 2000);
})();
