// EWMS dashboard: one page over the WMS REST API (same origin, bearer token kept in sessionStorage).
// Every value from the server is put into the page as text nodes or attributes, never parsed as HTML.
"use strict";

const POLL_MS = 2000;
const MAX_BACKOFF_MS = 30000;
const PAGE_SIZE = 100; // workflows per page of the list (keyset pages, in creation order)
const ID_CHUNK = 90; // ids per `$in` filter (the WMS refuses filters of more than USER_QUERY_MAX_TERMS terms)
const LOG_POLL_MS = 3000; // the log viewer re-reads the logs this often while a job runs
const CLOCK_MS = 1000; // relative times and run times are updated in place this often
const RECENT_SECONDS = 7 * 24 * 3600;
const TOKEN_KEY = "ewms.dashboard.token";
const PAUSED = "Paused while this tab is hidden.";
const PHASES = [
  "pre-mq-activation", "pre-launch", "pending-starter", "condor-submit",
  "pending-stopper", "condor-rm", "condor-complete",
];
// taskforce fields the detail view shows (the submit description and configs are left out)
const TASKFORCE_FIELDS = [
  "taskforce_uuid", "task_id", "workflow_id", "timestamp", "cluster_location", "schedd", "n_workers",
  "cluster_id", "phase", "phase_change_log", "compound_statuses", "top_task_errors", "retried_as",
];
const RUN_START = "condor-submit"; // a taskforce runs from its jobs' submission ...
const RUN_END = ["condor-rm", "condor-complete"]; // ... until they were removed or completed
// condor status -> bar segment; the first match wins
const FATAL = "FatalError"; // a worker whose pilot ended in a fatal error: its own (red) segment, whatever its status
const STATUS_KINDS = [
  { kind: "fatal", label: "Fatal error", test: () => false },
  { kind: "running", label: "Running", test: (s) => s === "RUNNING" },
  { kind: "idle", label: "Idle", test: (s) => s === "IDLE" },
  { kind: "held", label: "Held", test: (s) => s === "HELD" || s.startsWith("HELD:") },
  { kind: "done", label: "Done", test: (s) => s === "COMPLETED" },
  { kind: "removed", label: "Removed", test: (s) => s === "REMOVED" },
  { kind: "other", label: "Other", test: () => true },
];
const RETRY_ROUTE = "POST /v0/taskforces/{taskforce_uuid}/actions/retry";
const PROGRESS_ROUTE = "GET /v0/workflows/{workflow_id}/progress";
const PROGRESS_CAP = 25; // most workflows whose progress (and health) one refresh reads: open ones first, then active
// event counts -> progress bar segments, in this order
const PROGRESS_KINDS = [
  { key: "done", label: "Done" },
  { key: "failed", label: "Failed" },
  { key: "in_flight", label: "In flight" },
  { key: "waiting", label: "Waiting" },
];
const LOGS_ROUTE = "GET /v0/taskforces/{taskforce_uuid}/logs";

const state = {
  token: null,
  routes: null, // "METHOD /path" of the OpenAPI document, or null when unknown (then: try, and handle 404/405)
  missing: new Set(), // routes that answered 404/405 although offered
  expanded: new Set(), // workflow ids whose details are open
  directives: new Map(), // workflow id -> its task directives (immutable, so loaded once)
  rows: new Map(), // workflow id -> {row, detail, rowSig, detailSig}
  last: null, // the latest data, to re-render on a filter change without a request
  timer: null,
  inflight: false,
  again: false,
  failures: 0,
  lastOk: null, // when the data shown was last refreshed (ms), null before the first refresh
  page: { cursors: [null], offsets: [0], index: 0 }, // keyset cursor (`after`) and position of each visited page
  logs: null, // the open log viewer: {uuid, timer}
};

const $ = (selector) => document.querySelector(selector);
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const numberFormat = new Intl.NumberFormat();

// ---- DOM building -------------------------------------------------------------------------------------------

/** h("td", {class: "x", onclick: fn}, "text", node, [more]) -> an element; strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** "5 min ago" (relative to now; kept up to date by `tickClock`), the absolute time in its title. */
function timeEl(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "—";
  const date = new Date(epochSeconds * 1000);
  return h("time", {
    class: "rel", datetime: date.toISOString(), title: dateFormat.format(date), "data-ts": epochSeconds,
  }, relative(epochSeconds));
}

function relative(epochSeconds) {
  const s = Math.round(Date.now() / 1000 - epochSeconds);
  if (s < 5) return "just now"; // also a time a little ahead of this browser's clock
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** How long a taskforce's jobs have run: from its condor-submit phase change to now, or to their removal or end. */
function runTime(log) {
  const entries = (log || []).filter((e) => e.was_successful);
  const start = entries.find((e) => e.target_phase === RUN_START);
  if (!start) return "not submitted";
  const end = entries.find((e) => RUN_END.includes(e.target_phase) && e.timestamp >= start.timestamp);
  const since = dateFormat.format(new Date(start.timestamp * 1000));
  return h("span", {
    class: "run-time", "data-since": start.timestamp, "data-until": end ? end.timestamp : null,
    title: end ? `${since} to ${dateFormat.format(new Date(end.timestamp * 1000))}` : `since ${since}`,
  }, runText(start.timestamp, end?.timestamp));
}

function runText(since, until) {
  return until === undefined ? `${duration(Date.now() / 1000 - since)} (running)` : `${duration(until - since)} (ended)`;
}

/** Bring relative times and running taskforces' run times up to date, in place (no re-render). */
function tickClock() {
  for (const el of document.querySelectorAll("time.rel")) {
    const text = relative(Number(el.dataset.ts));
    if (el.textContent !== text) el.textContent = text;
  }
  for (const el of document.querySelectorAll(".run-time:not([data-until])")) {
    const text = runText(Number(el.dataset.since));
    if (el.textContent !== text) el.textContent = text;
  }
}

/** Replace `old` by `fresh`, keeping focus and open <details> (matched by data-key) across the swap. */
function swap(old, fresh) {
  const focused = old.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
  for (const open of old.querySelectorAll("details[open][data-key]")) {
    fresh.querySelector(`details[data-key="${CSS.escape(open.dataset.key)}"]`)?.setAttribute("open", "");
  }
  old.replaceWith(fresh);
  if (focused) fresh.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
}

// ---- REST API -----------------------------------------------------------------------------------------------

/** A failed request; `problem` is the RFC 7807 body (or one made up for network and non-JSON failures). */
class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, { title: "Cannot reach the WMS", detail: String(err.message || err) });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (e.g. a proxy's error page): reported below with the start of the text
  }
  if (!response.ok) {
    const problem = data && typeof data === "object"
      ? data
      : { title: response.statusText || "Error", status: response.status, detail: text.slice(0, 300) };
    throw new ApiError(response.status, problem, Number(response.headers.get("Retry-After")) || undefined);
  }
  return data;
}

