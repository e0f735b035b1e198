// The ai-api dashboard: reads /usage, /usage/hours and /usage/requests, then follows
// /usage/requests/stream (requests as they end, today's usage every few seconds).
"use strict";

const KEY = "ai-api-key";
const COLORS = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
const seen = new Set();
let hours = new Map(); // hour start (s) -> provider -> {requests, errors, tokens}
let providers = [];

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
};

function headers() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function get(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    throw Object.assign(new Error(body.error ? body.error.message : "refused"), { auth: true });
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function askForKey(message) {
  $("main").hidden = true;
  $("key-form").hidden = false;
  $("status").textContent = "needs a key";
  const error = $("key-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  start();
});

const time = (s) => new Date(s * 1000).toISOString().slice(11, 19);
const num = (n) => (n == null ? "?" : Math.round(n).toLocaleString("en"));
const secs = (s) => (s == null ? "–" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(2)} s`);

function renderUsage(usage) {
  const today = new Date(usage.now * 1000).toISOString().slice(0, 10);
  const dayShare = (usage.now % 86400) / 86400;
  $("pace").textContent = `${Math.round(dayShare * 100)}% of the UTC day gone`;
  const cards = el("div", { class: "cards" });
  for (const budget of usage.budgets) {
    const rows = usage.days.filter(
      (r) => r.day === today && r.account === budget.account && r.model === budget.model,
    );
    const sum = (f) => rows.reduce((n, r) => n + r[f], 0);
    const used = 1 - budget.daily_share_left;
    const pace = used > dayShare + 0.05 ? "ahead of the day's pace" : "within the day's pace";
    const card = el(
      "div",
      { class: "card budget", "data-account": budget.account },
      el("h3", {}, `${budget.account} · ${budget.model}`),
      el(
        "div",
        { class: "muted" },
        `${sum("requests")} requests, ${num(sum("prompt_tokens") + sum("completion_tokens"))}` +
          ` tokens, ${sum("errors")} errors today · ${Math.round(budget.daily_share_left * 100)}%` +
          ` of the daily quota left, ${pace}`,
      ),
    );
    for (const w of budget.windows) card.append(windowBar(w));
    if (!budget.windows.length) card.append(el("div", { class: "muted" }, "no known limits"));
    cards.append(card);
  }
  $("budgets").replaceChildren(cards);
  const c = usage.cache || { hits: 0, misses: 0, prompt_tokens_saved: 0, completion_tokens_saved: 0 };
  $("cache").textContent =
    `Answer cache today: ${c.hits} hits, ${c.misses} misses, ` +
    `${num(c.prompt_tokens_saved + c.completion_tokens_saved)} tokens saved`;
  const members = el("div", { class: "cards" });
  for (const m of usage.members) {
    let rest =
      m.cooldown_seconds > 0
        ? `rests until ${time(usage.now + m.cooldown_seconds)} UTC (${Math.ceil(m.cooldown_seconds)} s)`
        : "ready";
    if (m.key_refused) rest = "key refused by the provider: out of rotation";
    if (m.withdrawn) rest = "withdrawn by the provider: not tried";
    const name = m.key ? `${m.name} · key ${m.key}` : m.name;
    members.append(
      el(
        "div",
        { class: "card member", "data-member": m.name, "data-key": m.key || "" },
        el("h3", {}, name),
        el("span", { class: `state-${m.circuit}` }, `circuit ${m.circuit}`),
        ` · ${rest}`,
      ),
    );
  }
  $("members").replaceChildren(members);
}

function windowBar(w) {
  const known = w.limit != null && w.remaining != null;
  const share = known && w.limit > 0 ? Math.max(0, Math.min(1, w.remaining / w.limit)) : 1;
  const fill = el("span", { style: `width:${(share * 100).toFixed(1)}%` });
  if (share < 0.1) fill.classList.add("out");
  else if (share < 0.3) fill.classList.add("low");
  const resets = w.period === "day" ? "resets 00:00 UTC" : `rolling ${w.period}`;
  return el(
    "div",
    { class: "window" },
    el(
      "div",
      { class: "label" },
      el("span", {}, `${w.kind} / ${w.period}`),
      el("span", {}, `${num(w.remaining)} of ${num(w.limit)} left · ${w.source} · ${resets}`),
    ),
    el("div", { class: "bar" }, fill),
  );
}

function addHour(hour, provider, requests, errors, tokens) {
  if (!hours.has(hour)) hours.set(hour, new Map());
  const slot = hours.get(hour);
  const cell = slot.get(provider) || { requests: 0, errors: 0, tokens: 0 };
  cell.requests += requests;
  cell.errors += errors;
  cell.tokens += tokens;
  slot.set(provider, cell);
  if (!providers.includes(provider)) providers.push(provider);
}

function renderChart(now) {
  const last = Math.floor(now / 3600) * 3600;
  const slots = Array.from({ length: 24 }, (_, i) => last - (23 - i) * 3600);
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  const W = 720, H = 220, top = 10, mid = 105, gap = 20, left = 30;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const draw = (tag, attrs) => {
    const node = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  const max = (f) =>
    Math.max(1, ...slots.map((h) => [...(hours.get(h) || new Map()).values()].reduce((n, c) => n + c[f], 0)));
  const panels = [
    ["requests", top, mid - top, max("requests")],
    ["tokens", mid + gap, H - mid - gap - 14, max("tokens")],
  ];
  const step = (W - left) / 24;
  let errors = 0;
  for (const [field, y0, height, most] of panels) {
    draw("text", { x: 0, y: y0 + 9, "font-size": 9, fill: "#6b7280" }).textContent = field;
    draw("text", { x: 0, y: y0 + 20, "font-size": 9, fill: "#6b7280" }).textContent = num(most);
    slots.forEach((hour, i) => {
      let y = y0 + height;
      for (const [p, cell] of hours.get(hour) || []) {
        const h = (cell[field] / most) * height;
        y -= h;
        draw("rect", {
          x: left + i * step + 1, y, width: step - 2, height: h,
          fill: COLORS[providers.indexOf(p) % COLORS.length],
        });
      }
      const failed = [...(hours.get(hour) || new Map()).values()].reduce((n, c) => n + c.errors, 0);
      if (field === "requests" && failed) {
        errors += failed;
        const mark = draw("circle", { cx: left + i * step + step / 2, cy: y0 + 4, r: 3.5, fill: "#dc2626", class: "error-mark" });
        mark.append(Object.assign(document.createElementNS(svgNS, "title"), { textContent: `${failed} errors` }));
      }
    });
  }
  slots.forEach((hour, i) => {
    if (i % 3 === 0) draw("text", { x: left + i * step, y: H - 2, "font-size": 9, fill: "#6b7280" }).textContent = time(hour).slice(0, 5);
  });
  const legend = el("div", { class: "legend" });
  providers.forEach((p, i) => {
    const swatch = el("i", { style: `background:${COLORS[i % COLORS.length]}` });
    legend.append(el("span", {}, swatch, p));
  });
  legend.append(el("span", {}, el("i", { style: "background:#dc2626;border-radius:50%" }), `errors (${errors})`));
  $("chart").replaceChildren(svg, legend);
}

function addRequest(r) {
  const key = `${r.at}|${r.request_id}|${r.path}`;
  if (seen.has(key)) return;
  seen.add(key);
  let member = r.provider ? `${r.provider}/${r.model}` : "–";
  if (r.key) member += ` · key ${r.key}`;
  if (r.cache === "hit") member += " · cache hit";
  const failed = r.status >= 400 || r.error;
  const row = el(
    "tr",
    { class: failed ? "failed" : "", "data-status": r.status, "data-attempts": r.attempts, "data-member": member },
    el("td", {}, time(r.at)),
    el("td", {}, r.api),
    el("td", {}, r.route || "–"),
    el("td", {}, member),
    el("td", {}, String(r.attempts)),
    el("td", {}, r.error ? `${r.status} ${r.error}` : String(r.status)),
    el("td", {}, secs(r.ttft)),
    el("td", {}, secs(r.duration)),
    el("td", {}, `${r.prompt_tokens}+${r.completion_tokens}`),
  );
  const body = $("requests").tBodies[0];
  body.prepend(row);
  while (body.rows.length > 200) body.deleteRow(-1);
}

async function follow() {
  // fetch, not EventSource: EventSource cannot send the key.
  try {
    const response = await fetch("/usage/requests/stream", { headers: headers(), cache: "no-store" });
    if (!response.ok) throw new Error(`feed: HTTP ${response.status}`);
    $("status").textContent = "live";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (!data.length) continue;
        const payload = JSON.parse(data.join("\n"));
        if (name === "request") addRequest(payload);
        else if (name === "usage") {
          renderUsage(payload);
          refreshHours();
        }
      }
    }
  } catch (error) {
    $("status").textContent = `reconnecting (${error.message})`;
  }
  setTimeout(follow, 2000);
}

let hoursAt = 0;
async function refreshHours(force) {
  if (!force && Date.now() - hoursAt < 15000) return;
  hoursAt = Date.now();
  const data = await get("/usage/hours?hours=24");
  hours = new Map();
  for (const h of data.hours) addHour(h.hour, h.provider, h.requests, h.errors, h.prompt_tokens + h.completion_tokens);
  renderChart(data.now);
}

async function start() {
  try {
    const usage = await get("/usage?days=1");
    $("key-form").hidden = true;
    $("main").hidden = false;
    renderUsage(usage);
    await refreshHours(true);
    const last = await get("/usage/requests?limit=50");
    for (const r of last.requests) addRequest(r);
    follow();
  } catch (error) {
    if (error.auth) askForKey(sessionStorage.getItem(KEY) ? error.message : "");
    else $("status").textContent = error.message;
  }
}

start();
