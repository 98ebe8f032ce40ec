// chipfit dashboard: the form posts to the same JSON API the OpenAPI schema describes
// (/api/models, /api/upload, /api/compare, /api/results) and draws the answer as a table and SVG plots.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CLASS_COLOURS = {
  cpu: "#7e57c2", gpu: "#2f6fde", tpu: "#00897b", asic: "#ef6c00", fpga: "#8d6e63",
  edge: "#c2185b", neuromorphic: "#546e7a", quantum: "#546e7a",
};
const BAR_COUNT = 15;

// --- small helpers ----------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);  // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const $ = (id) => document.getElementById(id);

function fmtNumber(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  const units = [[1e18, "E"], [1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, prefix] of units) if (Math.abs(x) >= size) return (x / size).toPrecision(digits) + " " + prefix;
  return Number(x.toPrecision(digits)).toString();
}

function fmtTime(s) {
  if (s === null || s === undefined) return "–";
  const steps = [[86400 * 365, "y"], [86400, "d"], [3600, "h"], [60, "min"], [1, "s"], [1e-3, "ms"], [1e-6, "µs"]];
  for (const [size, unit] of steps) if (s >= size) return (s / size).toPrecision(3) + " " + unit;
  return (s / 1e-9).toPrecision(3) + " ns";
}

function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const steps = [[2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]];
  for (const [size, unit] of steps) if (b >= size) return (b / size).toPrecision(3) + " " + unit;
  return b + " B";
}

function fmtUsd(x) {
  if (x === null || x === undefined) return "–";
  if (x >= 100) return "$" + Math.round(x).toLocaleString("en-US");
  return "$" + x.toPrecision(3);
}

function fmtKwh(x) {
  if (x === null || x === undefined) return "–";
  if (x < 1e-3) return (x * 1000).toPrecision(3) + " Wh";
  return x.toPrecision(3) + " kWh";
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: said below */ }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
    throw new Error(detail);
  }
  return body;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// --- the form ---------------------------------------------------------------------------
const uploaded = [];  // {model, name} of files uploaded in this page
const DECODER_TASK = "causal-lm";  // zoo models LLM serving (prompt and generated tokens) applies to
const decoders = new Set();

function bySizes() {
  return document.querySelector("input[name=source]:checked").value === "spec";
}

// Show the model source picked, and the serving fields for a decoder LLM in inference.
function updateForm() {
  const spec = bySizes();
  $("source-zoo").hidden = spec;
  $("source-spec").hidden = !spec;
  const infer = document.querySelector("input[name=mode]:checked").value === "infer";
  $("serving-fields").hidden = !(infer && (spec || decoders.has($("model").value)));
}

function fillOptions(select, values, selected) {
  for (const v of values) select.append(el("option", { value: v, selected: v === selected }, v));
}

function fillModels(models) {
  const select = $("model");
  const groups = {};
  for (const m of models) {
    (groups[m.task] = groups[m.task] || []).push(m);
    if (m.task === DECODER_TASK) decoders.add(m.name);
  }
  for (const [task, entries] of Object.entries(groups)) {
    const group = el("optgroup", { label: task });
    for (const m of entries) {
      const params = fmtNumber(m.published_params, 3).replace(" ", "");
      group.append(el("option", { value: m.name, title: m.description, selected: m.name === "resnet50" }, `${m.name} (${params} params)`));
    }
    select.append(group);
  }
}

function addUploadedModel(result) {
  const select = $("model");
  let group = select.querySelector("optgroup[data-uploads]");
  if (!group) {
    group = el("optgroup", { label: "uploaded", "data-uploads": true });
    select.prepend(group);
  }
  if (!group.querySelector(`option[value="${CSS.escape(result.model)}"]`)) {
    group.append(el("option", { value: result.model }, `${result.filename}`));
  }
  select.value = result.model;
  uploaded.push(result);
}

async function onUpload(event) {
  const file = event.target.files[0];
  if (!file) return;
  const status = $("upload-status");
  status.textContent = `Uploading and parsing ${file.name}…`;
  showError("");
  const form = new FormData();
  form.append("file", file);
  try {
    const result = await api("/api/upload", { method: "POST", body: form });
    const p = result.profile;
    status.textContent = `${result.filename}: ${fmtNumber(p.params)} parameters, ${fmtNumber(p.flops.total)}FLOP per inference at batch 1. Inference only for .onnx and .prototxt.`;
    addUploadedModel(result);
    document.querySelector("input[name=mode][value=infer]").checked = true;
    document.querySelector("input[name=source][value=zoo]").checked = true;
    updateForm();
  } catch (err) {
    status.textContent = "";
    showError(err.message);
  }
  event.target.value = "";
}

