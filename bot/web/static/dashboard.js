// Conductor-E dashboard: fetches its data from dashboard/api/*, follows dashboard/events (SSE)
// and re-fetches only what an event touches, debounced. Read-only; no framework, no build step.

const API = "dashboard/api/";
const DEBOUNCE_MS = 250;
const ALL_TOPICS = ["board", "agents", "spend", "runs", "health"];
// Time passes even when no event comes: stuck and stale marks, "done today", the spend day.
const PERIODIC = { board: 30_000, agents: 30_000, health: 30_000, spend: 300_000, runs: 300_000 };

const state = {
  skewMs: 0, // server clock minus browser clock, so durations use the server's now
  shown: new Map(), // column key -> number of cards shown (grows with "show more")
  seq: new Map(), // topic -> sequence of the latest request, so a late answer is dropped
  pending: new Set(),
  timer: null,
};

window.__dashboard = { loadedAt: Date.now(), refreshes: 0 };

// --- helpers ---------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function now() {
  return Date.now() + state.skewMs;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function ago(iso) {
  return iso ? `${duration(now() - Date.parse(iso))} ago` : "never";
}

function usd(value) {
  const n = Number(value || 0);
  if (n !== 0 && Math.abs(n) < 0.01) return `$${n.toFixed(4)}`;
  return `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

function ticking(iso, format) {
  // A <time> whose text is refreshed by the ticker below, from the server's clock.
  const node = el("time", { datetime: iso, title: new Date(iso).toLocaleString() });
  node.dataset.format = format;
  node.textContent = format === "ago" ? ago(iso) : duration(now() - Date.parse(iso));
  return node;
}

function tick() {
  for (const node of document.querySelectorAll("time[data-format]")) {
    const iso = node.getAttribute("datetime");
    node.textContent =
      node.dataset.format === "ago" ? ago(iso) : duration(now() - Date.parse(iso));
  }
}

async function getJSON(path, topic) {
  const seq = (state.seq.get(topic) || 0) + 1;
  state.seq.set(topic, seq);
  const response = await fetch(API + path, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) {
    window.location.reload(); // the session ended: show the login form
    return null;
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  const body = await response.json();
  if (state.seq.get(topic) !== seq) return null; // a newer request is under way
  if (body.now) state.skewMs = Date.parse(body.now) - Date.now();
  return body;
}

// --- the board -------------------------------------------------------------------------------

// The agent runtime's last execution log on the issue: its status, who ran it, with what.
function runBadge(run) {
  const tone = { failed: "badge bad", running: "badge warn" }[run.status] || "badge";
  const who = [run.agent, run.model].filter(Boolean).join(" · ");
  return el("span", {
    class: `${tone} run`,
    title: `last run${who ? ` (${who})` : ""}: ${run.steps} steps`,
    text: `run ${run.status}`,
  });
}

function card(c) {
  const classes = ["card", `prio-${c.priority}`];
  if (c.stuck) classes.push("stuck");
  if (c.unroutable) classes.push("unroutable");
  const meta = el("div", { class: "card-meta" });
  if (c.agent) meta.append(el("span", { class: "agent", title: "agent", text: c.agent }));
  if (c.route) meta.append(el("span", { class: "route", title: "route", text: c.route }));
  if (c.attempt > 0) meta.append(el("span", { title: "attempt", text: `attempt ${c.attempt}` }));
  meta.append(el("span", { title: "time in this state" }, ticking(c.stateSince, "duration")));
  if (c.prNumber) meta.append(el("span", { title: "pull request", text: `PR #${c.prNumber}` }));
  if (c.gate) meta.append(el("span", { class: "gate", title: c.gate, text: c.gate.startsWith("merge blocked") ? "merge blocked" : c.gate.split(":")[0] }));
  if (c.escalated) meta.append(el("span", { class: "badge bad", text: "escalated" }));
  if (c.humanGate) meta.append(el("span", { class: "badge warn", text: "human gate" }));
  if (c.held) meta.append(el("span", { class: "badge warn", text: "held" }));
  if (c.lastRun) meta.append(runBadge(c.lastRun));
  return el(
    "article",
    { class: classes.join(" "), dataset: { stream: c.streamId, state: c.state } },
    el(
      "div",
      { class: "card-head" },
      el("a", { href: c.url, target: "_blank", rel: "noopener", text: `${c.repo}#${c.issueNumber}` }),
      c.priority !== "normal" ? el("span", { class: "prio", text: c.priority }) : null,
    ),
    el("div", { class: c.title ? "card-title" : "card-title untitled", text: c.title || "untitled" }),
    meta,
    c.stuck ? el("div", { class: "stuck-reason", text: `⚠ stuck: ${c.stuckReason}` }) : null,
    c.unroutable ? el("div", { class: "unroutable-reason", text: `🚫 ${c.unroutable}` }) : null,
    c.held
      ? el("div", {
          class: "held-reason",
          text: `⏸ held by ${c.heldBy || "someone"}${c.heldReason ? `: ${c.heldReason}` : ""}`,
        })
      : null,
  );
}

