// Forms that fit their input: a form with data-kind-form (the credential form) shows only the
// fieldset of the kind chosen; one with data-topology-form only the fields of the topology
// chosen. Hidden fields are disabled, so they are not sent. Without JavaScript every field shows
// (each labelled with its kind) and the server reads those of the kind chosen.
(function () {
  function bind(form, selector, attribute) {
    const controls = form.querySelectorAll(selector);
    function show() {
      let chosen = "";
      controls.forEach((c) => { if (c.type !== "radio" || c.checked) chosen = c.value; });
      form.querySelectorAll("[" + attribute + "]").forEach((part) => {
        const on = part.getAttribute(attribute).split(" ").includes(chosen);
        part.hidden = !on;
        part.querySelectorAll("input, select, textarea").forEach((f) => { f.disabled = !on; });
      });
    }
    controls.forEach((c) => c.addEventListener("change", show));
    show();
  }
  document.querySelectorAll("form[data-kind-form]").forEach((f) => bind(f, "select[name=kind]", "data-kind"));
  document.querySelectorAll("form[data-topology-form]").forEach((f) => bind(f, "input[name=topology]", "data-topology"));
})();