function numberOrNull(text) {
  const t = String(text).trim().replace(/_/g, "");
  if (t === "") return null;
  const x = Number(t);
  return Number.isNaN(x) ? t : x;  // a non-number goes to the server, which says what is wrong
}

function readForm() {
  const f = new FormData($("job"));
  const spec = bySizes();
  const serving = !$("serving-fields").hidden;
  const body = {
    model: spec ? null : $("model").value,
    spec: spec ? String(f.get("spec")).trim() : null,
    prompt_tokens: serving ? numberOrNull(f.get("prompt_tokens")) : null,
    generate_tokens: serving ? numberOrNull(f.get("generate_tokens")) : null,
    mode: f.get("mode"),
    batch: numberOrNull(f.get("batch")),
    seq: numberOrNull(f.get("seq")),
    samples: numberOrNull(f.get("samples")),
    epochs: numberOrNull(f.get("epochs")),
    tokens: numberOrNull(f.get("tokens")),
    devices: numberOrNull(f.get("devices")),
    precision: f.get("precision") || null,
    optimizer: f.get("optimizer"),
    class: f.get("class") || null,
    framework: f.get("framework") || null,
    deadline: String(f.get("deadline")).trim() || null,
    budget: numberOrNull(f.get("budget")),
  };
  for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  return body;
}

async function onCompare(event) {
  event.preventDefault();
  showError("");
  $("run").disabled = true;
  $("busy").hidden = false;
  try {
    const result = await api("/api/compare", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(readForm()),
    });
    render(result);
  } catch (err) {
    clearResults();  // the answer on the page would belong to the previous request
    showError(err.message);
  } finally {
    $("run").disabled = false;
    $("busy").hidden = true;
  }
}

// --- the answer -------------------------------------------------------------------------
// The advice's verdict per entry: "" when it meets every constraint, else the reason it was dropped.
function verdicts(advice) {
  const out = new Map();
  for (const d of advice.dropped) out.set(`${d.hardware}/${d.devices}`, d.reason);
  for (const c of advice.candidates) out.set(`${c.hardware}/${c.devices}`, "");
  return out;
}

function renderAdvice(advice) {
  const box = $("advice");
  const items = [el("p", { class: "why" }, advice.winner ? el("b", {}, "Advice: ") : el("b", { class: "miss" }, "No fit: "), advice.why)];
  const changes = advice.changes.map((c) => el("li", {}, `${c.change}: ${fmtBytes(c.memory_per_device_bytes)} of ${fmtBytes(c.capacity_bytes)} on ${c.hardware}`,
    c.fits ? el("span", { class: "meets" }, " fits") : el("span", { class: "miss" }, " still too large")));
  if (changes.length) items.push(el("p", { class: "small" }, `What would make ${advice.changes[0].hardware} fit:`), el("ul", { class: "small" }, changes));
  if (advice.notes.length) items.push(el("p", { class: "small muted" }, advice.notes.join(" · ")));
  box.replaceChildren(...items);
  box.hidden = false;
}

function clearResults() {
  for (const id of ["summary", "advice", "plots", "ranking"]) $(id).hidden = true;
  $("placeholder").hidden = false;
}

function render(result) {
  $("placeholder").hidden = true;
  const runnable = result.estimates.filter((e) => !e.excluded_reason);
  const excluded = result.estimates.filter((e) => e.excluded_reason);
  renderSummary(result, runnable);
  renderAdvice(result.advice);
  $("plots").hidden = false;
  drawScatter($("plot-scatter"), runnable, result.constraints);
  drawBars($("plot-bars"), runnable, result.constraints);
  renderTable(runnable, verdicts(result.advice), result.advice.winner, Boolean(result.workload.prompt_tokens));
  const details = $("excluded");
  details.hidden = excluded.length === 0;
  details.querySelector("summary").textContent = `${excluded.length} entr${excluded.length === 1 ? "y" : "ies"} cannot run this job`;
  details.querySelector("ul").replaceChildren(...excluded.map((e) => el("li", {}, el("b", {}, e.name), ": ", e.excluded_reason)));
  $("ranking").hidden = false;
}

