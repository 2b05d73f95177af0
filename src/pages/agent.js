// The demo agent page: does what XucMgt's agent application does with a
// third-party integration, so the whole flow can be seen without a phone.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var reply = null;
  var opened = false;

  function log(text) {
    var li = document.createElement("li");
    // 24-hour, zero-padded: the same width at any hour, so the page does
    // not reflow with the clock.
    li.textContent = new Date().toTimeString().slice(0, 8) + "  " + text;
    $("log").appendChild(li);
  }

  function setPaused(paused) {
    $("state").textContent = paused ? "Paused" : "Ready";
    $("state").className = paused ? "paused" : "ready";
  }

  function openTab(r) {
    opened = true;
    $("hint").hidden = true;
    $("tab").hidden = false;
    $("tab").src = r.url;
    $("tabtitle").textContent = r.title || "(untitled)";
    $("closed").hidden = true;
    document.body.dataset.tab = "open";
    if (r.autopause) { setPaused(true); }
    log("Tab opened on " + r.event + ": " + r.url + (r.autopause ? " (agent paused)" : ""));
  }

  function closeTab() {
    if (!opened) { return; }
    opened = false;
    $("tab").src = "about:blank";
    $("tab").hidden = true;
    $("closed").hidden = false;
    document.body.dataset.tab = "closed";
    setPaused(false);
    log("closeThirdParty received: tab closed, agent ready");
  }

  function onEvent(event) {
    if (reply && reply.action === "open" && reply.event === event && !opened) { openTab(reply); }
  }

  $("ringing").addEventListener("click", function () {
    var payload;
    reply = null;
    if (opened) { closeTab(); }
    try { payload = JSON.parse($("payload").value); } catch (e) {
      $("reply").textContent = "The payload is not JSON: " + e.message;
      return;
    }
    log("EventRinging: POST " + $("url").value);
    $("reply").textContent = "...";
    $("failed-help").hidden = true;
    document.body.dataset.reply = "pending";
    fetch($("url").value, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload)
    }).then(function (r) {
      if (!r.ok) {
        // The gateway's refusals say what to fix in {"error": "..."}.
        return r.json().catch(function () { return {}; }).then(function (j) {
          throw new Error("HTTP " + r.status + (j.error ? ": " + j.error : ""));
        });
      }
      return r.json();
    }).then(function (j) {
      reply = j;
      $("reply").textContent = JSON.stringify(j, null, 2);
      document.body.dataset.reply = j.action;
      log("Reply: " + j.action + (j.event ? " on " + j.event : ""));
      onEvent("EventRinging");
    }).catch(function (e) {
      $("reply").textContent = "Request failed: " + e;
      $("failed-help").hidden = false;
      document.body.dataset.reply = "failed";
      log("Request failed: " + e);
    });
  });
  $("established").addEventListener("click", function () { log("EventEstablished"); onEvent("EventEstablished"); });
  $("released").addEventListener("click", function () { log("EventReleased"); onEvent("EventReleased"); });
  window.addEventListener("message", function (e) {
    if (e.data === "closeThirdParty") { closeTab(); }
  }, false);
})();