function renderColumn(column, cards) {
  let section = document.querySelector(`.column[data-column="${column.key}"]`);
  if (!section) {
    section = el(
      "section",
      { class: "column", dataset: { column: column.key }, "aria-label": column.title },
      el(
        "div",
        { class: "column-head" },
        el("h3", { text: column.title }),
        el("span", { class: "stuck-count" }),
        el("span", { class: "count" }),
      ),
      el("div", { class: "cards" }),
    );
    document.getElementById("board").append(section);
  }
  section.querySelector(".count").textContent = column.total.toLocaleString("en-US");
  const stuck = cards.filter((c) => c.stuck).length;
  section.querySelector(".stuck-count").textContent = stuck ? `${stuck} stuck` : "";
  const list = section.querySelector(".cards");
  const fragment = document.createDocumentFragment();
  for (const c of cards) fragment.append(card(c));
  if (!cards.length) fragment.append(el("p", { class: "empty", text: "nothing here" }));
  list.replaceChildren(fragment);
  section.dataset.shown = String(cards.length);
  section.querySelector(".more")?.remove();
  if (cards.length < column.total) {
    const more = el("button", {
      class: "more",
      type: "button",
      text: `show more (${(column.total - cards.length).toLocaleString("en-US")} left)`,
    });
    more.addEventListener("click", () => showMore(column.key, cards.length));
    section.append(more);
  }
  state.shown.set(column.key, cards.length);
}

async function showMore(key, offset) {
  const body = await getJSON(`board?state=${key}&offset=${offset}&limit=50`, `column:${key}`);
  if (!body) return;
  const column = body.columns[0];
  const section = document.querySelector(`.column[data-column="${key}"]`);
  const list = section.querySelector(".cards");
  // Keep what is shown and add the next page under it.
  const shown = [...list.querySelectorAll(".card")].length;
  if (shown !== offset) return refresh(["board"]);
  for (const c of column.cards) list.append(card(c));
  const total = shown + column.cards.length;
  section.dataset.shown = String(total);
  state.shown.set(key, total);
  section.querySelector(".more")?.remove();
  if (total < column.total) {
    const more = el("button", {
      class: "more",
      type: "button",
      text: `show more (${(column.total - total).toLocaleString("en-US")} left)`,
    });
    more.addEventListener("click", () => showMore(key, total));
    section.append(more);
  }
}

async function loadBoard() {
  const body = await getJSON("board", "board");
  if (!body) return;
  const extra = [];
  for (const column of body.columns) {
    const shown = state.shown.get(column.key) || 0;
    if (shown > column.cards.length && column.total > column.cards.length) {
      // The person paged this column further: keep as many cards (up to 200) in view.
      extra.push(
        getJSON(`board?state=${column.key}&limit=${Math.min(shown, 200)}`, `column:${column.key}`)
          .then((more) => more && renderColumn(more.columns[0], more.columns[0].cards)),
      );
    }
    renderColumn(column, column.cards);
  }
  await Promise.all(extra);
  const totals = Object.fromEntries(body.columns.map((c) => [c.key, c.total]));
  const stuck = body.columns.reduce((n, c) => n + c.stuck, 0);
  const unroutable = body.columns.reduce((n, c) => n + (c.unroutable || 0), 0);
  const broken = body.brokenConfigs || [];
  const summary = document.getElementById("summary");
  summary.replaceChildren(
    el("span", {}, el("b", { text: totals.queued.toLocaleString("en-US") }), " queued"),
    el(
      "span",
      {},
      el("b", { text: (totals.assigned + totals.in_progress + totals.in_review).toLocaleString("en-US") }),
      " in flight",
    ),
    el("span", {}, el("b", { text: totals.done.toLocaleString("en-US") }), " done today"),
    el("span", { class: totals.failed ? "alert" : "" }, el("b", { text: totals.failed }), " failed"),
    el("span", { class: stuck ? "alert" : "" }, el("b", { text: stuck }), " stuck"),
    ...(unroutable ? [el("span", { class: "alert" }, el("b", { text: unroutable }), " no agent can take")] : []),
    ...broken.map((b) =>
      el("span", { class: "alert broken-config", title: b.error, text: `⚠ ${b.repo}: broken .rig-agent.yaml (${b.error})` }),
    ),
  );
}

// --- agents, spend, runs, health ---------------------------------------------------------------