function renderSummary(result, runnable) {
  const w = result.workload;
  const fitting = runnable.filter((e) => e.fits !== false);
  const serving = Boolean(w.prompt_tokens);
  const job = w.mode === "train" ? `train, ${fmtNumber(w.samples ? w.samples * w.epochs : w.tokens ? w.tokens / (w.seq_len || 1) : w.batch)} samples`
    : serving ? `LLM serving, ${w.prompt_tokens} prompt + ${w.generate_tokens} generated tokens` : "inference";
  const batch = serving ? `${w.batch} request${w.batch > 1 ? "s" : ""}` : w.batch + (w.seq_len ? ` × ${w.seq_len} tokens` : "");
  const items = [
    ["model", w.model], ["parameters", fmtNumber(w.params)], ["job", job],
    ["batch", batch], ["precision", w.precision],
    [serving ? "prefill FLOP per batch" : "FLOP per step per device", fmtNumber(w.flops_per_step_per_device)],
    ["entries that fit", `${fitting.length} of ${result.estimates.length}`],
    ["profiled in", fmtTime(result.timings_s.profile)],
  ];
  const box = $("summary");
  box.replaceChildren(...items.map(([k, v]) => el("div", {}, el("span", { class: "k" }, k), el("span", { class: "v" }, v))));
  const uncounted = Object.keys(w.uncounted_ops || {});
  const notes = [...(w.profile_notes || [])];
  if (uncounted.length) notes.push(`operators without a FLOP formula: ${uncounted.join(", ")}`);
  if (notes.length) {
    box.append(el("details", { class: "note" }, el("summary", {}, `How the profile counts (${notes.length} note${notes.length > 1 ? "s" : ""})`),
      el("ul", {}, ...notes.map((n) => el("li", {}, n)))));
  }
  box.hidden = false;
}

function logScale(lo, hi, a, b) {
  const l0 = Math.log10(lo), l1 = Math.log10(hi);
  const span = l1 - l0 || 1;
  return (x) => a + (Math.log10(x) - l0) / span * (b - a);
}

// Tick candidates: 1-2-5 in each decade, and for durations the clock's own steps.
const HOUR = 3600, DAY = 86400;
const TIME_STEPS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 90 * DAY, 180 * DAY, 365 * DAY, 2 * 365 * DAY, 5 * 365 * DAY, 10 * 365 * DAY];

function ticks(lo, hi, isTime, most = 6) {
  let candidates = [];
  for (let p = Math.floor(Math.log10(lo)); p <= Math.ceil(Math.log10(hi)); p++) {
    for (const m of [1, 2, 5]) candidates.push(m * 10 ** p);
  }
  if (isTime) candidates = candidates.filter((t) => t < 1).concat(TIME_STEPS);
  let inRange = candidates.filter((t) => t >= lo && t <= hi).sort((a, b) => a - b);
  if (inRange.length > most) {  // too many: keep powers of ten (or whole days and hours), thinned evenly
    const coarse = inRange.filter((t) => isTime && t >= 1 ? [1, 60, HOUR, DAY, 30 * DAY, 365 * DAY].includes(t) : Math.log10(t) % 1 === 0);
    if (coarse.length >= 2) inRange = coarse;
    const stride = Math.ceil(inRange.length / most);
    inRange = inRange.filter((_, i) => i % stride === 0);
  }
  return inRange;
}

// Ticks at least minPx apart on screen, so their labels never overlap.
function spaced(values, x, minPx = 56) {
  const out = [];
  for (const v of values) if (!out.length || x(v) - x(out[out.length - 1]) >= minPx) out.push(v);
  return out;
}

function paddedRange(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo /= 2; hi *= 2; }
  return [lo / 1.5, hi * 1.5];
}

function paretoFront(points) {
  const sorted = [...points].sort((p, q) => p.t - q.t || p.c - q.c);
  const front = [];
  let best = Infinity;
  for (const p of sorted) if (p.c < best) { front.push(p); best = p.c; }
  return front;
}

function legend(classes) {
  return el("div", { class: "legend" }, ...classes.map((c) => el("span", {}, el("i", { style: { background: CLASS_COLOURS[c] || "#888" } }), c)));
}

