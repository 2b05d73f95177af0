// The ops console page: fills its tables and charts from the console's
// JSON (/api/overview every few seconds; /api/calls as a long poll, which
// the server answers as soon as a call is recorded) and shows a call's
// trace when its time is chosen. Text goes in with textContent only; the
// charts are SVG elements made here (no library, nothing from elsewhere).
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_ROWS = 200;
  const WAIT_MS = 20000;
  const OVERVIEW_EVERY_MS = 5000;
  let last = 0;

  function $(id) {
    return document.getElementById(id);
  }

  function cell(row, label, text, cls) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (cls) {
      td.className = cls;
    }
    if (text instanceof Node) {
      td.appendChild(text);
    } else {
      td.textContent = text === null || text === undefined ? "" : String(text);
    }
    row.appendChild(td);
    return td;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function getJSON(url) {
    const reply = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!reply.ok) {
      throw new Error(url + ": HTTP " + reply.status);
    }
    return reply.json();
  }

  function status(text, failed) {
    const p = $("status");
    p.textContent = text;
    p.classList.toggle("failed", !!failed);
  }

  function ms(value) {
    return value === null || value === undefined ? "–" : value.toFixed(1) + " ms";
  }

  function time(at) {
    return new Date(at).toLocaleTimeString();
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) {
      return "–";
    }
    if (seconds < 120) {
      return seconds + " s";
    }
    if (seconds < 7200) {
      return Math.round(seconds / 60) + " min";
    }
    return Math.round(seconds / 3600) + " h";
  }

  // "12 calls: 10 open, 2 none (connect 2)".
  function counts(c) {
    const none = Object.entries(c.none || {}).map(([k, v]) => k + " " + v);
    let text = c.calls + " calls: " + c.open + " open";
    if (none.length) {
      text += ", " + (c.calls - c.open) + " none (" + none.join(", ") + ")";
    }
    return text;
  }

  // ---- recent calls -------------------------------------------------------

  function callRow(call) {
    const row = document.createElement("tr");
    row.className = call.outcome;
    row.dataset.seq = call.seq;
    row.dataset.outcome = call.outcome;
    row.dataset.reason = call.reason || "";
    row.dataset.route = call.route || "";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "time";
    open.textContent = time(call.at_ms);
    open.addEventListener("click", () => showTrace(call.seq));
    cell(row, "Time", open, "short");
    cell(row, "Caller", call.caller, "caller short");
    cell(row, "Route", call.route || "(none matched)");
    const tried = call.tried.map((t) => t.name + (t.result === "open" ? "" : " (" + t.result + ")"));
    cell(row, "CRMs tried", tried.join(", ") || "–");
    cell(row, "Outcome", call.outcome === "open" ? "open" + (call.title ? ": " + call.title : "") : "none", "outcome long");
    cell(row, "Reason", call.outcome === "none" || call.reason ? (call.reason || "") + (call.detail ? ": " + call.detail : "") : "", "reason long");
    cell(row, "Latency", ms(call.latency_ms), "short");
    return row;
  }

  function addCalls(calls) {
    const body = $("calls").tBodies[0];
    // Newest first in the answer: insert the oldest first.
    for (const call of calls.slice().reverse()) {
      body.insertBefore(callRow(call), body.firstChild);
    }
    while (body.rows.length > MAX_ROWS) {
      body.deleteRow(body.rows.length - 1);
    }
  }

  async function pollCalls() {
    let failures = 0;
    for (;;) {
      const asked = Date.now();
      try {
        const data = await getJSON("/api/calls?after=" + last + "&wait_ms=" + WAIT_MS);
        failures = 0;
        if (data.last < last) {
          // The gateway restarted: its numbering did too.
          $("calls").tBodies[0].textContent = "";
          last = 0;
          continue;
        }
        if (data.calls.length) {
          addCalls(data.calls);
          last = data.calls[0].seq;
        } else if (Date.now() - asked < 1000) {
          // Answered without waiting (too many pages wait already): ask
          // again in a second rather than at once.
          await sleep(1000);
        }
      } catch (err) {
        // One failure may be a connection the server just closed: ask
        // again at once; after that, say so and slow down.
        failures += 1;
        if (failures > 1) {
          status("Cannot reach the console: " + err.message, true);
          await sleep(2000);
        }
      }
    }
  }

  async function showTrace(seq) {
    const panel = $("trace-panel");
    try {
      const call = await getJSON("/api/calls/" + seq);
      $("trace-title").textContent = "Call at " + time(call.at_ms) + " (request " + call.id + ")";
      $("trace-summary").textContent =
        "Caller " + call.caller + ", route " + (call.route || "(none)") + ": " + call.outcome +
        (call.reason ? " (" + call.reason + ")" : "") + " in " + ms(call.latency_ms);
      $("trace").textContent = call.trace;
      panel.dataset.seq = String(seq);
    } catch (err) {
      $("trace-title").textContent = "Trace";
      $("trace-summary").textContent = "";
      $("trace").textContent = "Cannot show this call: " + err.message;
      panel.dataset.seq = "";
    }
    panel.hidden = false;
    for (const row of $("calls").tBodies[0].rows) {
      row.classList.toggle("chosen", row.dataset.seq === String(seq));
    }
    panel.scrollIntoView({ block: "nearest" });
  }

  // ---- overview -----------------------------------------------------------

  function fill(table, rows) {
    const body = $(table).tBodies[0];
    body.textContent = "";
    for (const row of rows) {
      body.appendChild(row);
    }
  }

  function routeRow(route) {
    const row = document.createElement("tr");
    row.dataset.route = route.name;
    cell(row, "Route", route.name);
    cell(row, "Path", route.path);
    cell(row, "When", route.when || "(every call)", "long");
    const order = route.backends.slice();
    if (route.screen_pop) {
      order.push("screen-pop");
    }
    cell(row, "CRMs in order", order.join(" → ") || "–");
    cell(row, "Last 5 min", counts(route.last_5m), "long");
    cell(row, "Since start", counts(route.since_start), "long");
    return row;
  }

  function loginText(login) {
    if (!login) {
      return "–";
    }
    const parts = [];
    if (login.session_age_s !== null) {
      parts.push("session " + ago(login.session_age_s) + " old");
      if (login.renews_in_s !== null) {
        parts.push("renewed in " + ago(login.renews_in_s));
      }
    } else {
      parts.push(login.running ? "logging in" : "no session");
    }
    if (login.backoff_left_ms) {
      parts.push("next attempt in " + Math.ceil(login.backoff_left_ms / 1000) + " s");
    }
    if (login.last_failure) {
      parts.push("last failure " + ago(login.last_failure.ago_s) + " ago: " + login.last_failure.detail);
    }
    parts.push(login.logins + " logins, " + login.failures + " failed, " + login.relogins + " re-logins");
    return parts.join("; ");
  }

  function backendRow(backend) {
    const row = document.createElement("tr");
    row.dataset.backend = backend.name;
    row.dataset.calls = String(backend.since_start.calls);
    if (backend.login) {
      row.dataset.loginFailures = String(backend.login.failures);
    }
    cell(row, "CRM", backend.name);
    const rate = backend.answered_rate;
    const health = rate === null ? "no calls" : Math.round(rate * 100) + "% answered, " + counts(backend.last_5m);
    cell(row, "Health (5 min)", health, "long" + (rate !== null && rate < 0.9 ? " bad" : ""));
    cell(row, "Latency p50 / p99", ms(backend.last_5m.p50_ms) + " / " + ms(backend.last_5m.p99_ms));
    const error = backend.last_error;
    cell(row, "Last error", error ? ago(error.ago_s) + " ago: " + error.reason + " (" + error.detail + ")" : "–", "long" + (error ? " bad" : ""));
    cell(row, "Login", loginText(backend.login), "login long");
    const d = backend.directory;
    cell(row, "Directory", d ? d.entries + " numbers, synced " + ago(d.synced_ago_s) + " ago" + (d.failures ? ", " + d.failures + " failed syncs" : "") : "–");
    return row;
  }

  function refusedRow(r) {
    const row = document.createElement("tr");
    row.dataset.status = String(r.status);
    cell(row, "Time", time(r.at_ms));
    cell(row, "Request", r.method + " " + r.path, "long");
    cell(row, "Origin", r.origin, "long");
    cell(row, "Status", String(r.status), "bad");
    cell(row, "Why", r.error, "long");
    return row;
  }

  function chart(svg, series, lines) {
    const width = 320;
    const height = 120;
    const left = 30;
    const bottom = 14;
    svg.textContent = "";
    const values = [];
    for (const line of lines) {
      for (const point of series) {
        const v = line.value(point);
        if (v !== null && v !== undefined) {
          values.push(v);
        }
      }
    }
    const top = Math.max(1, ...values) * 1.1;
    const x = (i) => left + (i * (width - left - 4)) / Math.max(1, series.length - 1);
    const y = (v) => height - bottom - (v * (height - bottom - 6)) / top;
    const add = (name, attrs, text) => {
      const node = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) {
        node.setAttribute(k, String(v));
      }
      if (text !== undefined) {
        node.textContent = text;
      }
      svg.appendChild(node);
      return node;
    };
    add("polyline", { class: "axis", points: `${left},4 ${left},${height - bottom} ${width - 2},${height - bottom}` });
    add("text", { class: "label", x: 2, y: 12 }, top >= 10 ? Math.round(top) : top.toFixed(1));
    add("text", { class: "label", x: 2, y: height - bottom }, "0");
    add("text", { class: "label", x: left, y: height - 2 }, "-5 min");
    add("text", { class: "label", x: width - 24, y: height - 2 }, "now");
    for (const line of lines) {
      const points = [];
      series.forEach((point, i) => {
        const v = line.value(point);
        if (v !== null && v !== undefined) {
          points.push([x(i), y(v), v]);
        }
      });
      add("polyline", { class: "line " + line.cls, points: points.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ") });
      // A dot on each value above zero: one alone (after a quiet spell)
      // shows too.
      for (const [px, py, v] of points) {
        if (v > 0) {
          add("circle", { class: "dot " + line.cls, cx: px.toFixed(1), cy: py.toFixed(1), r: 1.6 });
        }
      }
    }
  }

  async function refreshOverview() {
    const o = await getJSON("/api/overview");
    status(
      "generation " + o.generation + ", up " + ago(o.uptime_s) + "; " + counts(o.calls.since_start) + " since start" +
        (o.export.otlp ? "; exported to OTLP" + (o.export.dropped ? " (" + o.export.dropped + " dropped)" : "") : "")
    );
    $("totals").textContent = counts(o.calls.last_5m) + "; p50 " + ms(o.calls.last_5m.p50_ms) + ", p99 " + ms(o.calls.last_5m.p99_ms);
    $("ring").textContent = "Keeping the last " + o.ring.cap + " calls (" + o.ring.calls + " now, " + Math.round(o.ring.bytes / 1024) + " KiB)" +
      (o.show_caller ? "." : "; callers show their last 2 digits.");
    chart($("chart-rate"), o.series.points, [
      { cls: "calls", value: (p) => (p.calls === null ? null : p.calls / p.span_s) },
    ]);
    chart($("chart-latency"), o.series.points, [
      { cls: "p50", value: (p) => p.p50_ms },
      { cls: "p99", value: (p) => p.p99_ms },
    ]);
    const refused = o.refused;
    $("refused-summary").textContent = refused.since_start === 0
      ? "None since start: POSTs and preflights refused before a route (origin not allowed, unknown path, bad payload...) show here."
      : refused.since_start + " since start; the last " + refused.recent.length + " below, newest first (the agent's tab stays closed for these).";
    $("refused").hidden = refused.recent.length === 0;
    fill("refused", refused.recent.map(refusedRow));
    fill("routes", o.routes.map(routeRow));
    fill("backends", o.backends.map(backendRow));
    document.body.dataset.loaded = "true";
  }

  async function overviewLoop() {
    for (;;) {
      try {
        await refreshOverview();
      } catch (err) {
        status("Cannot reach the console: " + err.message, true);
      }
      await sleep(OVERVIEW_EVERY_MS);
    }
  }

  // A blocked script, style or connection would leave the page half
  // working without a word: say it on the page (and to tests).
  document.addEventListener("securitypolicyviolation", (e) => {
    const seen = document.body.dataset.cspViolations;
    document.body.dataset.cspViolations = (seen ? seen + " " : "") + e.violatedDirective;
    status("Blocked by the page's security policy: " + e.violatedDirective, true);
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("trace-close").addEventListener("click", () => {
      $("trace-panel").hidden = true;
    });
    overviewLoop();
    pollCalls();
  });
})();