async function loadAgents() {
  const body = await getJSON("agents", "agents");
  if (!body) return;
  const rows = body.agents.map((a) =>
    el(
      "tr",
      { class: a.stale ? "stale" : "", dataset: { agent: a.agentId } },
      el("td", {}, el("span", { class: "agent-name", text: a.agentId })),
      el(
        "td",
        {},
        el("span", { class: `status ${a.status}`, text: a.status }),
        a.paused
          ? el("span", {
              class: "badge warn",
              title: a.pausedReason || "",
              text: `paused by ${a.pausedBy || "someone"}`,
            })
          : null,
      ),
      el("td", { text: a.currentIssue || "—" }),
      el("td", {}, a.lastHeartbeat ? ticking(a.lastHeartbeat, "ago") : "never"),
    ),
  );
  document.getElementById("agents").replaceChildren(...rows);
  document.getElementById("agents-empty").hidden = rows.length > 0;
}

function spendChart(agent, days, scaleMax) {
  const width = 300;
  const height = 56;
  const gap = 2;
  const barWidth = width / days.length - gap;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `${agent.agentId}: spend per day over ${days.length} days`,
  });
  const y = (v) => height - 2 - (Number(v) / scaleMax) * (height - 6);
  chart.append(svg("line", { class: "axis", x1: 0, x2: width, y1: height - 1, y2: height - 1 }));
  agent.dailyUsd.forEach((value, i) => {
    const v = Number(value);
    const top = y(v);
    const over = agent.budgetUsd !== null && v > Number(agent.budgetUsd);
    const bar = svg("rect", {
      class: `bar${i === days.length - 1 ? " today" : ""}${over ? " over" : ""}`,
      x: i * (barWidth + gap),
      y: top,
      width: barWidth,
      height: Math.max(v > 0 ? 1 : 0, height - 2 - top),
    });
    const title = svg("title", {});
    title.textContent = `${days[i]}: ${usd(v)}`;
    bar.append(title);
    chart.append(bar);
  });
  if (agent.budgetUsd !== null) {
    const line = svg("line", { class: "budget", x1: 0, x2: width, y1: y(agent.budgetUsd), y2: y(agent.budgetUsd) });
    const title = svg("title", {});
    title.textContent = `daily budget ${usd(agent.budgetUsd)}`;
    line.append(title);
    chart.append(line);
  }
  return chart;
}

// What a figure rests on: our price, or the agent's own reported cost where a model has none.
const BASIS = { priced: "priced", reported: "reported (no price)", "partly priced": "partly priced", unknown: "cost unknown" };

function modelLine(m) {
  // One model of an agent: our figure, and how far the agent's own report is from it.
  const name = m.model || "no model named";
  const unpriced = m.unpricedModel ? " (unpriced model)" : "";
  let reported = "";
  if (m.differencePct !== null) {
    const pct = `${m.differencePct > 0 ? "+" : ""}${m.differencePct.toFixed(1)}%`;
    reported = ` · reported ${usd(m.reportedUsd)} (${pct})`;
  }
  const cost = m.costUsd === null ? "cost unknown" : `${usd(m.costUsd)} ${BASIS[m.basis] || m.basis}`;
  return el(
    "li",
    { class: m.mismatch ? "mismatch" : "", dataset: { model: m.model } },
    el("span", { class: "model", text: `${name}${unpriced}` }),
    ` ${cost}${reported}`,
  );
}

async function loadSpend() {
  const body = await getJSON("spend", "spend");
  if (!body) return;
  document.getElementById("spend-totals").replaceChildren(
    el("div", {}, el("b", { text: usd(body.todayUsd) }), "today"),
    el("div", {}, el("b", { text: usd(body.totalUsd) }), `last ${body.days.length} days`),
    el("div", { class: "sources", text: `priced by ${body.priceSources.join(" + ") || "no price"}` }),
  );
  // One scale for every agent, so the bars compare across rows; budgets stay in view.
  let scaleMax = 0;
  for (const a of body.agents) {
    for (const v of a.dailyUsd) scaleMax = Math.max(scaleMax, Number(v));
    if (a.budgetUsd !== null) scaleMax = Math.max(scaleMax, Number(a.budgetUsd));
  }
  scaleMax = scaleMax > 0 ? scaleMax * 1.1 : 1;
  const rows = body.agents.map((a) => {
    const budget = a.budgetUsd !== null ? ` of ${usd(a.budgetUsd)}` : "";
    return el(
      "div",
      { class: "spend-row", dataset: { agent: a.agentId } },
      el(
        "div",
        { class: "spend-label" },
        el("span", { class: "name", text: a.agentId }),
        el("span", { class: a.overBudget ? "over" : "", text: `${usd(a.todayUsd)}${budget} today` }),
        el("span", { class: "basis", text: `${usd(a.totalUsd)} ${BASIS[a.basis] || a.basis}` }),
      ),
      spendChart(a, body.days, scaleMax),
      el("ul", { class: "spend-models" }, ...a.models.map(modelLine)),
    );
  });
  if (rows.length) {
    rows.push(
      el(
        "div",
        { class: "spend-scale" },
        el("span", { text: body.days[0] }),
        el("span", { text: `max ${usd(scaleMax / 1.1)}/day` }),
        el("span", { text: "today" }),
      ),
    );
  }
  document.getElementById("spend").replaceChildren(...rows);
  document.getElementById("spend-empty").hidden = body.agents.length > 0;
}