function drawScatter(box, estimates, constraints) {
  const points = estimates.filter((e) => e.total_time_s > 0 && e.cost_usd > 0 && e.fits !== false)
    .map((e) => ({ e, t: e.total_time_s, c: e.cost_usd }));
  if (points.length === 0) {
    box.replaceChildren(el("div", { class: "empty" }, "No entry that fits has a sourced cloud price for this job, so there is no cost to plot."));
    return;
  }
  const W = 520, H = 320, L = 62, R = 14, T = 12, B = 40;
  const [t0, t1] = paddedRange(points.map((p) => p.t));
  const [c0, c1] = paddedRange(points.map((p) => p.c));
  const x = logScale(t0, t1, L, W - R), y = logScale(c0, c1, H - B, T);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "time against cost" });
  for (const t of spaced(ticks(t0, t1, true), x)) {
    root.append(svg("line", { class: "gridline", x1: x(t), x2: x(t), y1: T, y2: H - B }));
    root.append(svg("text", { x: x(t), y: H - B + 14, "text-anchor": "middle" }, fmtTime(t)));
  }
  for (const c of ticks(c0, c1, false)) {
    root.append(svg("line", { class: "gridline", x1: L, x2: W - R, y1: y(c), y2: y(c) }));
    root.append(svg("text", { x: L - 6, y: y(c) + 4, "text-anchor": "end" }, fmtUsd(c)));
  }
  root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  root.append(svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  root.append(svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "total time"));
  root.append(svg("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(T + H - B) / 2})` }, "cost (USD)"));
  if (constraints.deadline_s && constraints.deadline_s > t0 && constraints.deadline_s < t1) {
    root.append(svg("line", { class: "limit", x1: x(constraints.deadline_s), x2: x(constraints.deadline_s), y1: T, y2: H - B }));
  }
  if (constraints.budget_usd && constraints.budget_usd > c0 && constraints.budget_usd < c1) {
    root.append(svg("line", { class: "limit", x1: L, x2: W - R, y1: y(constraints.budget_usd), y2: y(constraints.budget_usd) }));
  }
  const front = paretoFront(points);
  if (front.length > 1) root.append(svg("polyline", { class: "front", points: front.map((p) => `${x(p.t)},${y(p.c)}`).join(" ") }));
  for (const p of points) {
    const dot = svg("circle", { cx: x(p.t), cy: y(p.c), r: front.includes(p) ? 6 : 4.5, fill: CLASS_COLOURS[p.e.class] || "#888", "fill-opacity": 0.85, stroke: "#fff", "stroke-width": 1 });
    dot.append(svg("title", {}, `${p.e.name}: ${fmtTime(p.t)}, ${fmtUsd(p.c)}`));
    root.append(dot);
  }
  for (const p of front.slice(0, 6)) {
    root.append(svg("text", { class: "label", x: x(p.t) + 8, y: y(p.c) - 6 }, p.e.name));
  }
  box.replaceChildren(root, legend([...new Set(points.map((p) => p.e.class))]));
}

function drawBars(box, estimates, constraints) {
  const rows = estimates.filter((e) => e.total_time_s > 0 && e.fits !== false).slice(0, BAR_COUNT);
  if (rows.length === 0) {
    box.replaceChildren(el("div", { class: "empty" }, "No entry fits this job."));
    return;
  }
  const rowH = 18, W = 520, L = 176, R = 60, T = 6;
  const H = T + rows.length * rowH + 26;
  const highs = rows.map((e) => (e.high && e.high.total_time_s) || e.total_time_s);
  const lows = rows.map((e) => (e.low && e.low.total_time_s) || e.total_time_s);
  const lo = Math.min(...lows) / 2, hi = Math.max(...highs) * 1.3;
  const x = logScale(lo, hi, L, W - R);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "total time per entry" });
  for (const t of spaced(ticks(lo, hi, true), x)) {
    root.append(svg("line", { class: "gridline", x1: x(t), x2: x(t), y1: T, y2: H - 22 }));
    root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, fmtTime(t)));
  }
  if (constraints.deadline_s && constraints.deadline_s > lo && constraints.deadline_s < hi) {
    root.append(svg("line", { class: "limit", x1: x(constraints.deadline_s), x2: x(constraints.deadline_s), y1: T, y2: H - 22 }));
  }
  rows.forEach((e, i) => {
    const yMid = T + i * rowH + rowH / 2;
    const name = e.name.length > 25 ? e.name.slice(0, 24) + "…" : e.name;
    root.append(svg("text", { class: "label", x: L - 6, y: yMid + 4, "text-anchor": "end" }, name));
    const bar = svg("rect", { x: L, y: yMid - 6, width: Math.max(1, x(e.total_time_s) - L), height: 12, rx: 2, fill: CLASS_COLOURS[e.class] || "#888", "fill-opacity": 0.8 });
    bar.append(svg("title", {}, `${e.name}: ${fmtTime(e.total_time_s)} (${fmtTime(lows[i])} to ${fmtTime(highs[i])})`));
    root.append(bar);
    root.append(svg("line", { class: "whisker", x1: x(lows[i]), x2: x(highs[i]), y1: yMid, y2: yMid }));
    root.append(svg("text", { x: x(highs[i]) + 4, y: yMid + 4 }, fmtTime(e.total_time_s)));
  });
  box.replaceChildren(root, legend([...new Set(rows.map((e) => e.class))]));
}

