// The dashboard page: polls /api/overview every second and draws it; no build step.
// Every API call carries the token typed in the header (when the dashboard has one, reads
// need it too); it stays in this page, never stored.
"use strict";

const $ = (sel) => document.querySelector(sel);
let actionsEnabled = false;

function api(path, options) {
  const opts = options || {};
  const headers = Object.assign({}, opts.headers || {});
  const token = $("#token").value;
  if (token) headers["X-Taskfleet-Token"] = token;
  return fetch(path, Object.assign({cache: "no-store"}, opts, {headers: headers}));
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => tr.appendChild(c));
  return tr;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  return (seconds / 3600).toFixed(1) + " h";
}

function drawQueues(queues) {
  const body = $("#queues tbody");
  body.replaceChildren(...queues.map((q) => {
    const tr = row([cell(q.label)]);
    tr.dataset.queue = q.label;
    if (q.error) {
      const td = cell("unreadable: " + q.error, "error");
      td.colSpan = 5;
      tr.appendChild(td);
      return tr;
    }
    [["ready", q.ready], ["in-flight", q.in_flight], ["delayed", q.delayed],
     ["oldest", age(q.oldest_age_seconds)], ["dead", q.dead]].forEach(([name, v]) => {
      const td = cell(v, "num");
      td.dataset.field = name;
      tr.appendChild(td);
    });
    return tr;
  }));
  const select = $("#dead-queue");
  const chosen = select.value;
  const labels = queues.map((q) => q.label);
  if (labels.join("\n") !== Array.from(select.options).map((o) => o.value).join("\n")) {
    select.replaceChildren(...labels.map((l) => new Option(l, l)));
    if (labels.includes(chosen)) select.value = chosen;
  }
}

function chart(history, max) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 110");
  svg.setAttribute("preserveAspectRatio", "none");
  if (history.length === 0) return svg;
  const t0 = history[0][0];
  const t1 = Math.max(history[history.length - 1][0], t0 + 60);
  const top = Math.max(1, max || 0, ...history.map((p) => Math.max(p[1] || 0, p[2] || 0)));
  const x = (t) => ((t - t0) / (t1 - t0)) * 600;
  const y = (v) => 105 - (v / top) * 100;
  [[1, "desired"], [2, "ready"]].forEach(([i, cls]) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("points", history.filter((p) => p[i] !== null)
      .map((p) => x(p[0]).toFixed(1) + "," + y(p[i]).toFixed(1)).join(" "));
    svg.appendChild(line);
  });
  return svg;
}

function drawPools(pools, unavailable) {
  const box = $("#pools");
  const note = $("#pools-unavailable");
  if (pools === null) {
    note.hidden = false;
    note.textContent = "Pools unavailable: " + unavailable;
    box.replaceChildren();
    return;
  }
  note.hidden = true;
  box.replaceChildren(...pools.map((p) => {
    const div = document.createElement("div");
    div.className = "pool";
    div.dataset.pool = p.key;
    const info = document.createElement("div");
    const h = document.createElement("h3");
    h.textContent = p.key;
    const figures = document.createElement("div");
    figures.className = "figures";
    figures.textContent = "desired " + (p.desired ?? "–") + " · replicas " + p.replicas +
      " · ready " + p.ready + (p.max_replicas !== null ? " · max " + p.max_replicas : "") +
      " · queues " + p.queues.join(", ");
    const reasons = document.createElement("ul");
    reasons.className = "reasons";
    p.reasons.forEach((r) => {
      const li = document.createElement("li");
      li.textContent = r.time + ": " + r.reason;
      reasons.appendChild(li);
    });
    info.append(h, figures, reasons);
    const graph = document.createElement("div");
    const legend = document.createElement("div");
    legend.className = "legend";
    legend.innerHTML = '<span style="color:#2f6fdf">━ desired</span> ' +
      '<span style="color:#1e9e57">━ ready</span>';
    graph.append(chart(p.history, p.max_replicas), legend);
    div.append(info, graph);
    return div;
  }));
}

function drawWorkers(workers) {
  $("#workers tbody").replaceChildren(...workers.map((w) => {
    const tr = row([cell(w.pod || w.id), cell(w.queues.join(", ")), cell(w.state, w.state),
                    cell(w.busy + "/" + w.concurrency, "num"),
                    cell(w.current.join(", ") || "–"), cell(age(w.seen_seconds_ago) + " ago")]);
    tr.dataset.worker = w.id;
    return tr;
  }));
}

async function refresh() {
  try {
    const r = await api("api/overview");
    const data = await r.json();
    if (r.status === 401) {
      $("#updated").textContent = "token needed: type it in the Token field";
      return;
    }
    if (!r.ok) { $("#updated").textContent = "refused: " + data.error; return; }
    actionsEnabled = data.actions;
    $("#mode").textContent = data.actions ? "actions enabled (token needed)" : "read-only";
    document.querySelectorAll(".actions button").forEach((b) => { b.disabled = !data.actions; });
    drawQueues(data.queues);
    drawPools(data.pools, data.pools_unavailable);
    drawWorkers(data.workers);
    $("#updated").textContent = "updated " + new Date(data.time * 1000).toLocaleTimeString();
  } catch (e) {
    $("#updated").textContent = "not reachable: " + e;
  }
}

async function showDead() {
  const queue = $("#dead-queue").value;
  if (!queue) return;
  const r = await api("api/dead?queue=" + encodeURIComponent(queue));
  const data = await r.json();
  $("#dead-message").textContent = "";
  if (!r.ok) { $("#dead-message").textContent = data.error; return; }
  $("#dead tbody").replaceChildren(...data.dead.map((d) => row([
    cell(d.id), cell(d.task), cell(d.reason),
    cell(d.failed_at ? new Date(d.failed_at * 1000).toLocaleString() : null)])));
  if (data.dead.length === 0) $("#dead-message").textContent = "No dead letters in " + queue + ".";
}

async function act(kind) {
  const queue = $("#dead-queue").value;
  if (!queue) return;
  const what = kind === "requeue" ? "Requeue every dead letter of " : "Delete every dead letter of ";
  if (!window.confirm(what + queue + "?")) return;
  const r = await api("api/dead/" + kind, {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({queue: queue, confirm: queue}),
  });
  const data = await r.json();
  await showDead();
  $("#dead-message").textContent = r.ok
    ? (kind === "requeue" ? "Requeued " + data.requeue : "Purged " + data.purge) + " from " + queue + "."
    : "Refused: " + data.error;
  await refresh();
}

async function lookUp() {
  const id = $("#task-id").value.trim();
  if (!id) return;
  const r = await api("api/task/" + encodeURIComponent(id));
  $("#task").textContent = JSON.stringify(await r.json(), null, 2);
}

$("#dead-form").addEventListener("submit", (e) => { e.preventDefault(); showDead(); });
$("#task-form").addEventListener("submit", (e) => { e.preventDefault(); lookUp(); });
$("#requeue").addEventListener("click", () => act("requeue"));
$("#purge").addEventListener("click", () => act("purge"));
refresh();
setInterval(refresh, 1000);