/** One page of a query (`kind`: workflows, task-directives, taskforces): {items, next} (`next`: the next `after`). */
async function queryPage(kind, query, { projection, after, limit = 1000 } = {}) {
  const body = { query, limit };
  if (projection) body.projection = projection;
  if (after) body.after = after;
  const page = await api("POST", `/v0/query/${kind}`, body);
  return { items: page[kind.replace("-", "_")], next: page.next_after };
}

/** Every item of a query on `field` being one of `values` (asked in chunks of ID_CHUNK values, page after page). */
async function queryIn(kind, field, values, projection) {
  const items = [];
  for (let i = 0; i < values.length; i += ID_CHUNK) {
    const query = { [field]: { $in: values.slice(i, i + ID_CHUNK) } };
    let after = null;
    do {
      const page = await queryPage(kind, query, { projection, after });
      items.push(...page.items);
      after = page.next;
    } while (after);
  }
  return items;
}

function supports(route) {
  return !state.missing.has(route) && (state.routes === null || state.routes.has(route));
}

/** A 404 from the route table (not for an unknown object) or a 405: the server lacks this action. */
function routeMissing(err) {
  return err.status === 405 || (err.status === 404 && /^no route/.test(err.problem.detail || ""));
}

// ---- messages -----------------------------------------------------------------------------------------------

function problemParts(err) {
  const p = err.problem || { title: String(err.message || err) };
  const status = p.status || err.status;
  return {
    heading: status ? `${p.title || "Error"} (${status})` : p.title || "Error",
    detail: p.detail && p.detail !== p.title ? p.detail : "",
    errors: Array.isArray(p.errors) ? p.errors : [],
  };
}

function showError(err, context) {
  const { heading, detail, errors } = problemParts(err);
  const box = $("#error");
  box.replaceChildren(h("div", {},
    h("p", { class: "error-title" }, context ? `${context}: ${heading}` : heading),
    detail && h("p", {}, detail),
    errors.length > 0 && h("ul", {}, errors.map((e) => h("li", {}, e))),
    h("button", { type: "button", class: "dismiss", onclick: () => { box.hidden = true; } }, "Dismiss"),
  ));
  box.hidden = false;
}