// Columns of the ranking: [header, cell(e, i)]. LLM serving shows what `chipfit compare --prompt
// --generate` does (time to first token, tokens/s) and the largest batch that fits.
function rankingColumns(serving, verdict, winner) {
  const range = (e, key, fmt) => (e.low && e.low[key] !== undefined && e.high && e.high[key] !== undefined)
    ? el("span", { class: "range" }, `${fmt(e.low[key])} – ${fmt(e.high[key])}`) : null;
  const isWinner = (e) => winner && winner.hardware === e.hardware && winner.devices === e.devices;
  const fit = (e) => e.fits === true ? el("span", { class: "fit-yes" }, "yes") : e.fits === false ? el("span", { class: "fit-no" }, "no") : el("span", { class: "fit-unknown" }, "?");
  const throughput = (e) => [e.throughput_per_s ? fmtNumber(e.throughput_per_s) : "–", e.throughput_per_s ? el("span", { class: "range" }, e.throughput_unit) : null];
  const first = [
    ["#", (e, i) => i + 1],
    ["hardware", (e) => [e.name + (e.devices > 1 ? ` × ${e.devices}` : ""), el("small", {}, e.hardware)], "name"],
    ["class", (e) => el("span", { class: "badge", style: { background: CLASS_COLOURS[e.class] || "#888" } }, e.class)],
    ["fits", fit],
  ];
  const middle = serving ? [
    ["first token", (e) => fmtTime(e.serving.time_to_first_token_s)],
    ["tokens/s", throughput],
    ["max batch", (e) => e.serving.max_batch === null ? "–" : String(e.serving.max_batch)],
    ["decode step", (e) => fmtTime(e.step_time_s)],
  ] : [
    ["step", (e) => fmtTime(e.step_time_s)],
    ["throughput", throughput],
  ];
  const last = [
    ["total time", (e) => [fmtTime(e.total_time_s), range(e, "total_time_s", fmtTime)]],
    ["memory", (e) => fmtBytes(e.memory_per_device_bytes)],
    ["energy", (e) => fmtKwh(e.energy_kwh)],
    ["cost", (e) => [fmtUsd(e.cost_usd), range(e, "cost_usd", fmtUsd)], null, (e) => e.cost_source || "no sourced price"],
    ["constraints", (e) => { const r = verdict.get(`${e.hardware}/${e.devices}`); return isWinner(e) ? "advised" : r === "" ? "meets" : r || "–"; },
      (e) => { const r = verdict.get(`${e.hardware}/${e.devices}`); return r ? "reason miss" : "reason meets"; }],
  ];
  return { columns: [...first, ...middle, ...last], isWinner };
}

function renderTable(estimates, verdict, winner, serving) {
  const { columns, isWinner } = rankingColumns(serving, verdict, winner);
  const head = el("thead", {}, el("tr", {}, ...columns.map(([h]) => el("th", {}, h))));
  const body = el("tbody");
  estimates.forEach((e, i) => {
    const row = el("tr", { class: isWinner(e) ? "row winner" : "row", "data-hardware": e.hardware },
      ...columns.map(([, cell, cls, title]) => el("td", {
        class: typeof cls === "function" ? cls(e) : cls, title: title ? title(e) : null,
      }, cell(e, i))));
    const notes = el("tr", { class: "assumptions", hidden: true }, el("td", { colspan: columns.length },
      el("ul", {}, ...e.assumptions.map((a) => el("li", {}, a)), e.cost_source ? el("li", {}, `price: ${e.cost_source}`) : null)));
    row.addEventListener("click", () => { notes.hidden = !notes.hidden; });
    body.append(row, notes);
  });
  $("ranking-table").replaceChildren(head, body);
}

