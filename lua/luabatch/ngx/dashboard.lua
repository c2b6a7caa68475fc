-- luabatch.ngx.dashboard: the run dashboard, one HTML page with its CSS and
-- JS inline (no build step, nothing fetched but the JSON API beside it).
--
--   ngx.print(require("luabatch.ngx.dashboard").page())   -- GET / (luabatch.ngx.api)
--
-- The page polls the API every 1.5 s, relative to its own URL (so it works
-- under a location prefix): GET runs (the list, newest first; a click picks
-- a run, kept in the URL's #fragment, default the newest), GET runs/ID (its
-- workflow jobs, each followed by its strategies named by matrix values:
-- Batch status, result, exit code, failure reason) and, for the strategy
-- whose "log" is open, GET runs/ID/logs?key=KEY&tail=40.  A run that has
-- not ended gets a "cancel" button (DELETE runs/ID).  Rendering goes
-- through textContent only: nothing from a run is parsed as HTML.
-- Elements the specs read: tr.run[data-run], tr.wjob[data-job] (td.state,
-- td.status), tr.strategy[data-key] (td.label, td.batch, td.result), #log.

local _M = { _VERSION = "0.1.0" }

local PAGE = [==[<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>luabatch runs</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .6em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6em; }
th, td { text-align: left; padding: .2em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
tr.run { cursor: pointer; } tr.run:hover, tr.run.sel { background: #eef4ff; }
tr.wjob td { font-weight: 600; background: #fafafa; }
tr.strategy td.label { padding-left: 1.8em; }
td.batch, td.id { font-family: ui-monospace, monospace; font-size: .9em; }
.SUCCESS, .SUCCEEDED, .done { color: #137333; } .FAILED { color: #c5221f; }
.CANCEL, .SKIP { color: #8a6d00; } .RUNNING, .STARTING, .submitted { color: #1a56c4; }
.reason { color: #555; max-width: 40em; white-space: pre-wrap; }
button { font: inherit; padding: 0 .5em; }
pre#log { background: #111; color: #ddd; padding: .6em; max-height: 22em; overflow: auto; }
#err { color: #c5221f; }
</style></head>
<body>
<h1>luabatch runs</h1>
<div id="err"></div>
<table id="runs"><thead><tr><th>RUN</th><th>WORKFLOW</th><th>STARTED</th><th>DURATION</th>
<th>STATUS</th><th>JOBS OK/FAILED</th></tr></thead><tbody></tbody></table>
<div id="run" hidden>
<h2 id="run-title"></h2>
<table id="jobs"><thead><tr><th>JOB</th><th>STATE</th><th>BATCH ID</th><th>STATUS</th><th>RESULT</th>
<th>EXIT</th><th>REASON</th><th></th></tr></thead><tbody></tbody></table>
<div id="log-box" hidden><h2 id="log-title"></h2><pre id="log"></pre></div>
</div>
<script>
"use strict";
var picked = decodeURIComponent(location.hash.slice(1)) || null, logKey = null, runStatus = null;
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "-"; }
function secs(s) {
  if (typeof s !== "number") return "-";
  if (s < 60) return s.toFixed(1) + " s";
  var m = Math.floor(s / 60); return m + " min " + Math.round(s - m * 60) + " s";
}
function get(url) {
  return fetch(url, { cache: "no-store" }).then(function (r) {
    return r.json().then(function (b) { if (!r.ok) throw new Error(b.error || r.status); return b; });
  });
}
function row(cells) {
  var tr = el("tr");
  cells.forEach(function (c) { tr.appendChild(c); });
  return tr;
}
function listRuns(list) {
  var tb = document.querySelector("#runs tbody");
  tb.replaceChildren();
  if (!picked && list.length) picked = list[0].run_id;
  list.forEach(function (r) {
    var j = r.jobs ? (r.jobs.ok || 0) + "/" + (r.jobs.failed || 0) : "-";
    var tr = row([el("td", "id", r.run_id), el("td", "", r.workflow), el("td", "", when(r.started)),
      el("td", "", secs(r.duration)), el("td", r.status, r.status), el("td", "", j)]);
    tr.className = "run" + (r.run_id === picked ? " sel" : "");
    tr.dataset.run = r.run_id;
    tr.onclick = function () { picked = r.run_id; logKey = null; location.hash = r.run_id; tick(); };
    tb.appendChild(tr);
  });
}
function showRun(b) {
  document.getElementById("run").hidden = false;
  runStatus = b.status;
  var title = document.getElementById("run-title");
  title.replaceChildren(el("span", "", "run " + b.run_id + "  " + (b.workflow || "") + "  "),
    el("span", b.status, b.status));
  if (b.cancel) title.appendChild(el("span", "reason", "  (cancel: " + b.cancel + ")"));
  if (!b.ended && b.status !== "SUCCESS" && b.status !== "FAILED" && b.status !== "CANCEL") {
    var btn = el("button", "", "cancel");
    btn.onclick = function () {
      fetch("runs/" + encodeURIComponent(b.run_id), { method: "DELETE" }).then(tick);
    };
    title.appendChild(document.createTextNode("  "));
    title.appendChild(btn);
  }
  var per = {};
  (b.jobs || []).forEach(function (s) { (per[s.job] = per[s.job] || []).push(s); });
  var tb = document.querySelector("#jobs tbody");
  tb.replaceChildren();
  (b.workflow_jobs || []).forEach(function (w) {
    var state = w.state + (w.queued ? " (" + w.queued + " queued)" : "");
    var tr = row([el("td", "label", w.job), el("td", "state " + w.state, state), el("td", "", ""),
      el("td", "", ""), el("td", "status " + (w.status || ""), w.status || ""), el("td", "", ""),
      el("td", "reason", w.reason || w.error || ""), el("td", "", "")]);
    tr.className = "wjob";
    tr.dataset.job = w.job;
    tb.appendChild(tr);
    (per[w.job] || []).forEach(function (s) {
      var btn = el("button", "", "log");
      btn.onclick = function () { logKey = s.key; tick(); };
      var why = s.failure || (s.status !== "SUCCEEDED" ? s.reason : "") || "";
      var tr2 = row([el("td", "label", s.label || s.key), el("td", "", ""), el("td", "batch", s.job_id || ""),
        el("td", "bstatus " + s.status, s.status), el("td", "result " + (s.result || ""), s.result || ""),
        el("td", "", s.exit_code === undefined || s.exit_code === null ? "" : s.exit_code),
        el("td", "reason", why), el("td", "", "")]);
      tr2.lastChild.appendChild(btn);
      tr2.className = "strategy";
      tr2.dataset.key = s.key;
      tb.appendChild(tr2);
    });
  });
}
function showLog(b) {
  document.getElementById("log-box").hidden = false;
  document.getElementById("log-title").textContent = "log of " + b.key + (b.log_stream ? "" : " (none yet: " + b.status + ")");
  document.getElementById("log").textContent = (b.lines || []).map(function (l) { return l.m; }).join("\n");
}
function fail(e) { document.getElementById("err").textContent = String(e && e.message || e); }
function tick() {
  document.getElementById("err").textContent = "";
  return get("runs").then(function (list) {
    listRuns(list);
    if (!picked) return;
    return get("runs/" + encodeURIComponent(picked)).then(function (b) {
      showRun(b);
      if (logKey) {
        return get("runs/" + encodeURIComponent(picked) + "/logs?tail=40&key=" + encodeURIComponent(logKey))
          .then(showLog);
      }
    });
  }).catch(fail);
}
tick();
setInterval(tick, 1500);
</script>
</body></html>
]==]

--- page() -> the HTML text (the page finds the API
-- relative to its own URL)
function _M.page()
  return PAGE
end

return _M
