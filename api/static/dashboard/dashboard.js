// Mnemo admin dashboard: loss curves (uPlot, vendored) and the live jobs table (server-sent events).
// No inline scripts: data reaches this file through JSON blocks and data attributes.
(function () {
  "use strict";

  function drawCurves() {
    var block = document.getElementById("curve-data");
    if (!block || typeof uPlot === "undefined") return;
    var curves = JSON.parse(block.textContent);
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    var axis = { stroke: dark ? "#8e98a7" : "#6a7483", grid: { stroke: dark ? "#2a303a" : "#e3e6eb" } };
    var colours = { train: "#4263eb", dsc: "#ae3ec9", fisher: "#0c8599" };
    document.querySelectorAll("figure.curve").forEach(function (figure) {
      var phase = figure.dataset.phase;
      var points = curves[phase] || [];
      var data = [points.map(function (p) { return p[0]; }), points.map(function (p) { return p[1]; })];
      var width = Math.max(300, figure.clientWidth || 360);
      new uPlot({
        width: width, height: 220,
        scales: { x: { time: false } },
        axes: [Object.assign({ label: "step" }, axis), Object.assign({ label: "loss" }, axis)],
        series: [{ label: "step" }, { label: phase, stroke: colours[phase] || "#e67700", width: 2 }],
      }, data, figure);
    });
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function jobRow(job) {
    var tr = document.createElement("tr");
    tr.dataset.job = job.id;
    var p = job.progress || {};
    tr.appendChild(cell(job.user_name));
    tr.appendChild(cell(job.kind + " " + (job.concept_name || "")));
    var state = cell("");
    var badge = document.createElement("span");
    badge.className = "badge " + job.state;
    badge.textContent = job.state;
    state.appendChild(badge);
    tr.appendChild(state);
    tr.appendChild(cell(p.phase || "", "phase-name"));
    var progressCell = cell("");
    var bar = document.createElement("progress");
    bar.max = p.total || 1;
    bar.value = p.step || 0;
    progressCell.appendChild(bar);
    var step = document.createElement("span");
    step.className = "step";
    step.textContent = " " + (p.step || 0) + "/" + (p.total || 0);
    progressCell.appendChild(step);
    tr.appendChild(progressCell);
    tr.appendChild(cell(p.loss === null || p.loss === undefined ? "—" : Number(p.loss).toFixed(4), "num loss"));
    tr.appendChild(cell(job.worker_id || "—", "mono"));
    return tr;
  }

  function liveJobs() {
    var body = document.getElementById("live-jobs");
    var status = document.getElementById("live-status");
    if (!body || typeof EventSource === "undefined") return;
    var source = new EventSource("/admin/live/events");
    source.addEventListener("open", function () { status.textContent = "live"; });
    source.addEventListener("error", function () { status.textContent = "reconnecting…"; });
    source.addEventListener("jobs", function (event) {
      var page = JSON.parse(event.data);
      var rows = page.jobs.map(jobRow);
      if (!rows.length) {
        var empty = document.createElement("tr");
        empty.className = "empty";
        var td = cell("Nothing running.", "muted");
        td.colSpan = 7;
        empty.appendChild(td);
        rows = [empty];
      }
      body.replaceChildren.apply(body, rows);
      status.textContent = "live · updated " + new Date().toLocaleTimeString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCurves(); liveJobs(); });
})();
