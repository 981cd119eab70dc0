// Live updates of a run page: server-sent events say that the run changed, and the
// changing part of the page is fetched again, rendered (and escaped) by the server.
"use strict";

// The runs list, while some run on it is RUNNING, is fetched again every few seconds.
(function () {
  const runs = document.getElementById("runs");
  if (!runs || !runs.dataset.refresh) {
    return;
  }
  const every = Number(runs.dataset.refresh) * 1000;
  async function refresh() {
    const response = await fetch(window.location.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) {
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const list = fresh.getElementById("runs-list");
    const old = document.getElementById("runs-list");
    if (list && old) {
      old.replaceWith(list);
    }
    const next = fresh.getElementById("runs");
    if (next && next.dataset.refresh) {
      window.setTimeout(refresh, every);
    }
  }
  window.setTimeout(refresh, every);
})();

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
