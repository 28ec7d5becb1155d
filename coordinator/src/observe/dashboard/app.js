// Baton's dashboard: plain JS, no build step. It renders what the coordinator's JSON API
// returns (the gRPC service's own messages) and refreshes on server-sent events.
"use strict";

const app = document.getElementById("app");
const crumb = document.getElementById("crumb");
const live = document.getElementById("live");
let enums = {};
let view = { stop: () => {} };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function word(kind, n) {
  return (enums[kind] && enums[kind][String(n)]) || String(n);
}

function status(kind, n) {
  const w = word(kind, n);
  return el("span", { class: "st " + w }, w);
}

function short(commit) {
  return (commit || "").slice(0, 7);
}

function ago(ms) {
  if (!ms) return "";
  let s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  s = s % 60;
  if (m < 60) return m + "m " + s + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}

function when(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Actions carry the API token when the coordinator has one (reads never need it). It is asked
// for once, on the first refusal, and kept for this tab only.
function authHeaders() {
  const token = sessionStorage.getItem("batonToken");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function act(url) {
  let response = await fetch(url, { method: "POST", headers: authHeaders() });
  if (response.status === 401) {
    const token = prompt("This coordinator needs its API token for actions:");
    if (!token) throw new Error("no API token given");
    sessionStorage.setItem("batonToken", token);
    response = await fetch(url, { method: "POST", headers: authHeaders() });
  }
  const body = await response.json();
  if (!response.ok) {
    if (response.status === 401) sessionStorage.removeItem("batonToken");
    throw new Error(body.error || response.statusText);
  }
  return body;
}

function setLive(on) {
  live.textContent = on ? "live" : "offline";
  live.className = "live " + (on ? "on" : "off");
}

// ---- pipelines list ----

async function showPipelines() {
  crumb.textContent = "";
  const { pipelines = [] } = await getJSON("/api/pipelines");
  app.replaceChildren(
    el("h2", {}, "Pipelines"),
    pipelines.length === 0
      ? el("p", { class: "muted" }, "No pipelines yet: baton pipeline apply FILE")
      : el("table", {},
          el("tr", {}, el("th", {}, "name"), el("th", {}, "version"), el("th", {}, "stages"), el("th", {}, "updated")),
          pipelines.map((p) => el("tr", {},
            el("td", {}, el("a", { href: "#/pipeline/" + encodeURIComponent(p.name) }, p.name)),
            el("td", {}, p.version),
            el("td", {}, p.stage_count),
            el("td", {}, when(p.updated_at_ms))))));
  return () => {};
}

// ---- one pipeline ----

function revisionText(rev) {
  if (!rev) return "";
  return short(rev.commit) + " on " + rev.branch;
}

function stageCard(stage, executions) {
  const number = (id, n) => "#" + (n || (executions[id] && executions[id].number) || "?");
  const lock = stage.lock
    ? el("div", { class: "box lock", "data-role": "lock" },
        el("div", { class: "label" }, "lock held by"),
        el("div", {}, el("b", {}, number(stage.lock.execution_id, stage.lock.number)), " ",
          el("code", {}, revisionText(stage.lock.revision)), " ", status("ExecutionStatus", stage.lock.status)),
        el("div", { class: "muted" }, "for ", el("span", { "data-since": stage.lock.since_ms }, ago(stage.lock.since_ms)),
          " · fence ", el("b", {}, stage.lock.fence_token)),
        stage.lock.note ? el("div", { class: "reason", "data-role": "holder-note" }, stage.lock.note) : "")
    : el("div", { class: "box free", "data-role": "lock" }, "lock free");
  const waiting = (stage.waiting || []).map((w) =>
    el("div", { class: "box waiter", "data-role": "waiting" },
      el("div", { class: "label" }, "inbound"),
      el("div", {}, el("b", {}, number(w.execution_id, w.number)), " ", el("code", {}, revisionText(w.revision))),
      el("div", { class: "reason" }, w.reason),
      el("div", { class: "muted" }, "waiting ", el("span", { "data-since": w.since_ms }, ago(w.since_ms)))));
  const last = stage.last_outcome;
  return el("div", { class: "stage", "data-stage": stage.stage, "data-lane": stage.lane || "" },
    el("h4", {}, el("span", {}, stage.stage, stage.lane ? " · " + stage.lane : ""),
      el("span", { class: "mode" }, "mode: " + word("ExecutionMode", stage.mode).toLowerCase())),
    lock,
    waiting,
    last
      ? el("div", { class: "muted", "data-role": "last" }, "last: ", number(last.execution_id, last.number), " ",
          status("StageStatus", last.status), " ", when(last.finished_at_ms))
      : el("div", { class: "muted", "data-role": "last" }, "no run yet"),
    el("div", { class: "muted" }, "fence token ", stage.fence_token));
}

function historyTable(executions, openLog) {
  const stop = async (id, mode) => {
    try {
      await act("/api/executions/" + encodeURIComponent(id) + "/stop?mode=" + mode);
    } catch (e) {
      alert("Cannot stop: " + e.message);
    }
  };
  return el("table", { id: "history" },
    el("tr", {}, ["#", "revision", "status", "stages and jobs", "started", ""].map((h) => el("th", {}, h))),
    executions.map((e) => el("tr", { "data-execution": e.execution_id },
      el("td", {}, "#" + e.number),
      el("td", {}, el("code", {}, revisionText(e.revision)), el("div", { class: "muted" }, e.revision && e.revision.message)),
      el("td", {}, status("ExecutionStatus", e.status), el("div", { class: "muted" }, e.status_reason)),
      el("td", {}, (e.stages || []).map((s) => el("div", {},
        s.stage, " ", status("StageStatus", s.status),
        (s.jobs || []).map((j) => el("span", {}, " ",
          el("a", { class: "job", onclick: () => openLog(j, e) }, j.action), " ",
          status("JobStatus", j.status), j.exit_code && word("JobStatus", j.status) !== "Running" ? " exit " + j.exit_code : ""))))),
      el("td", {}, when(e.created_at_ms)),
      el("td", {}, ["InProgress", "Stopping", "Paused"].includes(word("ExecutionStatus", e.status))
        ? [el("button", { onclick: () => stop(e.execution_id, "wait") }, "stop"), " ",
           el("button", { onclick: () => stop(e.execution_id, "abandon") }, "abandon")]
        : ""))));
}

function logPanel() {
  const title = el("h3", {}, "Job log");
  const pre = el("pre", { id: "log" }, "Click a job to follow its log.");
  let source = null;
  const open = (job, execution) => {
    if (source) source.close();
    title.textContent = "Job log: #" + execution.number + " " + job.action;
    pre.replaceChildren();
    source = new EventSource("/api/jobs/" + encodeURIComponent(job.job_id) + "/log");
    // The worker writes its own step headers and exit lines (the System stream).
    source.addEventListener("chunk", (m) => {
      const c = JSON.parse(m.data);
      const kind = word("LogStream", c.stream);
      pre.append(el("span", { class: kind === "Stderr" ? "stderr" : kind === "System" ? "step" : "" }, c.text));
      pre.scrollTop = pre.scrollHeight;
    });
    const end = (text) => {
      pre.append(el("span", { class: "step" }, "\n" + text + "\n"));
      source.close();
    };
    // The first `end` says how the job ended; the browser closes before a second one.
    source.addEventListener("end", (m) => end(m.data && m.data !== "end" ? m.data : "── end of log ──"));
    // A broken connection is not retried: the log would start over.
    source.addEventListener("error", (m) => end(m.data ? "log error: " + m.data : "── log stream interrupted ──"));
  };
  return { node: el("section", {}, title, pre), open, close: () => source && source.close() };
}

async function showPipeline(name) {
  crumb.replaceChildren(" / ", name);
  const stagesNode = el("section", { class: "stages", id: "stages" });
  const historyNode = el("section", {});
  const lastEvent = el("p", { class: "muted", id: "last-event" }, "");
  const log = logPanel();
  app.replaceChildren(el("h2", {}, name), stagesNode, lastEvent, el("h3", {}, "Executions"), historyNode, log.node);

  let pending = null;
  const refresh = async () => {
    pending = null;
    try {
      const [state, history] = await Promise.all([
        getJSON("/api/pipelines/" + encodeURIComponent(name) + "/state"),
        getJSON("/api/pipelines/" + encodeURIComponent(name) + "/executions?limit=20"),
      ]);
      const executions = {};
      for (const e of history.executions || []) executions[e.execution_id] = e;
      const cards = [];
      (state.stages || []).forEach((s, i) => {
        if (i > 0) cards.push(el("div", { class: "arrow" }, "→"));
        cards.push(stageCard(s, executions));
      });
      stagesNode.replaceChildren(...cards);
      historyNode.replaceChildren(historyTable(history.executions || [], log.open));
    } catch (e) {
      stagesNode.replaceChildren(el("p", { class: "reason" }, e.message));
    }
  };
  await refresh();

  const events = new EventSource("/api/pipelines/" + encodeURIComponent(name) + "/events");
  events.onopen = () => { setLive(true); refresh(); };
  events.onerror = () => setLive(false);
  events.addEventListener("change", (m) => {
    const e = JSON.parse(m.data);
    const change = e.change ? Object.entries(e.change)[0] : null;
    // A oneof arrives as {"JobStatus": 2}: its name is also the enum's.
    const what = change ? word(change[0], change[1]) : "changed";
    lastEvent.textContent = "last event: " + [e.stage, e.job_id ? "job" : "", what, e.message].filter(Boolean).join(" ");
    if (!pending) pending = setTimeout(refresh, 50);
  });
  const ticker = setInterval(() => {
    for (const span of document.querySelectorAll("[data-since]")) span.textContent = ago(Number(span.dataset.since));
  }, 1000);
  return () => { events.close(); clearInterval(ticker); log.close(); setLive(false); };
}

// ---- routing ----

async function route() {
  view.stop();
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  try {
    const stop = hash.startsWith("pipeline/") ? await showPipeline(hash.slice("pipeline/".length)) : await showPipelines();
    view = { stop };
  } catch (e) {
    app.replaceChildren(el("p", { class: "reason" }, "Cannot load: " + e.message));
    view = { stop: () => {} };
  }
}

(async () => {
  enums = await getJSON("/api/enums");
  window.addEventListener("hashchange", route);
  route();
})();