const RUN_LABELS = {
  durationMs: (v) => ["took", `${(v / 1000).toFixed(1)}s`],
  queueDepth: (v) => ["queue", v],
  githubFound: (v) => ["found", v],
  approved: (v) => ["approved", v],
  withdrawn: (v) => ["withdrawn", v],
  stuck: (v) => ["stuck", v],
  requeued: (v) => ["requeued", v],
  escalated: (v) => ["escalated", v],
  appended: (v) => ["appended", v],
  summary: (v) => ["summary", v],
  costUsd: (v) => ["cost", usd(v)],
};

async function loadRuns() {
  const body = await getJSON("runs", "runs");
  if (!body) return;
  const items = body.runs.map((run) => {
    const facts = el("div", { class: "facts" });
    for (const [key, value] of Object.entries(run.fields)) {
      const label = RUN_LABELS[key];
      if (!label || value === 0 || value === "") continue;
      const [name, shown] = label(value);
      facts.append(el("span", {}, `${name} `, el("b", { text: shown }), " · "));
    }
    facts.lastChild?.lastChild?.remove?.();
    return el(
      "li",
      { dataset: { position: run.position, outcome: run.outcome } },
      el("div", { class: "when" }, ticking(run.recordedAt, "ago")),
      el(
        "div",
        {},
        el("span", { class: `outcome ${run.outcome}`, text: run.outcome }),
        facts,
        ...run.errors.slice(0, 3).map((e) => el("div", { class: "error", text: e })),
      ),
    );
  });
  document.getElementById("runs").replaceChildren(...items);
  document.getElementById("runs-empty").hidden = items.length > 0;
}

async function loadHealth() {
  const body = await getJSON("health", "health");
  if (!body) return;
  document.getElementById("health").replaceChildren(
    ...body.components.map((c) =>
      el(
        "li",
        {
          class: `${c.status}${c.critical ? " critical" : ""}`,
          title: c.detail,
          dataset: { component: c.name },
        },
        el("span", { text: c.name }),
        el("span", { class: "latency", text: c.status === "up" ? `${Math.round(c.latencyMs)} ms` : c.detail }),
      ),
    ),
  );
}

const LOADERS = { board: loadBoard, agents: loadAgents, spend: loadSpend, runs: loadRuns, health: loadHealth };

async function refresh(topics) {
  await Promise.all(
    topics.map((topic) =>
      LOADERS[topic]().catch((error) => console.warn(`dashboard: ${topic}:`, error)),
    ),
  );
  window.__dashboard.refreshes += 1;
}

function schedule(topics) {
  for (const topic of topics) if (LOADERS[topic]) state.pending.add(topic);
  if (state.timer !== null || !state.pending.size) return;
  state.timer = setTimeout(() => {
    state.timer = null;
    const due = [...state.pending];
    state.pending.clear();
    refresh(due);
  }, DEBOUNCE_MS);
}

// --- live updates ----------------------------------------------------------------------------

function setLive(value, label) {
  const live = document.getElementById("live");
  live.dataset.state = value;
  live.querySelector(".label").textContent = label;
}

function follow() {
  const source = new EventSource("dashboard/events");
  source.addEventListener("open", () => setLive("live", "live"));
  source.addEventListener("hello", () => {
    // A (re)connection: whatever was missed has just been replayed, but time moved too.
    setLive("live", "live");
    schedule(ALL_TOPICS);
  });
  source.addEventListener("change", (message) => {
    const change = JSON.parse(message.data);
    schedule(change.topics);
  });
  source.addEventListener("resync", () => schedule(ALL_TOPICS));
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (after the server's retry: delay) unless closed.
    if (source.readyState === EventSource.CLOSED) {
      setLive("down", "disconnected: retrying");
      setTimeout(follow, 5_000);
    } else {
      setLive("connecting", "reconnecting…");
    }
  });
}

async function start() {
  await refresh(ALL_TOPICS);
  follow();
  for (const [topic, every] of Object.entries(PERIODIC)) setInterval(() => schedule([topic]), every);
  setInterval(tick, 5_000);
}

start();
