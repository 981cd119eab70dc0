// Live updates of a run page: server-sent events say that the run changed, and the
// changing part of the page is fetched again, rendered (and escaped) by the server.
"use strict";

// A banner for when the server cannot be reached (stopped, restarting, network).
function notice(text) {
  let box = document.getElementById("notice");
  if (!box) {
    box = document.createElement("p");
    box.id = "notice";
    box.className = "notice";
    box.setAttribute("role", "status");
    const main = document.querySelector("main");
    main.insertBefore(box, main.firstChild);
  }
  box.textContent = text || "";
  box.hidden = !text;
}

// How many times the server was found unreachable (a failed fetch, a dropped stream).
let losses = 0;

// The server cannot be reached: say so, and hide what may be stale (no button may act
// on it meanwhile).
function lost() {
  losses += 1;
  notice("disconnected from the server, retrying…");
  document.querySelectorAll("#run-live .actions").forEach((a) => (a.hidden = true));
}

// A page fetched again; null (and a notice) when the server cannot be reached. A page
// fetched before the server was found unreachable leaves the notice up: it may be stale.
async function fetchPage(url) {
  const before = losses;
  try {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    });
    if (losses === before) {
      notice("");
    }
    return response.ok ? await response.text() : null;
  } catch (err) {
    lost();
    return null;
  }
}

// Relative times ("3 min ago") and running elapsed times stay current, by the
// server's clock (its time when the page was made, plus the time since).
(function () {
  const meta = document.querySelector('meta[name="server-time"]');
  const skew = meta ? Number(meta.content) - Date.now() / 1000 : 0;
  const now = () => Date.now() / 1000 + skew;
  function took(s) {
    if (s < 60) {
      return s.toFixed(0) + "s";
    }
    const m = Math.floor(s / 60);
    return m < 60 ? m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s"
      : Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
  }
  function ago(s) {
    // As _times.ago: "3 min ago", and for a time to come "in 3 min".
    const future = s < 0;
    s = Math.abs(s);
    const units = [[86400, " day"], [3600, " h"], [60, " min"]];
    for (const [size, unit] of units) {
      if (s >= size) {
        const n = Math.floor(s / size);
        const span = n + unit + (unit === " day" && n > 1 ? "s" : "");
        return future ? "in " + span : span + " ago";
      }
    }
    if (s < 10) {
      return future ? "in a few s" : "just now";
    }
    return future ? "in " + Math.floor(s) + " s" : Math.floor(s) + " s ago";
  }
  function tick() {
    const t = now();
    document.querySelectorAll(".elapsed[data-since]").forEach((e) => {
      e.textContent = "running " + took(Math.max(0, t - Number(e.dataset.since)));
    });
    document.querySelectorAll(".ago[data-t]").forEach((e) => {
      e.textContent = "(" + ago(t - Number(e.dataset.t)) + ")";
    });
  }
  window.setInterval(tick, 1000);
})();

// Ask before a form that says so (cancel) is sent.
document.addEventListener("submit", (event) => {
  const ask = event.target.dataset && event.target.dataset.confirm;
  if (ask && !window.confirm(ask)) {
    event.preventDefault();
  }
});

// The runs list is fetched again every few seconds (more often while a run on it is
// RUNNING), so runs started after the page loaded appear too.
(function () {
  const runs = document.getElementById("runs");
  if (!runs || !runs.dataset.refresh) {
    return;
  }
  async function refresh() {
    const text = await fetchPage(window.location.href);
    let every = Number(runs.dataset.refresh) * 1000;
    if (text !== null) {
      const fresh = new DOMParser().parseFromString(text, "text/html");
      const list = fresh.getElementById("runs-list");
      const old = document.getElementById("runs-list");
      if (list && old) {
        old.replaceWith(list);
      }
      const next = fresh.getElementById("runs");
      if (next && next.dataset.refresh) {
        runs.dataset.refresh = next.dataset.refresh;
        every = Number(next.dataset.refresh) * 1000;
      }
    }
    window.setTimeout(refresh, every);
  }
  window.setTimeout(refresh, Number(runs.dataset.refresh) * 1000);
})();

(function () {
  const main = document.getElementById("run");
  if (!main || !main.dataset.events || !window.EventSource) {
    return;
  }
  const fragmentUrl = main.dataset.live;
  const RETRY_MS = 5000; // the tick's period, and the retry's once the run has ended
  let queued = false;
  let retry = null; // the timer of the next try, once the run has ended

  function openDetails(root) {
    const open = new Set();
    root.querySelectorAll("details[open] > summary").forEach((s) => open.add(s.textContent));
    return open;
  }

  async function refresh() {
    queued = false;
    const before = losses;
    const text = await fetchPage(fragmentUrl);
    if (text === null) {
      if (main.dataset.ended && losses !== before && retry === null) {
        // The server could not be reached, and the stream has ended and the tick with
        // it: nothing else would fetch the run's final page once the server is back.
        // One timer, however many fetches failed (an answer that is not OK, say a 404,
        // is not retried).
        retry = window.setTimeout(() => {
          retry = null;
          queue();
        }, RETRY_MS);
      }
      return;
    }
    const template = document.createElement("template");
    template.innerHTML = text;
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
    if (main.dataset.disconnected || losses !== before) {
      // Fetched before the server was found unreachable, it may be stale already: the
      // notice stays, and no button may act on it until the stream is back.
      notice("disconnected from the server, retrying…");
      fresh.querySelectorAll(".actions").forEach((a) => (a.hidden = true));
    }
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
  // The browser reconnects by itself; meanwhile say so, and hide what may be stale
  // (the run may have ended, so Cancel may no longer apply). Reconnected: reconcile.
  source.addEventListener("error", () => {
    lost();
    main.dataset.disconnected = "1";
  });
  source.addEventListener("open", () => {
    if (main.dataset.disconnected) {
      delete main.dataset.disconnected;
      notice("");
      queue();
    }
  });
  // Running attempts grow on the timeline even while no task changes state.
  const tick = window.setInterval(queue, RETRY_MS);
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
