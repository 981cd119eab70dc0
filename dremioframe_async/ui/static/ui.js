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

// A task page while its run goes: new log lines arrive over server-sent events and are
// appended as text (textContent: a line is never parsed as HTML).
(function () {
  const main = document.getElementById("task");
  if (!main || !main.dataset.follow || !window.EventSource) {
    return;
  }
  const attempts = document.getElementById("attempts");

  function logOf(number) {
    const found = attempts.querySelector(`pre.log[data-attempt="${number}"]`);
    if (found) {
      return found;
    }
    const section = document.createElement("section");
    section.className = "attempt";
    section.dataset.attempt = String(number);
    const heading = document.createElement("h2");
    heading.textContent = `Attempt ${number}`;
    const pre = document.createElement("pre");
    pre.className = "log";
    pre.dataset.attempt = String(number);
    section.append(heading, pre);
    attempts.append(section);
    return pre;
  }

  function span(className, text) {
    const node = document.createElement("span");
    node.className = className;
    node.textContent = text;
    return node;
  }

  const source = new EventSource(main.dataset.follow);
  source.addEventListener("lines", (event) => {
    const lines = JSON.parse(event.data);
    for (const line of lines) {
      const pre = logOf(line.attempt);
      if (line.marker) {
        pre.append(span("line dropped", `${line.marker}\n`));
      }
      const clock = new Date(line.time * 1000).toISOString().slice(11, 19);
      const text = `${clock} ${line.level.padEnd(8)} ${line.logger}: ${line.message}\n`;
      pre.append(span(`line lvl-${line.level}`, text));
    }
    main.dataset.tailed = String(Number(main.dataset.tailed || "0") + lines.length);
  });
  source.addEventListener("end", () => {
    source.close();
    main.dataset.ended = "1";
    window.location.reload(); // the final states and tracebacks, rendered by the server
  });
})();