function notify(text) {
  const box = $("#notice");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

function setLive(text) {
  $("#live").textContent = text;
}

// ---- sign-in ------------------------------------------------------------------------------------------------

/** The token's claims, for display only (the server is what checks the token). */
function claimsOf(token) {
  try {
    const base64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

async function signIn(token) {
  state.token = token;
  try {
    const doc = await api("GET", "/v0/schema/openapi");
    const paths = Object.entries(doc.paths || {});
    const v0 = (path) => (path.startsWith("/v0/") || path === "/metrics" ? path : `/v0${path}`); // prefix-free paths
    state.routes = new Set(paths.flatMap(([path, ops]) => Object.keys(ops)
      .map((m) => `${m.toUpperCase()} ${v0(path)}`)));
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      state.token = null;
      throw err;
    }
    state.routes = null; // the document is unavailable: offer every action and handle 404/405
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const claims = claimsOf(token);
  const roles = [].concat(claims.ewms_role || []).join(", ");
  $("#who").textContent = `Signed in as ${claims.sub || "unknown"}${roles ? ` (${roles})` : ""}`;
  $("#session").hidden = false;
  $("#signin-view").hidden = true;
  $("#dashboard-view").hidden = false;
  $("#error").hidden = true;
  $("#main").focus();
  pollNow();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(state.timer);
  closeLogs();
  showStale(null);
  Object.assign(state, {
    token: null, routes: null, last: null, failures: 0, lastOk: null, page: { cursors: [null], offsets: [0], index: 0 },
  });
  state.missing.clear();
  state.expanded.clear();
  state.directives.clear();
  state.rows.clear();
  $("#workflows").replaceChildren();
  $("#session").hidden = true;
  $("#dashboard-view").hidden = true;
  $("#signin-view").hidden = false;
  $("#token").value = "";
  $("#token").focus();
}

// ---- polling ------------------------------------------------------------------------------------------------

function schedule(ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(tick, ms);
}

function pollNow() {
  schedule(0);
}

/** One refresh, then the next one in POLL_MS (or later after failures); nothing while the tab is hidden. */
async function tick() {
  if (!state.token || document.hidden) return;
  if (state.inflight) {
    state.again = true; // refresh once more when the current one ends (an action changed something)
    return;
  }
  state.inflight = true;
  let delay = POLL_MS;
  try {
    await refresh();
    state.failures = 0;
    state.lastOk = Date.now();
    showStale(null);
    setLive(document.hidden ? PAUSED : `Live · updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err.status === 401) {
      signOut();
      showError(err, "Signed out");
      return;
    }
    state.failures += 1;
    delay = err.retryAfter ? err.retryAfter * 1000 : Math.min(POLL_MS * 2 ** state.failures, MAX_BACKOFF_MS);
    const { heading, detail } = problemParts(err);
    const reason = `${heading}${detail ? ` — ${detail}` : ""}`;
    setLive(`Could not refresh: ${reason}. Retrying in ${Math.round(delay / 1000)} s.`);
    showStale(state.last ? reason : null);
  } finally {
    state.inflight = false;
  }
  if (!state.token) return;
  if (state.again) {
    state.again = false;
    delay = 0;
  }
  schedule(delay);
}

/** The stale-data banner (with `reason`), and the data dimmed; or (null) neither. */
function showStale(reason) {
  const banner = $("#stale");
  $("#dashboard-view").classList.toggle("is-stale", reason !== null);
  if (reason === null) {
    banner.hidden = true;
    return;
  }
  if (banner.hidden) { // written once per stale spell, with a fixed time (an alert is read out again on changes)
    const since = new Date(state.lastOk);
    banner.replaceChildren(
      h("p", { class: "stale-title" }, "The data shown is stale: last updated at ",
        h("time", { datetime: since.toISOString(), title: dateFormat.format(since) }, since.toLocaleTimeString()), "."),
      h("p", { id: "stale-reason" }),
    );
    banner.hidden = false;
  }
  $("#stale-reason").textContent = `Refreshing fails: ${reason}. The dashboard keeps retrying.`;
}

function filterQuery() {
  const active = { deactivated: { $eq: null } }; // {$eq: null}: the embedded database ignores a bare null
  switch ($("#state-filter").value) {
    case "active": return active;
    case "aborted": return { deactivated: "ABORTED" };
    case "finished": return { deactivated: "FINISHED" };
    case "all": return {};
    default: return { $or: [active, { deactivated_ts: { $gte: Date.now() / 1000 - RECENT_SECONDS } }] };
  }
}

/** Read the current page of workflows, their taskforces' phases, and the details of the open ones. */
async function refresh() {
  const token = state.token;
  const { page } = state;
  const index = page.index;
  const { items: workflows, next } = await queryPage("workflows", filterQuery(),
    { after: page.cursors[index], limit: PAGE_SIZE });
  const ids = workflows.map((w) => w.workflow_id);
  const counts = new Map(ids.map((id) => [id, {}]));
  for (const tf of await queryIn("taskforces", "workflow_id", ids, ["workflow_id", "phase"])) {
    const c = counts.get(tf.workflow_id);
    if (c) c[tf.phase] = (c[tf.phase] || 0) + 1;
  }
  const open = ids.filter((id) => state.expanded.has(id));
  const progress = await progressOf(open, workflows);
  const taskforces = new Map(open.map((id) => [id, []]));
  const missing = open.filter((id) => !state.directives.has(id));
  const directives = await queryIn("task-directives", "workflow_id", missing);
  for (const id of missing) state.directives.set(id, []);
  for (const td of directives) state.directives.get(td.workflow_id)?.push(td);
  for (const tf of await queryIn("taskforces", "workflow_id", open, TASKFORCE_FIELDS)) {
    taskforces.get(tf.workflow_id)?.push(tf);
  }
  if (state.token !== token || state.page !== page || page.index !== index) return; // signed out or paged meanwhile
  state.last = { workflows, counts, taskforces, progress, next, offset: page.offsets[index], index };
  render();
}

/** Go to the first page (a new selection), or one page forward (+1) or back (-1). */
function goToPage(step) {
  const { page, last } = state;
  if (step === 0) {
    state.page = { cursors: [null], offsets: [0], index: 0 };
  } else if (step > 0 && last?.next && last.index === page.index) {
    page.cursors[page.index + 1] = last.next;
    page.offsets[page.index + 1] = last.offset + last.workflows.length;
    page.index += 1;
  } else if (step < 0 && page.index > 0) {
    page.index -= 1;
  } else {
    return;
  }
  $("#page-prev").disabled = true; // until the page is read
  $("#page-next").disabled = true;
  pollNow();
}

/** The progress (with health) of the open workflows and of the first active ones, up to PROGRESS_CAP. */
async function progressOf(open, workflows) {
  const progress = new Map();
  if (!supports(PROGRESS_ROUTE)) return progress;
  const active = workflows.filter((w) => !w.deactivated).map((w) => w.workflow_id);
  const ids = [...new Set([...open, ...active])].slice(0, PROGRESS_CAP);
  const results = await Promise.allSettled(
    ids.map((id) => api("GET", `/v0/workflows/${encodeURIComponent(id)}/progress`)));
  results.forEach((result, i) => {
    if (result.status === "fulfilled") progress.set(ids[i], result.value);
    else if (routeMissing(result.reason)) state.missing.add(PROGRESS_ROUTE);
    else if (result.reason.status !== 404) throw result.reason; // 404: deleted meanwhile
  });
  return progress;
}

// ---- the workflow list --------------------------------------------------------------------------------------

function stateOf(w) {
  return w.deactivated ? w.deactivated.toLowerCase() : "active";
}

function matches(w, text) {
  if (!text) return true;
  const labels = Object.entries(w.labels || {}).map(([k, v]) => `${k}=${v}`);
  return [w.workflow_id, w.name || "", w.owner, ...labels].some((s) => s.toLowerCase().includes(text));
}

function render() {
  if (!state.last) return;
  const { workflows, counts, taskforces, progress, next, offset, index } = state.last;
  const text = $("#text-filter").value.trim().toLowerCase();
  const shown = workflows.filter((w) => matches(w, text)).sort((a, b) => b.timestamp - a.timestamp);
  const body = $("#workflows");
  const keep = new Set();
  let position = 0;
  for (const w of shown) {
    const id = w.workflow_id;
    keep.add(id);
    const expanded = state.expanded.has(id);
    const entry = state.rows.get(id) || {};
    const health = progress.get(id) ? [progress.get(id).health, progress.get(id).health_reason] : null;
    const rowSig = JSON.stringify([w, counts.get(id), expanded, health]);
    if (rowSig !== entry.rowSig) {
      const row = workflowRow(w, counts.get(id), expanded, health);
      if (entry.row) swap(entry.row, row);
      Object.assign(entry, { row, rowSig });
    }
    const routes = [supports(RETRY_ROUTE), supports(LOGS_ROUTE)];
    const shownProgress = expanded ? progressView(progress.get(id)) : null;
    const detailData = expanded ? [w, state.directives.get(id), taskforces.get(id), routes, shownProgress] : null;
    const detailSig = JSON.stringify(detailData);
    if (detailSig !== entry.detailSig) {
      const detail = detailRow(w, expanded, state.directives.get(id), taskforces.get(id), progress.get(id));
      if (entry.detail) swap(entry.detail, detail);
      Object.assign(entry, { detail, detailSig });
    }
    state.rows.set(id, entry);
    // move rows only when out of place (moving a node would drop its focus)
    for (const el of [entry.row, entry.detail]) {
      if (body.children[position] !== el) body.insertBefore(el, body.children[position] || null);
      position += 1;
    }
  }
  for (const [id, entry] of state.rows) {
    if (!keep.has(id)) {
      entry.row.remove();
      entry.detail.remove();
      state.rows.delete(id);
    }
  }
  $("#count").textContent = `(${shown.length}${shown.length === workflows.length ? "" : ` of ${workflows.length}`})`;
  $("#empty").hidden = shown.length > 0;
  const n = (x) => numberFormat.format(x);
  $("#page-info").textContent = workflows.length === 0 ? `Page ${index + 1}: no workflows.`
    : `Showing workflows ${n(offset + 1)}–${n(offset + workflows.length)} (page ${index + 1}, in creation order)`
      + (next ? "; more on the next page." : ".");
  $("#page-prev").disabled = index === 0;
  $("#page-next").disabled = !next;
  $("#pager").hidden = index === 0 && !next;
}

/** What the detail view shows of a progress document (its timestamp changes at every read). */
function progressView(p) {
  return p ? { ...p, timestamp: undefined } : null;
}

function workflowRow(w, counts, expanded, health) {
  const id = w.workflow_id;
  const labels = Object.entries(w.labels || {});
  return h("tr", { class: "wf", "data-id": id },
    h("th", { scope: "row", "data-label": "Workflow" },
      h("button", {
        type: "button", class: "expander", "aria-expanded": String(expanded), "aria-controls": `detail-${id}`,
        "data-key": `expand:${id}`, onclick: () => toggle(id),
      }, id),
      w.name && h("div", { class: "name" }, w.name),
      labels.length > 0 && h("ul", { class: "labels", "aria-label": "Labels" },
        labels.map(([k, v]) => h("li", {}, `${k}=${v}`)))),
    h("td", { "data-label": "Created" }, timeEl(w.timestamp)),
    h("td", { "data-label": "Owner" }, w.owner),
    h("td", { "data-label": "Priority", class: "num" }, String(w.priority)),
    h("td", { "data-label": "State" }, h("span", { class: `state state-${stateOf(w)}` }, stateOf(w)),
      health && health[0] !== "ok" && " ",
      health && health[0] !== "ok" && healthBadge(health[0], health[1])),
    h("td", { "data-label": "Taskforces" }, phaseCounts(counts || {})),
  );
}

function phaseCounts(counts) {
  const phases = PHASES.filter((p) => counts[p]).concat(Object.keys(counts).filter((p) => !PHASES.includes(p)));
  if (phases.length === 0) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "phases" }, phases.map((p) => h("li", { class: `phase phase-${p}` }, `${counts[p]} ${p}`)));
}

function toggle(id) {
  if (state.expanded.has(id)) state.expanded.delete(id);
  else state.expanded.add(id);
  render(); // show the change at once ("Loading…" until the details arrive)
  if (state.expanded.has(id)) pollNow();
}

// ---- workflow details ---------------------------------------------------------------------------------------

function detailRow(w, expanded, directives, taskforces, progress) {
  const id = w.workflow_id;
  const cell = h("td", { colspan: 6 });
  if (expanded && directives && taskforces) cell.append(workflowDetail(w, directives, taskforces, progress));
  else if (expanded) cell.append(h("p", { class: "muted" }, "Loading…"));
  return h("tr", { class: "detail", id: `detail-${id}`, hidden: !expanded }, cell);
}

function workflowDetail(w, directives, taskforces, progress) {
  const id = w.workflow_id;
  const tasks = new Map((progress?.tasks || []).map((t) => [t.task_id, t]));
  const active = !w.deactivated;
  const locations = [...new Set(directives.flatMap((d) => d.cluster_locations))];
  const ended = w.deactivated === "ABORTED" ? "Aborted" : "Finished";
  return h("div", { class: "wf-detail" },
    h("div", { class: "actions" },
      h("button", { type: "button", "data-key": `labels:${id}`, onclick: () => editLabels(w) }, "Edit labels…"),
      active && h("button", { type: "button", "data-key": `finish:${id}`, onclick: () => finishWorkflow(id) },
        "Finish…"),
      active && h("button", {
        type: "button", class: "danger", "data-key": `abort:${id}`, onclick: () => abortWorkflow(id),
      }, "Abort…"),
      !active && h("p", { class: "muted" }, `${ended} `, timeEl(w.deactivated_ts))),
    progress && progress.health !== "ok" && h("p", { class: `health-alert health-${progress.health}`, role: "alert" },
      h("strong", {}, `Workflow ${progress.health}: `), progress.health_reason || ""),
    directives.length === 0 && h("p", { class: "muted" }, "No tasks."),
    directives.map((d) => taskSection(d, taskforces.filter((tf) => tf.task_id === d.task_id), active, locations,
      tasks.get(d.task_id))),
  );
}

/** A <dl> of [name, value, wide?] (empty values left out; wide ones get a row of their own on phones). */
function facts(items) {
  return h("dl", { class: "facts" }, items.filter(([, v]) => v !== "" && v !== null && v !== undefined)
    .map(([k, v, wide]) => h("div", { class: wide ? "wide" : null }, h("dt", {}, k), h("dd", {}, v))));
}

function taskSection(d, taskforces, active, locations, progress) {
  const byUuid = new Map((progress?.taskforces || []).map((tf) => [tf.taskforce_uuid, tf]));
  const queues = (list) => (list.length ? list.join(", ") : "none");
  return h("section", { class: "task", "aria-label": `Task ${d.task_id}` },
    h("div", { class: "task-head" },
      h("h3", {}, "Task ", d.name && `${d.name} `, h("span", { class: "mono" }, d.task_id)),
      active && h("button", {
        type: "button", "data-key": `add:${d.task_id}`, onclick: () => addWorkers(d, locations),
      }, "Add workers…")),
    facts([
      ["Image", h("code", {}, d.task_image), true],
      ["Arguments", d.task_args && h("code", {}, d.task_args), true],
      ["Locations", d.cluster_locations.join(", ")],
      ["Input queues", queues(d.input_queue_aliases || d.input_queues)],
      ["Output queues", queues(d.output_queue_aliases || d.output_queues)],
    ]),
    progress && progressBlock(progress, `Events of task ${d.task_id}`),
    taskforces.length === 0
      ? h("p", { class: "muted" }, "No taskforces.")
      : h("div", { class: "taskforces" },
        taskforces.sort((a, b) => a.timestamp - b.timestamp)
          .map((tf) => taskforceCard(tf, byUuid.get(tf.taskforce_uuid)))),
  );
}

function taskforceCard(tf, progress) {
  const uuid = tf.taskforce_uuid;
  const log = tf.phase_change_log || [];
  const health = progress ? progress.health : "ok";
  const retriedAs = tf.retried_as || progress?.retried_as;
  return h("article", { class: `tf tf-${health}`, "aria-label": `Taskforce ${uuid}` },
    h("header", {},
      h("h4", { class: "mono" }, uuid),
      h("span", { class: `phase phase-${tf.phase}` }, tf.phase),
      progress && healthBadge(progress.health, progress.health_reason)),
    progress && progress.health !== "ok" && h("p", { class: `health-reason health-${progress.health}` },
      progress.health_reason),
    progress && progressBlock(progress, `Events of taskforce ${uuid}`),
    facts([
      ["Location", tf.cluster_location],
      ["Workers", tf.n_workers === null ? "—" : String(tf.n_workers)],
      ["Cluster id", tf.cluster_id === null ? "—" : String(tf.cluster_id)],
      ["Created", timeEl(tf.timestamp)],
      ["Run time", runTime(log)],
    ]),
    retriedAs && h("p", { class: "muted retried" }, "Retried as ", h("span", { class: "mono" }, retriedAs)),
    statusBar(tf.compound_statuses || {}),
    topErrors(tf.top_task_errors || {}),
    h("details", { class: "log", "data-key": `log:${uuid}` },
      h("summary", {}, `Phase changes (${log.length})`),
      h("ol", {}, log.map((e) => h("li", { class: e.was_successful ? null : "failed" },
        timeEl(e.timestamp), " ",
        h("strong", {}, e.target_phase),
        e.was_successful ? "" : h("span", { class: "tag" }, "failed"),
        ` by ${e.source_entity}`,
        e.context && h("span", { class: "context" }, ` — ${e.context}`))))),
    h("div", { class: "actions" },
      supports(LOGS_ROUTE) && h("button", {
        type: "button", "data-key": `logs:${uuid}`, onclick: () => showLogs(uuid),
      }, "Job logs…"),
      progress?.retryable && supports(RETRY_ROUTE) && h("button", {
        type: "button", "data-key": `retry:${uuid}`, onclick: () => retryTaskforce(tf),
      }, "Retry…")),
  );
}

/** Group `compound_statuses` ({condor status: {pilot status: n}}) into bar segments. */
function statusSegments(compound) {
  const segments = STATUS_KINDS.map((k) => ({ ...k, count: 0, parts: [] }));
  const fatal = segments[0];
  for (const [condor, all] of Object.entries(compound)) {
    const segment = segments.find((s) => s.test(condor));
    const split = segment.kind !== "held" && all[FATAL] > 0; // a held worker stays held, whatever its pilot said
    const pilots = split ? Object.fromEntries(Object.entries(all).filter(([p]) => p !== FATAL)) : all;
    if (split) {
      fatal.count += all[FATAL];
      fatal.parts.push(`${condor.toLowerCase()} ${all[FATAL]}`);
    }
    const count = Object.values(pilots).reduce((a, b) => a + b, 0);
    if (count === 0) continue;
    segment.count += count;
    // held: the reason; other: the status name; then the pilots' own statuses ("null": not reported yet)
    const name = segment.kind === "held" ? condor.replace(/^HELD:?\s*/, "") || "no reason given"
      : segment.kind === "other" ? condor : "";
    const pilotText = Object.entries(pilots).filter(([, n]) => n > 0)
      .map(([p, n]) => `${p === "null" ? "no pilot status" : p} ${n}`).join(", ");
    segment.parts.push(name ? `${name}: ${count} (${pilotText})` : pilotText);
  }
  return segments.filter((s) => s.count > 0);
}

function statusBar(compound) {
  const segments = statusSegments(compound);
  if (segments.length === 0) return h("p", { class: "muted status-none" }, "No worker statuses reported yet.");
  const summary = segments.map((s) => `${s.count} ${s.label.toLowerCase()}`).join(", ");
  const bar = h("div", { class: "bar", role: "img", "aria-label": `Workers: ${summary}` },
    segments.map((s) => {
      const seg = h("span", { class: `seg seg-${s.kind}`, title: `${s.label}: ${s.count}` }, String(s.count));
      seg.style.flexGrow = String(s.count); // widths proportional to the counts
      return seg;
    }));
  const legend = h("ul", { class: "legend" }, segments.map((s) => h("li", { class: `key-${s.kind}` },
    h("strong", {}, `${s.label} ${s.count}`),
    s.parts.length > 0 && h("span", { class: "muted" }, ` — ${s.parts.join("; ")}`))));
  return h("div", { class: "status" }, bar, legend);
}

function healthBadge(health, reason) {
  return h("span", { class: `health health-${health}`, title: reason || null }, health);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return null;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A progress bar of done, failed, in flight and waiting events (of a task or a taskforce), with rate and time left. */
function progressBlock(p, label) {
  const kinds = PROGRESS_KINDS.filter((k) => p[k.key] !== undefined);
  const counts = kinds.map((k) => ({ ...k, count: p[k.key] }));
  const known = counts.filter((c) => c.count !== null);
  const total = known.reduce((a, c) => a + c.count, 0);
  const summary = counts.map((c) => `${c.count === null ? "?" : c.count} ${c.label.toLowerCase()}`).join(", ");
  const bar = h("div", { class: "pbar", role: "img", "aria-label": `${label}: ${summary}` },
    total === 0 ? h("span", { class: "seg seg-empty" }, "no events yet") : known.filter((c) => c.count > 0).map((c) => {
      const seg = h("span", { class: `seg seg-ev-${c.key}`, title: `${c.label}: ${c.count}` }, String(c.count));
      seg.style.flexGrow = String(c.count);
      return seg;
    }));
  const left = duration(p.eta_seconds);
  const legend = h("ul", { class: "legend progress-legend" },
    counts.map((c) => h("li", { class: `key-ev-${c.key}` }, `${c.label} ${c.count === null ? "?" : c.count}`)),
    h("li", {}, `${p.rate.toFixed(2)} events/s`),
    left !== null && h("li", {}, `${left} left`));
  return h("div", { class: "status progress-block" }, bar, legend);
}

function topErrors(errors) {
  const top = Object.entries(errors).sort((a, b) => b[1] - a[1]).slice(0, 5);
  if (top.length === 0) return null;
  return h("div", { class: "errors" },
    h("h5", {}, "Top task errors"),
    h("ol", {}, top.map(([text, n]) => h("li", {}, h("span", { class: "count" }, `${n}×`), " ", h("code", {}, text)))));
}

// ---- dialogs and actions ------------------------------------------------------------------------------------

/** Open a modal dialog; on close, focus its opener again (the opener may have been re-rendered meanwhile). */
function openModal(dialog) {
  const opener = document.activeElement?.dataset?.key;
  dialog.addEventListener("close", () => {
    if (opener) document.querySelector(`[data-key="${CSS.escape(opener)}"]`)?.focus();
  }, { once: true });
  dialog.showModal();
}

/** Show the confirmation dialog; resolves to the form's FormData on confirm, null on cancel. */
function ask({ title, message, confirmLabel, danger = false, fields = [] }) {
  const dialog = $("#confirm");
  const form = $("#confirm-form");
  $("#confirm-title").textContent = title;
  $("#confirm-message").textContent = message;
  $("#confirm-fields").replaceChildren(...fields);
  $("#confirm-ok").textContent = confirmLabel;
  $("#confirm-ok").classList.toggle("danger", danger);
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      done(new FormData(form));
    };
    const onClose = () => done(null);
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    openModal(dialog);
  });
}

/** Run a confirmed action, report its outcome, and refresh at once. */
async function act(what, call, describe) {
  try {
    notify(describe(await call()));
  } catch (err) {
    showError(err, what);
  }
  pollNow();
}

async function abortWorkflow(id) {
  const ok = await ask({
    title: "Abort workflow?",
    message: `Abort ${id}? Its workers are removed and its queues are deleted. This cannot be undone.`,
    confirmLabel: "Abort workflow",
    danger: true,
  });
  if (!ok) return;
  await act(`Could not abort ${id}`, () => api("POST", `/v0/workflows/${encodeURIComponent(id)}/actions/abort`),
    (r) => `Workflow ${id} aborted; ${r.n_taskforces} taskforce(s) sent to stop.`);
}

async function finishWorkflow(id) {
  const ok = await ask({
    title: "Finish workflow?",
    message: `Mark ${id} as finished? Its workers are stopped and its queues are deleted.`,
    confirmLabel: "Finish workflow",
  });
  if (!ok) return;
  await act(`Could not finish ${id}`, () => api("POST", `/v0/workflows/${encodeURIComponent(id)}/actions/finished`),
    (r) => `Workflow ${id} finished; ${r.n_taskforces} taskforce(s) sent to stop.`);
}

async function addWorkers(directive, locations) {
  const listId = "known-locations";
  const form = await ask({
    title: "Add workers",
    message: `Start a new taskforce for task ${directive.task_id}.`,
    confirmLabel: "Add workers",
    fields: [
      h("label", { for: "aw-location" }, "Cluster location"),
      h("input", {
        id: "aw-location", name: "location", required: true, list: listId, value: directive.cluster_locations[0],
      }),
      h("datalist", { id: listId }, locations.map((l) => h("option", { value: l }))),
      h("label", { for: "aw-n" }, "Number of workers"),
      h("input", { id: "aw-n", name: "n", type: "number", min: 1, step: 1, required: true, value: 1 }),
    ],
  });
  if (!form) return;
  const body = { cluster_location: String(form.get("location")).trim(), n_workers: Number(form.get("n")) };
  await act(`Could not add workers to ${directive.task_id}`,
    () => api("POST", `/v0/task-directives/${encodeURIComponent(directive.task_id)}/actions/add-workers`, body),
    (tf) => `Taskforce ${tf.taskforce_uuid} created at ${tf.cluster_location} with ${tf.n_workers} worker(s).`);
}

async function retryTaskforce(tf) {
  const ok = await ask({
    title: "Retry taskforce?",
    message: `Start a fresh taskforce at ${tf.cluster_location} in place of ${tf.taskforce_uuid}? `
      + "Only a failed taskforce (held jobs, task errors, failed submission, or ended) can be retried; "
      + "if it still has workers, they are removed.",
    confirmLabel: "Retry taskforce",
  });
  if (!ok) return;
  try {
    const fresh = await api("POST", `/v0/taskforces/${encodeURIComponent(tf.taskforce_uuid)}/actions/retry`);
    notify(`Taskforce ${tf.taskforce_uuid} retried as ${fresh.taskforce_uuid}.`);
  } catch (err) {
    if (routeMissing(err)) {
      state.missing.add(RETRY_ROUTE);
      showError({ problem: { title: "Not supported", detail: "This WMS cannot retry taskforces yet." } });
    } else {
      showError(err, `Could not retry ${tf.taskforce_uuid}`);
    }
  }
  pollNow();
}

/** Open the log viewer on a taskforce's job logs (fetched on demand: they can be large). */
async function showLogs(uuid) {
  closeLogs();
  const logs = { uuid, timer: null };
  state.logs = logs;
  $("#logs-body").replaceChildren(); // nothing kept from another taskforce's logs
  $("#logs-status").textContent = "";
  if (!(await loadLogs(logs))) {
    if (state.logs === logs) state.logs = null;
    return;
  }
  $("#logs-title").textContent = `Job logs of ${uuid}`;
  openModal($("#logs"));
  for (const pre of $("#logs-body").querySelectorAll("pre")) pre.scrollTop = pre.scrollHeight; // tails: at their end
}

function closeLogs() {
  clearTimeout(state.logs?.timer);
  state.logs = null;
}

/** Read the logs into the viewer, again in LOG_POLL_MS while a job runs; false when the first read failed. */
async function loadLogs(logs) {
  let data;
  try {
    data = await api("GET", `/v0/taskforces/${encodeURIComponent(logs.uuid)}/logs`);
  } catch (err) {
    if (state.logs !== logs) return false;
    if (!$("#logs").open) {
      if (routeMissing(err)) {
        state.missing.add(LOGS_ROUTE);
        render();
        showError({ problem: { title: "Not supported", detail: "This WMS does not serve job logs yet." } });
      } else {
        showError(err, `Could not load the job logs of ${logs.uuid}`);
      }
      return false;
    }
    const { heading, detail } = problemParts(err);
    $("#logs-status").textContent = `Could not refresh the logs: ${heading}${detail ? ` — ${detail}` : ""}. Retrying.`;
    logs.timer = setTimeout(() => loadLogs(logs), LOG_POLL_MS);
    return true;
  }
  if (state.logs !== logs) return false; // closed (or another one opened) meanwhile
  renderLogs(data.jobs);
  const running = data.jobs.filter((j) => j.ended_ts === null).length;
  const time = new Date().toLocaleTimeString();
  $("#logs-status").textContent = running > 0 ? `Following ${running} running job(s) · updated ${time}`
    : data.jobs.length > 0 ? "All jobs ended." : "";
  if (running > 0) logs.timer = setTimeout(() => loadLogs(logs), LOG_POLL_MS);
  return true;
}

/** Replace the viewer's content, keeping what the reader set: open sections, focus, and each scroll position
(one scrolled to the bottom stays at the bottom as the output grows). */
function renderLogs(jobs) {
  const body = $("#logs-body");
  const scrollers = (root) => [root, ...root.querySelectorAll("pre[data-key]")];
  const before = new Map(scrollers(body).map((el) => [el.dataset.key, {
    top: el.scrollTop, bottom: el.scrollTop + el.clientHeight >= el.scrollHeight - 4,
  }]));
  const opened = new Map([...body.querySelectorAll("details[data-key]")].map((d) => [d.dataset.key, d.open]));
  const focused = body.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
  body.replaceChildren(jobs.length === 0
    ? h("p", { class: "muted" }, "No job has reported its output yet.")
    : h("div", {}, jobs.map(jobLog)));
  for (const d of body.querySelectorAll("details[data-key]")) {
    if (opened.has(d.dataset.key)) d.open = opened.get(d.dataset.key);
  }
  for (const el of scrollers(body)) {
    const was = before.get(el.dataset.key);
    if (was) el.scrollTop = was.bottom ? el.scrollHeight : was.top;
  }
  if (focused) body.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
}

function jobLog(job) {
  const outputs = [
    ["task-error", "Task error", job.task_error],
    ["stdout", "Standard output (tail)", job.stdout_tail],
    ["stderr", "Standard error (tail)", job.stderr_tail],
  ];
  const key = (kind) => `${kind}:${job.job_id}`;
  return h("section", { class: "job", "aria-label": `Job ${job.job_id}` },
    h("h3", {}, `Job ${job.job_id}`, job.ended_ts === null && h("span", { class: "tag running" }, "running")),
    facts([["Exit code", job.exit_code === null ? "—" : String(job.exit_code)], ["Ended", timeEl(job.ended_ts)]]),
    outputs.filter(([, , text]) => text).map(([kind, title, text], i) => h("details", {
      open: i === 0, "data-key": key(`details-${kind}`),
    }, h("summary", {}, title), h("pre", { tabindex: 0, "data-key": key(kind) }, text))));
}

// ---- labels -------------------------------------------------------------------------------------------------

/** The label editor: add, change and remove a workflow's labels; only the changes are sent (a removed label as
null), so that edits someone else made meanwhile to other labels are kept. */
function editLabels(w) {
  const dialog = $("#labels-dialog");
  const original = w.labels || {};
  $("#labels-title").textContent = `Labels of ${w.workflow_id}`;
  $("#labels-error").hidden = true;
  $("#labels-rows").replaceChildren();
  for (const [k, v] of Object.entries(original)) addLabelRow(k, v);
  if (Object.keys(original).length === 0) addLabelRow("", "");
  editLabels.current = { id: w.workflow_id, original };
  openModal(dialog);
}

function addLabelRow(key, value) {
  const row = h("li", { class: "label-row" },
    h("input", { name: "key", value: key, maxlength: 63, spellcheck: "false" }),
    h("input", { name: "value", value: value, maxlength: 256 }),
    h("button", {
      type: "button",
      onclick: () => {
        row.remove();
        numberLabelRows();
        $("#labels-add").focus();
      },
    }, "Remove"));
  $("#labels-rows").append(row);
  numberLabelRows();
  return row;
}

/** Name each row's inputs and button by its position ("Key of label 2"). */
function numberLabelRows() {
  [...$("#labels-rows").children].forEach((row, i) => {
    const [key, value, remove] = row.querySelectorAll("input, button");
    key.setAttribute("aria-label", `Key of label ${i + 1}`);
    value.setAttribute("aria-label", `Value of label ${i + 1}`);
    remove.setAttribute("aria-label", `Remove label ${i + 1}`);
  });
}

/** The edits to send: {key: new value, or null to remove}; throws a message on duplicate keys. */
function labelChanges(original) {
  const wanted = new Map();
  for (const row of $("#labels-rows").children) {
    const key = row.querySelector("[name=key]").value.trim();
    const value = row.querySelector("[name=value]").value;
    if (key === "" && value === "") continue; // an empty row
    if (wanted.has(key)) throw new Error(`The key "${key}" is given twice.`);
    wanted.set(key, value);
  }
  const changes = {};
  for (const key of Object.keys(original)) if (!wanted.has(key)) changes[key] = null;
  for (const [key, value] of wanted) if (original[key] !== value) changes[key] = value;
  return changes;
}

function labelsError(err) {
  const { heading, detail, errors } = err.problem ? problemParts(err) : { heading: err.message, errors: [] };
  const box = $("#labels-error");
  box.replaceChildren(
    h("p", { class: "error-title" }, err.problem ? `Not saved: ${heading}` : heading),
    detail && h("p", {}, detail),
    errors.length > 0 && h("ul", {}, errors.map((e) => h("li", {}, e))));
  box.hidden = false;
  box.focus();
}

async function saveLabels(event) {
  event.preventDefault();
  const { id, original } = editLabels.current;
  let changes;
  try {
    changes = labelChanges(original);
  } catch (err) {
    labelsError(err);
    return;
  }
  if (Object.keys(changes).length === 0) {
    $("#labels-dialog").close();
    notify(`Labels of ${id} unchanged.`);
    return;
  }
  const save = $("#labels-save");
  save.disabled = true;
  try {
    await api("PATCH", `/v0/workflows/${encodeURIComponent(id)}`, { labels: changes });
    $("#labels-dialog").close();
    notify(`Labels of ${id} saved.`);
    pollNow();
  } catch (err) {
    labelsError(err);
  } finally {
    save.disabled = false;
  }
}

// ---- start --------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("#token").value.trim().replace(/^Bearer\s+/i, "");
    if (!token) return;
    try {
      await signIn(token);
    } catch (err) {
      showError(err, "Sign-in failed");
      $("#token").focus();
    }
  });
  $("#signout").addEventListener("click", () => {
    signOut();
    notify("Signed out.");
  });
  $("#confirm-cancel").addEventListener("click", () => $("#confirm").close());
  $("#logs-close").addEventListener("click", () => $("#logs").close());
  $("#logs").addEventListener("close", closeLogs);
  $("#labels-form").addEventListener("submit", saveLabels);
  $("#labels-cancel").addEventListener("click", () => $("#labels-dialog").close());
  $("#labels-add").addEventListener("click", () => addLabelRow("", "").querySelector("input").focus());
  $("#page-prev").addEventListener("click", () => goToPage(-1));
  $("#page-next").addEventListener("click", () => goToPage(1));
  $("#state-filter").addEventListener("change", () => goToPage(0));
  setInterval(tickClock, CLOCK_MS);
  $("#text-filter").addEventListener("input", render);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(state.timer);
      setLive(PAUSED);
    } else {
      pollNow();
    }
  });
  // a sign-in link (`ewms dev up` prints one) carries the token in the fragment, which is never sent to a server
  const linked = new URLSearchParams(location.hash.slice(1)).get("token");
  if (linked) {
    history.replaceState(null, "", location.pathname + location.search);
    sessionStorage.setItem(TOKEN_KEY, linked);
  }
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    signIn(saved).catch((err) => {
      sessionStorage.removeItem(TOKEN_KEY);
      showError(err, "Signed out");
    });
  }
});
