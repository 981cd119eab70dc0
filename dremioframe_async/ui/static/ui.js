// Live updates of a run page: server-sent events say that the run changed, and the
// changing part of the page is fetched again, rendered (and escaped) by the server.
"use strict";

(function () {
  const main = document.getElementById("run");
  if (!main || !main.dataset.events || !window.EventSource) {
    return;
  }
  const fragmentUrl = main.dataset.live;
  let queued = false;

  function openDetails(root) {
    const open = new Set();
    root.querySelectorAll("details[open] > summary").forEach((s) => open.add(s.textContent));
    return open;
  }

  async function refresh() {
    queued = false;
    const response = await fetch(fragmentUrl, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) {
      return;
    }
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    const fresh = template.content.getElementById("run-live");
    const old = document.getElementById("run-live");
    if (!fresh || !old) {
      return;
    }
    const open = openDetails(old);
    fresh.querySelectorAll("details > summary").forEach((s) => {
      if (open.has(s.textContent)) {
        s.parentElement.open = true;
      }
    });
    old.replaceWith(fresh);
    main.dataset.updates = String(Number(main.dataset.updates || "0") + 1);
  }

  function queue() {
    if (!queued) {
      queued = true;
      window.setTimeout(refresh, 50);
    }
  }

  const source = new EventSource(main.dataset.events);
  source.addEventListener("run", queue);
  // Running attempts grow on the timeline even while no task changes state.
  const tick = window.setInterval(queue, 5000);
  source.addEventListener("end", () => {
    source.close();
    window.clearInterval(tick);
    main.dataset.ended = "1";
    queue();
  });
})();
