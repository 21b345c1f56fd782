// The console's page: the live order list (server-sent events), one order's graph and timeline,
// the order form, dead letters and the engine (the demo's stack); any stack's state machines,
// their executions, and one execution's path and trace. Text from the server is set as text, never as HTML;
// the graph is the server's SVG.
"use strict";

const $ = (selector) => document.querySelector(selector);
const ENDED = new Set(["COMPLETED", "FAILED"]);
const SAGA_ENDED = new Set(["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]);
const MARKERS = {
  request: "→", replay: "⟳", refused: "✗", transaction: "▤", delivery: "⇢", event: "◆",
  execution: "▶", state: "→", compensation: "↩", retry: "↻", catch: "⤷", "execution-end": "■",
  status: "■", notification: "✉",
};
const OUTCOMES = {
  succeeded: "succeeded", retried: "succeeded after retries", failed: "failed",
  compensation: "compensation ran", running: "running", "not-reached": "not reached", neutral: "",
};

const view = {
  current: null, // the open order's id
  order: null, // the open order, as the API returns it
  visits: null, // the open order's state visits (input, output, errors), from its trace
  traceKey: null, // what the loaded trace saw of the order: its saga status and notifications
  traceReads: 0, // trace reads started: only the latest one's answer is shown
  selected: null, // the selected state's name
  shownAt: new Map(), // order id -> when this page first showed it ended (ms since the epoch)
  execution: null, // the open execution's name or ARN (instead of an order)
  isDemo: true, // whether the stack is the demo's (its orders, form and dead letters)
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function fill(node, ...children) {
  node.replaceChildren(...children.filter((child) => child !== null && child !== undefined));
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.hint = body && body.hint;
    error.status = response.status;
    throw error;
  }
  return body;
}

function pill(status) {
  return el("span", { class: `pill pill--${status}` }, status);
}

function age(createdAt) {
  const seconds = Math.max(0, (Date.now() - Date.parse(createdAt)) / 1000);
  if (Number.isNaN(seconds)) return "";
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

// ---- the live list
function renderOrders(orders) {
  const rows = orders.map(orderRow);
  fill(
    $("#order-list"),
    ...(rows.length ? rows : [el("li", { class: "empty" }, "no orders yet — place one above")]),
  );
}

function orderRow(order) {
  if (ENDED.has(order.status) && !view.shownAt.has(order.orderId)) {
    view.shownAt.set(order.orderId, Date.now());
  }
  const row = el("li", {
    "data-order-id": order.orderId,
    "data-status": order.status,
    "data-shown-at": view.shownAt.get(order.orderId),
    class: order.orderId === view.current ? "is-current" : null,
    title: order.orderId,
  });
  const who = [order.customerId, order.totalAmount !== undefined ? `total ${order.totalAmount}` : null]
    .filter(Boolean)
    .join(" · ");
  row.append(
    pill(order.status),
    el("span", {}, el("span", { class: "id" }, order.orderId.slice(0, 8)), el("span", { class: "who" }, who)),
    el("span", { class: "age", "data-created": order.createdAt }, age(order.createdAt)),
  );
  if (order.failureReason) row.append(el("span", { class: "reason" }, order.failureReason));
  row.addEventListener("click", () => {
    location.hash = `#/orders/${order.orderId}`;
  });
  return row;
}

function refreshAges() {
  for (const cell of document.querySelectorAll("#order-list .age")) {
    cell.textContent = age(cell.dataset.created);
  }
}

// ---- one order
function showNeutralGraph() {
  view.current = view.order = view.visits = view.selected = view.traceKey = null;
  $("#order-title").textContent = view.isDemo ? "The order saga" : "State machines";
  $("#order-meta").textContent = view.isDemo
    ? "Place an order, or pick one from the list, to see the path its saga took."
    : "Pick an execution from the list to see the path it took and its trace.";
  $("#order-status").hidden = true;
  markCurrentRow();
  markCurrentExecution();
  api("/api/graph").then((data) => {
    if (view.current === null) setGraph(data.graph);
  });
  resetPanels();
}

function resetPanels() {
  fill(
    $("#state-detail"),
    el("h2", {}, "State"),
    el("p", { class: "hint" }, "Click a state to see its input, output, errors and attempts."),
  );
  fill(
    $("#timeline"),
    el("h2", {}, "Timeline ", el("small", {}, "as sandbox trace")),
    el("p", { class: "hint" }, "Everything that happened, in time order."),
  );
}

function markCurrentRow() {
  for (const row of document.querySelectorAll("#order-list li[data-order-id]")) {
    row.classList.toggle("is-current", row.dataset.orderId === view.current);
  }
}

async function openOrder(orderId) {
  view.current = orderId;
  view.order = view.visits = view.selected = view.traceKey = null;
  markCurrentRow();
  resetPanels();
  $("#order-title").textContent = `Order ${orderId}`;
  $("#order-meta").textContent = "loading…";
  try {
    renderOrder(await api(`/api/orders/${encodeURIComponent(orderId)}`));
  } catch (error) {
    if (view.current !== orderId) return;
    $("#order-status").hidden = true;
    fill($("#graph"));
    fill(
      $("#order-meta"),
      el("span", { class: "reason" }, error.message),
      error.hint ? el("span", { class: "hint" }, ` — ${error.hint}`) : null,
    );
  }
}

function renderOrder(data) {
  if (data.orderId !== view.current) return;
  const order = (view.order = data.order);
  const status = $("#order-status");
  status.replaceWith(Object.assign(pill(order.status), { id: "order-status" }));
  const faults = order.faults ? JSON.stringify(order.faults) : null;
  const items = (order.items || []).map((item) => `${item.productId} ×${item.quantity}`).join(", ");
  const meta = [
    el("b", {}, `total ${order.totalAmount}`), ` · ${items} · customer ${order.customerId} · saga ${order.sagaStatus}`,
  ];
  if (faults) meta.push(" · faults ", el("code", {}, faults));
  if (order.failureReason) meta.push(el("br"), el("span", { class: "reason" }, order.failureReason));
  if (order.compensations && order.compensations.length) {
    meta.push(el("br"), `compensated: ${order.compensations.join(" → ")}`);
  }
  fill($("#order-meta"), ...meta);
  setGraph(data.graph, order);
  if (view.selected) selectState(view.selected);
  // The trace is read when the order opens, and again when its saga ends or a notification lands.
  const isEnded = SAGA_ENDED.has(order.sagaStatus) && order.status !== "PENDING";
  const key = isEnded ? `${order.sagaStatus}/${(order.notifications || []).length}` : "running";
  if (view.traceKey === null || (isEnded && view.traceKey !== key)) loadTrace(order.orderId, key);
}

function setGraph(svg, order) {
  const graph = $("#graph");
  graph.innerHTML = svg;
  graph.dataset.orderId = order ? order.orderId : "";
  graph.dataset.sagaStatus = order ? order.sagaStatus : "";
  for (const node of graph.querySelectorAll(".sg-node")) {
    const choose = () => selectState(node.dataset.state);
    node.addEventListener("click", choose);
    node.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") choose();
    });
  }
}

async function loadTrace(orderId, key) {
  view.traceKey = key;
  const read = ++view.traceReads;
  try {
    const data = await api(`/api/orders/${encodeURIComponent(orderId)}/trace`);
    if (view.current !== orderId || read !== view.traceReads) return;
    view.visits = data.states;
    renderTimeline(data.trace);
    if (view.selected) selectState(view.selected);
  } catch (error) {
    if (view.current !== orderId || read !== view.traceReads) return;
    fill($("#timeline"), el("h2", {}, "Timeline"), el("p", { class: "reason" }, error.message));
  }
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function selectState(name) {
  view.selected = name;
  let node = null;
  for (const candidate of document.querySelectorAll("#graph .sg-node")) {
    candidate.classList.toggle("is-selected", candidate.dataset.state === name);
    if (candidate.dataset.state === name) node = candidate;
  }
  const panel = $("#state-detail");
  const facts = el("dl");
  const fact = (term, value) => facts.append(el("dt", {}, term), el("dd", {}, value));
  if (node) {
    const outcome = node.dataset.outcome;
    fact("outcome", OUTCOMES[outcome] ?? outcome);
    if (Number(node.dataset.attempts)) fact("attempts", node.dataset.attempts);
    if (Number(node.dataset.sequence)) fact("step of the path", node.dataset.sequence);
  }
  const parts = [el("h2", {}, `State · ${name}`), facts];
  if (view.visits === null) {
    parts.push(el("p", { class: "hint" }, "reading its input and output…"));
  } else {
    const visits = view.visits.filter((visit) => visit.name === name);
    if (!visits.length) parts.push(el("p", { class: "hint" }, "This order never entered this state."));
    for (const visit of visits) parts.push(visitDetail(visit));
  }
  fill(panel, ...parts);
}

function visitDetail(visit) {
  const box = el("div", { class: "visit" });
  const times = el("dl");
  times.append(el("dt", {}, "entered"), el("dd", {}, visit.enteredAt));
  if (visit.exitedAt) times.append(el("dt", {}, "exited"), el("dd", {}, visit.exitedAt));
  if (visit.attempts) times.append(el("dt", {}, "invocations"), el("dd", {}, String(visit.attempts)));
  box.append(times);
  for (const fault of visit.injected || []) {
    box.append(el("p", { class: "injected" },
      `⚡ attempt ${fault.number}: injected ${fault.kind} by fault rule ${fault.rule} (on ${fault.target})`));
  }
  for (const [index, failure] of visit.errors.entries()) {
    const cause = failure.cause && failure.cause.errorMessage ? failure.cause.errorMessage : pretty(failure.cause || "");
    box.append(el("h3", {}, `error ${index + 1}: ${failure.error}`), el("pre", {}, cause));
  }
  if (visit.result !== null) box.append(el("h3", {}, "task result"), el("pre", {}, pretty(visit.result)));
  if (visit.logLines && visit.logLines.length) {
    const text = visit.logLines.map((line) => `${line.level.padEnd(8)} ${line.message}`).join("\n");
    box.append(el("h3", {}, "function log lines"), el("pre", { class: "logs" }, text));
  }
  const data = el("div", { class: "visit-data" });
  const folded = (title, value) =>
    el("details", {}, el("summary", {}, title), el("pre", {}, pretty(value)));
  data.append(folded("input", visit.input));
  if (visit.output !== null) data.append(folded("output", visit.output));
  box.append(data);
  return box;
}

function renderTimeline(trace) {
  const started = trace.startedAt ? Date.parse(trace.startedAt) : null;
  const table = el("table", { class: "timeline" });
  for (const entry of trace.entries) {
    const offset = started === null ? "" : `+${Date.parse(entry.at) - started} ms`;
    table.append(
      el(
        "tr",
        { class: `kind-${entry.kind}`, "data-kind": entry.kind, "data-name": entry.name },
        el("td", { class: "at" }, offset),
        el("td", { class: "src" }, el("span", { class: `src-tag src-${entry.source}` }, entry.source)),
        el("td", { class: "what" }, `${MARKERS[entry.kind] || "·"} ${entry.name}`),
        el("td", { class: `st-${entry.status || ""}` }, entry.status || ""),
        el("td", { class: "took" }, entry.durationMs !== undefined ? `${entry.durationMs} ms` : ""),
        el("td", { class: "detail" }, entry.detail),
      ),
    );
  }
  const heading = el("h2", {}, "Timeline ", el("small", {}, `as sandbox trace — ${trace.durationMs ?? 0} ms in all`));
  const notes = trace.notes.length ? el("ul", { class: "notes" }, ...trace.notes.map((note) => el("li", {}, note))) : null;
  fill($("#timeline"), heading, table, notes);
}

// ---- placing an order
async function placeOrder(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const flakyStep = form.get("flakyStep");
  const body = {
    customer: form.get("customer"),
    items: form.get("items"),
    fail: form.get("fail"),
    flaky: flakyStep ? `${flakyStep}:${form.get("flakyAttempts")}` : "",
    timeout: form.get("timeout"),
    hang: form.get("hang"),
    duplicateDelivery: form.get("duplicateDelivery") !== null,
    crash: form.get("crash") !== null,
    poison: form.get("poison") !== null,
    idempotencyKey: form.get("idempotencyKey"),
  };
  const button = $("#place-button");
  const result = $("#place-result");
  button.disabled = true;
  result.classList.remove("is-error");
  result.removeAttribute("data-order-id");
  try {
    const placed = await api("/api/orders", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const link = el("a", { href: `#/orders/${placed.orderId}` }, placed.orderId.slice(0, 8));
    const replayed = placed.replayed ? " (replayed: the first response for this key)" : "";
    fill(result, "order ", link, ` accepted, total ${placed.totalAmount}${replayed}`);
    result.dataset.orderId = placed.orderId;
    location.hash = `#/orders/${placed.orderId}`;
  } catch (error) {
    result.classList.add("is-error");
    fill(result, error.message, error.hint ? el("span", { class: "hint" }, ` — ${error.hint}`) : null);
  } finally {
    button.disabled = false;
  }
}

// ---- dead letters and the engine
async function loadDeadLetters() {
  const body = $("#dlq-body");
  const button = $("#dlq-redrive");
  try {
    const { deadLetters } = await api("/api/dead-letters");
    button.hidden = deadLetters.length === 0;
    if (!deadLetters.length) {
      fill(body, "The outbox's on-failure queue is empty.");
      return;
    }
    fill(
      body,
      ...deadLetters.map((letter) =>
        el("p", {}, el("b", {}, letter.orderIds.map((id) => id.slice(0, 8)).join(", ")), ` — ${letter.condition}, ${letter.failedAt}`),
      ),
    );
  } catch (error) {
    fill(body, el("span", { class: "reason" }, error.message));
  }
}

async function redriveLetters() {
  const button = $("#dlq-redrive");
  button.disabled = true;
  try {
    const { redriven } = await api("/api/dead-letters/redrive", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    const resent = redriven.flatMap((item) => item.resent);
    await loadDeadLetters();
    $("#dlq-body").prepend(el("p", {}, resent.length ? `resent ${resent.length} record(s)` : "nothing left to resend"));
  } catch (error) {
    $("#dlq-body").prepend(el("p", { class: "reason" }, error.message));
  } finally {
    button.disabled = false;
  }
}

async function loadStatus() {
  const body = $("#engine-body");
  const fact = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
  try {
    const status = await api("/api/status");
    fill(
      body,
      ...fact("engine", `${status.engine.name} on ${status.engine.endpoint}`),
      ...fact("up for", `${status.engine.uptimeSeconds} s`),
      ...fact("stack", `${status.stack.name} (${status.stack.region})`),
      ...fact("console", `pid ${status.console.pid}, ${status.console.memoryMiB} MiB`),
    );
  } catch (error) {
    fill(body, ...fact("engine", error.message), ...(error.hint ? fact("fix", error.hint) : []));
  }
}

function renderEngineProblem(problem) {
  const chip = $("#engine-chip");
  chip.hidden = problem.ok;
  chip.className = "chip chip--down";
  chip.textContent = problem.ok ? "" : `engine: ${problem.message}`;
  if (!problem.ok) chip.title = problem.hint || "";
}

// ---- wiring
function connect() {
  const live = $("#live");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    live.className = "chip chip--live";
    live.textContent = "live";
  });
  source.addEventListener("error", () => {
    live.className = "chip chip--wait";
    live.textContent = "reconnecting…";
  });
  source.addEventListener("orders", (event) => renderOrders(JSON.parse(event.data)));
  source.addEventListener("order", (event) => {
    const data = JSON.parse(event.data);
    if (data.orderId === view.current) renderOrder(data);
  });
  source.addEventListener("engine", (event) => {
    const problem = JSON.parse(event.data);
    renderEngineProblem(problem);
    if (problem.ok) loadStatus();
  });
}

function route() {
  const match = location.hash.match(/^#\/orders\/([^/]+)$/);
  const execution = location.hash.match(/^#\/executions\/(.+)$/);
  const machine = location.hash.match(/^#\/machines\/(.+)$/);
  view.execution = null;
  if (match) openOrder(decodeURIComponent(match[1]));
  else if (execution) openExecution(decodeURIComponent(execution[1]));
  else if (machine) openMachine(decodeURIComponent(machine[1]));
  else showNeutralGraph();
}

// ---- any state machine of the stack, and its executions
async function loadMachines() {
  const box = $("#machine-list");
  try {
    const data = await api("/api/state-machines");
    view.isDemo = data.isDemo;
    for (const id of ["#place", "#orders", "#dead-letters"]) $(id).hidden = !data.isDemo;
    if (!data.isDemo && view.current === null && view.execution === null) {
      $("#order-title").textContent = "State machines";
      $("#order-meta").textContent = "Pick an execution from the list to see the path it took and its trace.";
    }
    if (!data.stateMachines.length) {
      fill(box, el("p", { class: "hint" }, "This stack has no state machine."));
      return;
    }
    const parts = [];
    for (const machine of data.stateMachines) {
      const label = machine.logicalId || machine.name;
      const listed = await api(`/api/state-machines/${encodeURIComponent(machine.arn)}/executions`);
      const list = el("ol", { class: "execution-list" });
      for (const execution of listed.executions) {
        const row = el(
          "li",
          { "data-execution": execution.executionArn, title: execution.executionArn },
          el("span", { class: "id" }, execution.name),
          pill(execution.status),
          execution.redriveCount ? el("span", { class: "redriven", title: "redriven (RedriveExecution)" }, `⟳ ${execution.redriveCount}`) : null,
        );
        row.addEventListener("click", () => {
          location.hash = `#/executions/${encodeURIComponent(execution.executionArn)}`;
        });
        list.append(row);
      }
      if (!listed.executions.length) list.append(el("li", { class: "empty" }, "no executions yet"));
      const link = el("a", { href: `#/machines/${encodeURIComponent(machine.arn)}` }, label);
      parts.push(el("div", { class: "machine", "data-machine": label }, el("h3", {}, link, " ", el("small", {}, machine.name)), list));
    }
    fill(box, ...parts);
    markCurrentExecution();
  } catch (error) {
    fill(box, el("p", { class: "reason" }, error.message));
  }
}

function markCurrentExecution() {
  for (const row of document.querySelectorAll("#machine-list li[data-execution]")) {
    row.classList.toggle("is-current", row.dataset.execution === view.execution);
  }
}

async function openMachine(ref) {
  view.current = view.order = view.visits = view.selected = view.traceKey = null;
  markCurrentRow();
  resetPanels();
  $("#order-status").hidden = true;
  try {
    const data = await api(`/api/state-machines/${encodeURIComponent(ref)}`);
    $("#order-title").textContent = data.stateMachine.logicalId || data.stateMachine.name;
    $("#order-meta").textContent = data.stateMachine.arn;
    setGraph(data.graph);
  } catch (error) {
    fill($("#order-meta"), el("span", { class: "reason" }, error.message));
  }
}

async function openExecution(ref) {
  view.current = view.order = view.selected = view.traceKey = null;
  view.visits = null;
  view.execution = ref;
  markCurrentRow();
  markCurrentExecution();
  resetPanels();
  $("#order-title").textContent = "Execution";
  $("#order-meta").textContent = "loading…";
  try {
    const data = await api(`/api/executions/${encodeURIComponent(ref)}`);
    if (view.execution !== ref) return;
    const trace = data.trace;
    $("#order-title").textContent = `Execution ${trace.name}`;
    const status = $("#order-status");
    status.replaceWith(Object.assign(pill(trace.status), { id: "order-status" }));
    const meta = [`${trace.stateMachine} · ${trace.durationMs ?? "?"} ms`];
    if (trace.error) meta.push(el("br"), el("span", { class: "reason" }, `${trace.error}: ${trace.cause || ""}`));
    if (trace.compensations.length) meta.push(el("br"), `compensation: ${trace.compensations.join(" → ")}`);
    if (trace.redriveCount) meta.push(el("br"), `redriven ${trace.redriveCount} time${trace.redriveCount > 1 ? "s" : ""}`);
    fill($("#order-meta"), ...meta);
    view.visits = trace.states.map(executionVisit);
    setGraph(data.graph);
    renderExecutionTimeline(trace);
  } catch (error) {
    if (view.execution !== ref) return;
    fill($("#graph"));
    fill($("#order-meta"), el("span", { class: "reason" }, error.message),
      error.hint ? el("span", { class: "hint" }, ` — ${error.hint}`) : null);
  }
}

function executionVisit(state) {
  // The state detail panel's shape (as an order's visits): its attempts' errors and the last result.
  return {
    name: state.name,
    enteredAt: state.enteredAt,
    exitedAt: state.exitedAt,
    attempts: state.attempts.length,
    errors: state.attempts.filter((a) => a.error).map((a) => ({ error: a.error, cause: parseCause(a.cause) })),
    injected: state.attempts.filter((a) => a.injectedFault).map((a) => ({ number: a.number, ...a.injectedFault })),
    result: null,
    input: state.input,
    output: state.output,
    logLines: state.attempts.flatMap((a) => a.logLines.filter((line) => line.level !== "PLATFORM")),
  };
}

function parseCause(cause) {
  try {
    return JSON.parse(cause);
  } catch {
    return cause;
  }
}

function renderExecutionTimeline(trace) {
  const started = Date.parse(trace.startedAt);
  const table = el("table", { class: "timeline" });
  let redrive = 0;
  for (const state of trace.states) {
    if ((state.redrive || 0) !== redrive) {
      redrive = state.redrive || 0;
      // Where RedriveExecution restarted the execution: the states below ran in that redrive.
      table.append(el("tr", { class: "kind-redrive", "data-kind": "redrive" },
        el("td", { class: "at" }, ""), el("td", { class: "src" }, el("span", { class: "src-tag" }, "Redrive")),
        el("td", { class: "what", colspan: "4" }, `⟳ redrive ${redrive}: restarted at the state it had not completed`)));
    }
    const marker = state.isCompensation ? "↩" : state.status === "FAILED" ? "✗" : "→";
    const details = [];
    if (state.attempts.length > 1) details.push(`${state.attempts.length} attempts`);
    for (const attempt of state.attempts) {
      if (attempt.error) details.push(`attempt ${attempt.number}: ${attempt.error}`);
      if (attempt.heldInDebuggerSeconds != null) {
        details.push(`⏸ held in debugger ${attempt.heldInDebuggerSeconds.toFixed(1)} s on attempt ${attempt.number}`);
      }
      if (attempt.injectedFault) {
        details.push(`⚡ injected ${attempt.injectedFault.kind} (rule ${attempt.injectedFault.rule}) on attempt ${attempt.number}`);
      }
    }
    if (state.catch) details.push(`Catch ${state.catch.error || "error"} → ${state.catch.next}`);
    if (state.function) details.push(state.function);
    table.append(
      el(
        "tr",
        { class: `kind-${state.isCompensation ? "compensation" : "state"}`, "data-kind": "state", "data-name": state.name },
        el("td", { class: "at" }, `+${Date.parse(state.enteredAt) - started} ms`),
        el("td", { class: "src" }, el("span", { class: "src-tag" }, state.type)),
        el("td", { class: "what" }, `${"  ".repeat(state.depth)}${marker} ${state.name}`),
        el("td", { class: `st-${state.status}` }, state.status),
        el("td", { class: "took" }, state.durationMs !== null ? `${state.durationMs} ms` : ""),
        el("td", { class: "detail" }, details.join("; ")),
      ),
    );
  }
  const heading = el("h2", {}, "Trace ", el("small", {}, "as sandbox trace"));
  const notes = trace.notes.length ? el("ul", { class: "notes" }, ...trace.notes.map((note) => el("li", {}, note))) : null;
  fill($("#timeline"), heading, table, notes);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#place-form").addEventListener("submit", placeOrder);
  $("#dlq-refresh").addEventListener("click", loadDeadLetters);
  $("#dlq-redrive").addEventListener("click", redriveLetters);
  $("#engine-refresh").addEventListener("click", loadStatus);
  $("#machines-refresh").addEventListener("click", loadMachines);
  window.addEventListener("hashchange", route);
  connect();
  route();
  loadMachines();
  loadDeadLetters();
  loadStatus();
  setInterval(refreshAges, 5000);
});