// --- stored measurements ----------------------------------------------------------------
async function loadRuns() {
  showError("");
  let runs;
  try { runs = await api("/api/results"); } catch (err) { showError(err.message); return; }
  $("runs-empty").hidden = runs.length > 0;
  const table = $("runs-table");
  table.hidden = runs.length === 0;
  const head = el("thead", {}, el("tr", {}, ...["run", "kind", "device", "hardware", "when", "measurements"].map((h) => el("th", {}, h))));
  const body = el("tbody", {}, ...runs.slice().reverse().map((r) => {
    const tr = el("tr", {}, el("td", {}, r.id), el("td", {}, r.kind), el("td", {}, r.device), el("td", {}, r.hardware_id || "–"), el("td", {}, r.created_at), el("td", {}, r.measurement_count));
    tr.addEventListener("click", () => {
      for (const other of body.children) other.classList.remove("selected");
      tr.classList.add("selected");
      loadRun(r.id);
    });
    return tr;
  }));
  table.replaceChildren(head, body);
}

async function loadRun(id) {
  let run;
  try { run = await api(`/api/results/${id}`); } catch (err) { showError(err.message); return; }
  $("run-title").textContent = `Run ${run.id}: ${run.kind} on ${run.device} (${run.environment.device_name || run.hardware_id})`;
  const head = el("thead", {}, el("tr", {}, ...["kind", "label", "precision", "shape", "median", "spread", "achieved FLOP/s", "achieved bytes/s", "predicted", "energy"].map((h) => el("th", {}, h))));
  const body = el("tbody", {}, ...run.measurements.map((m) => el("tr", {},
    el("td", {}, m.kind), el("td", {}, m.label || "–"), el("td", {}, m.precision),
    el("td", {}, Object.entries(m.shape).map(([k, v]) => `${k}=${v}`).join(" ")),
    el("td", {}, fmtTime(m.median_s)), el("td", {}, m.spread == null ? "-" : (m.spread * 100).toFixed(1) + " %"),
    el("td", {}, m.achieved_flops_per_s ? fmtNumber(m.achieved_flops_per_s) + "FLOP/s" : "–"),
    el("td", {}, m.achieved_bytes_per_s ? fmtBytes(m.achieved_bytes_per_s) + "/s" : "–"),
    el("td", {}, fmtTime(m.predicted_s)),
    el("td", {}, m.energy_j === null ? "–" : `${m.energy_j.toPrecision(3)} J${m.energy_estimated ? " (est.)" : ""}`),
  )));
  $("measurements-table").replaceChildren(head, body);
  $("run-detail").hidden = false;
}

function switchTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const page of document.querySelectorAll(".tab-page")) page.hidden = page.id !== `tab-${name}`;
  if (name === "results") loadRuns();
}

async function init() {
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => switchTab(b.dataset.tab));
  $("job").addEventListener("submit", onCompare);
  $("upload").addEventListener("change", onUpload);
  for (const input of document.querySelectorAll("input[name=source], input[name=mode]")) input.addEventListener("change", updateForm);
  $("model").addEventListener("change", updateForm);
  try {
    const [meta, models] = await Promise.all([api("/api/meta"), api("/api/models")]);
    $("version").textContent = `v${meta.version}`;
    $("upload-types").textContent = `(${meta.upload_types.join(", ")}; up to ${fmtBytes(meta.upload_max_bytes)})`;
    fillModels(models);
    $("precision").append(el("option", { value: "", title: "bf16; fp32 for .onnx and .prototxt files" }, "default"));
    fillOptions($("precision"), meta.precisions, "");
    fillOptions($("optimizer"), meta.optimizers, "adamw");
    fillOptions($("hw-class"), meta.classes, null);
    fillOptions($("framework"), meta.frameworks, null);
    updateForm();
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(`The dashboard could not load its options (${err.message}); is the server still running?`);
  }
}

document.addEventListener("DOMContentLoaded", init);
