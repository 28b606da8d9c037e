// fcnkit explore: reads the controls, asks the server's /api/<view> for the geometry, draws it.
// No arithmetic happens here: sizes, taps, matrices, receptive fields and coverage all come
// from fcnkit.arith through the JSON views (src/fcnkit/web/explore.py).
"use strict";

const FIELDS = ["kind", "convention", "size", "kernel", "stride", "padding", "dilation",
  "output_padding", "ceil_mode", "row", "col", "target", "rates", "grid_kernel",
  "stack_size", "stack_row", "stack_col"];
const SVG_NS = "http://www.w3.org/2000/svg";
// Cell colours by kind name; the numbers of the kinds come with the animation view.
const KIND_COLOURS = { padding: "#ffffff", input: "#6baed6", inserted_zero: "#e5e5e5" };
const $ = (id) => document.getElementById(id);

let stack = [
  { kind: "conv", kernel: 3, stride: 1, padding: 1, dilation: 1 },
  { kind: "pool", kernel: 2, stride: 2, padding: 0, dilation: 1 },
  { kind: "conv", kernel: 3, stride: 1, padding: 1, dilation: 1 },
];
let generation = 0;
let animation = { data: null, frame: 0, timer: null, playing: true };

// ---------------------------------------------------------------- state <-> controls / URL
function readControls() {
  const state = {};
  for (const name of FIELDS) {
    const el = $(name);
    state[name] = el.type === "checkbox" ? (el.checked ? "1" : "0") : el.value.trim();
  }
  state.stack = JSON.stringify(stack);
  return state;
}

function writeControls(state) {
  for (const name of FIELDS) {
    if (!(name in state)) continue;
    const el = $(name);
    if (el.type === "checkbox") el.checked = state[name] === "1";
    else el.value = state[name];
  }
  if (state.stack) {
    try { stack = JSON.parse(state.stack); } catch (e) { /* keep the default stack */ }
  }
}

function stateFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const state = {};
  for (const [key, value] of params) state[key] = value;
  return state;
}

function saveHash(state) {
  const hash = "#" + new URLSearchParams(state).toString();
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

// ---------------------------------------------------------------- API
async function api(view, params) {
  const response = await fetch(`/api/${view}?` + new URLSearchParams(params).toString());
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function layerParams(state) {
  const p = { kind: state.kind, convention: state.convention, size: state.size,
    kernel: state.kernel, padding: state.padding, dilation: state.dilation,
    output_padding: state.output_padding, ceil_mode: state.ceil_mode };
  if (state.stride !== "") p.stride = state.stride;
  return p;
}

// ---------------------------------------------------------------- rendering helpers
function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function showInline(id, message) {
  const node = $(id);
  node.textContent = message || "";
  node.hidden = !message;
}

function heatColour(value, max) {
  if (!value) return "#ffffff";
  const t = max > 0 ? value / max : 1;
  const r = Math.round(222 - 190 * t), g = Math.round(235 - 150 * t), b = Math.round(247 - 90 * t);
  return `rgb(${r},${g},${b})`;
}

function drawHeatmap(canvas, matrix, cell, highlightRow) {
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  canvas.width = Math.max(1, cols * cell);
  canvas.height = Math.max(1, rows * cell);
  canvas.dataset.rows = rows;
  canvas.dataset.cols = cols;
  const ctx = canvas.getContext("2d");
  let max = 0;
  for (const row of matrix) for (const v of row) max = Math.max(max, v);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      ctx.fillStyle = heatColour(matrix[r][c], max);
      ctx.fillRect(c * cell, r * cell, cell, cell);
    }
  }
  if (highlightRow !== undefined && highlightRow !== null) {
    ctx.strokeStyle = "#d62728";
    ctx.lineWidth = Math.max(1, cell / 4);
    ctx.strokeRect(0.5, highlightRow * cell + 0.5, cols * cell - 1, cell - 1);
  }
}

// ---------------------------------------------------------------- views
function renderLayer(data) {
  const layer = data.layer, rel = data.relationship;
  const out = layer.output_size;
  $("output-size").textContent = Array.isArray(out) ? out.join("×") : String(out);
  $("relationship").textContent = rel.number
    ? `Relationship ${rel.number} (${rel.source}): ${rel.case}`
    : `${rel.case} (${rel.source})`;
  $("formula").textContent = rel.formula;
  $("substituted").textContent = rel.substituted;
  const inv = layer.inverse;
  if (inv) {
    const name = inv.layer === "conv_transpose" ? "ConvTranspose2d" : "Conv2d";
    const extra = "output_padding" in inv ? `, output_padding=${inv.output_padding}` : "";
    $("inverse").textContent = `Maps back with ${name}(k=${inv.kernel}, s=${inv.stride}, ` +
      `p=${inv.padding}, d=${inv.dilation}${extra}) → ${inv.output_size}`;
  } else {
    $("inverse").textContent = "";
  }
  $("note").textContent = layer.note || "";
}

function renderAnimationFrame() {
  const data = animation.data;
  if (!data) return;
  const [oh, ow] = data.output_shape;
  const frames = oh * ow;
  const frame = Math.min(animation.frame, frames - 1);
  const oy = Math.floor(frame / ow), ox = frame % ow;
  const grid = data.cells, gh = grid.length, gw = grid[0].length;
  const cell = Math.max(10, Math.min(28, Math.floor(360 / Math.max(gh, gw))));
  const gap = 2 * cell, width = (gw + ow) * cell + gap + 2, height = Math.max(gh, oh) * cell + 2;
  const holder = $("animation");
  holder.textContent = "";
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "animation-svg" },
    holder);
  const taps = new Set(data.taps[oy][ox].map(([r, c]) => `${r},${c}`));
  const colours = {};
  for (const [name, number] of Object.entries(data.kinds)) colours[number] = KIND_COLOURS[name];
  const padding = data.kinds.padding;
  for (let r = 0; r < gh; r++) {
    for (let c = 0; c < gw; c++) {
      const kind = grid[r][c];
      const rect = el("rect", { x: c * cell + 1, y: r * cell + 1, width: cell - 1, height: cell - 1,
        fill: colours[kind], stroke: kind === padding ? "#9aa" : "#fff" }, svg);
      if (kind === padding) rect.setAttribute("stroke-dasharray", "2,2");
      if (taps.has(`${r},${c}`)) {
        el("rect", { x: c * cell + 3, y: r * cell + 3, width: cell - 5, height: cell - 5,
          fill: "none", stroke: "#08306b", "stroke-width": 2 }, svg);
      }
    }
  }
  const x0 = gw * cell + gap;
  for (let r = 0; r < oh; r++) {
    for (let c = 0; c < ow; c++) {
      const index = r * ow + c;
      const fill = index === frame ? "#00441b" : index < frame ? "#41ab5d" : "#ffffff";
      const rect = el("rect", { x: x0 + c * cell + 1, y: r * cell + 1, width: cell - 1,
        height: cell - 1, fill, stroke: "#41ab5d", class: "out-cell",
        "data-row": r, "data-col": c }, svg);
      rect.addEventListener("click", () => { $("row").value = r; $("col").value = c; schedule(); });
    }
  }
  $("frame").max = String(frames - 1);
  $("frame").value = String(frame);
  $("frame-label").textContent = `output (${oy}, ${ox}) of ${oh}×${ow}`;
}

function setAnimation(data) {
  animation.data = data;
  animation.frame = 0;
  renderAnimationFrame();
}

function tick() {
  if (!animation.data || !animation.playing) return;
  const [oh, ow] = animation.data.output_shape;
  animation.frame = (animation.frame + 1) % (oh * ow);
  renderAnimationFrame();
}

function renderMatrix(data) {
  const cell = Math.max(2, Math.min(14, Math.floor(480 / Math.max(...data.shape))));
  drawHeatmap($("matrix"), data.matrix, cell, data.selected_row);
  $("matrix-caption").textContent = `${data.name}: ${data.shape[0]}×${data.shape[1]} ` +
    `(output ${data.output_shape.join("×")} = ${data.shape[0]} rows, input ` +
    `${data.input_shape.join("×")}); selected row ${data.selected_row}`;
}

function renderStack(data) {
  const body = $("stack-table").querySelector("tbody");
  body.textContent = "";
  data.layers.forEach((layer, i) => {
    const tr = document.createElement("tr");
    const rf = layer.receptive_field;
    for (const value of [i + 1, layer.kind, layer.kernel, layer.stride, layer.padding,
      layer.dilation, layer.output_padding, layer.output_size, rf.size, rf.stride]) {
      const td = document.createElement("td");
      td.textContent = String(value);
      tr.appendChild(td);
    }
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "remove";
    button.addEventListener("click", () => { stack.splice(i, 1); schedule(); });
    td.appendChild(button);
    tr.appendChild(td);
    body.appendChild(tr);
  });
  const maps = $("stack-maps");
  maps.textContent = "";
  data.regions.forEach((region) => {
    const n = data.map_sizes[region.map];
    const side = 110, scale = side / n;
    const figure = document.createElement("figure");
    const svg = el("svg", { width: side + 2, height: side + 2 }, figure);
    el("rect", { x: 1, y: 1, width: side, height: side, fill: "#eef3fa", stroke: "#889" }, svg);
    // The region may reach into the padding (outside 0..n-1): draw it clipped to the map.
    const r0 = Math.max(region.rows[0], 0), r1 = Math.min(region.rows[1], n - 1);
    const c0 = Math.max(region.cols[0], 0), c1 = Math.min(region.cols[1], n - 1);
    el("rect", { x: 1 + c0 * scale, y: 1 + r0 * scale, width: (c1 - c0 + 1) * scale,
      height: (r1 - r0 + 1) * scale, fill: "rgba(214,39,40,0.35)", stroke: "#d62728" }, svg);
    const caption = document.createElement("figcaption");
    const label = region.map === 0 ? "input" : `layer ${region.map}`;
    caption.textContent = `${label} ${n}×${n}: rows ${region.rows.join("…")}, ` +
      `cols ${region.cols.join("…")}`;
    figure.appendChild(caption);
    maps.appendChild(figure);
  });
}

function renderGridding(data) {
  $("gridding-verdict").textContent = data.verdict;
  $("gridding-detail").textContent = `receptive field ${data.receptive_field}×` +
    `${data.receptive_field}, ${data.holes} holes; Wang et al.: M = ${data.M.join(", ")}, ` +
    `M₂ ≤ K ${data.m_rule_ok ? "holds" : "fails"}, common factor ${data.common_factor}`;
  const cell = Math.max(2, Math.min(12, Math.floor(300 / data.receptive_field)));
  drawHeatmap($("coverage"), data.coverage, cell);
  $("gridding-suggestions").textContent = data.suggestions.length
    ? "Hole-free schedules with this receptive field: " +
      data.suggestions.map((s) => s.rates.join(",")).join("; ")
    : "No hole-free sawtooth schedule reaches this receptive field.";
}

function renderInverse(data) {
  const conv = data.conv_padding, tr = data.transposed_output_padding;
  $("inverse-conv").textContent = conv.error
    ? `Conv2d: ${conv.error}`
    : `Conv2d(k=${data.kernel}, s=${data.stride}, d=${data.dilation}) maps ${data.size} → ` +
      `${data.target} with padding ${conv.padding[0]}` +
      (conv.padding[1] > conv.padding[0] ? ` … ${conv.padding[1]}` : "");
  $("inverse-transposed").textContent = tr.error
    ? `ConvTranspose2d: ${tr.error}`
    : `ConvTranspose2d(k=${data.kernel}, s=${data.stride}, p=${data.padding}, ` +
      `d=${data.dilation}) maps ${data.size} → ${data.target} with output_padding ` +
      `${tr.output_padding}`;
}

// ---------------------------------------------------------------- update loop
async function update() {
  const mine = ++generation;
  const state = readControls();
  saveHash(state);
  document.body.dataset.state = "loading";
  const layer = layerParams(state);
  const pixel = { row: state.row, col: state.col };
  const requests = {
    layer: api("layer", layer),
    animation: api("animation", layer),
    matrix: api("matrix", { ...layer, ...pixel }),
    stack: api("stack", { size: state.stack_size, convention: state.convention,
      layers: state.stack, row: state.stack_row, col: state.stack_col }),
    gridding: api("gridding", { rates: state.rates, kernel: state.grid_kernel }),
    inverse: api("inverse", { size: state.size, target: state.target, kernel: state.kernel,
      stride: state.stride || "1", dilation: state.dilation,
      padding: /^\d+$/.test(state.padding) ? state.padding : "0" }),
  };
  // Every request settles into {data} or {error}: a refused view is shown, never thrown.
  const names = Object.keys(requests);
  const settled = await Promise.all(names.map((name) => requests[name].then(
    (data) => ({ data }), (error) => ({ error: error.message }))));
  const results = Object.fromEntries(names.map((name, i) => [name, settled[i]]));
  if (mine !== generation) return;  // a newer update is under way
  const layerResult = results.layer;
  if (layerResult.error) {
    $("error").textContent = layerResult.error;
    $("error").hidden = false;
    $("output-size").textContent = "—";
    for (const id of ["relationship", "formula", "substituted", "inverse", "note"]) $(id).textContent = "";
  } else {
    $("error").hidden = true;
    $("error").textContent = "";
    renderLayer(layerResult.data);
  }
  const viewMap = [
    ["animation", "animation-error", setAnimation, () => { animation.data = null; $("animation").textContent = ""; }],
    ["matrix", "matrix-error", renderMatrix, () => drawHeatmap($("matrix"), [], 1)],
    ["stack", "stack-error", renderStack, () => { $("stack-maps").textContent = ""; }],
    ["gridding", "gridding-error", renderGridding, () => drawHeatmap($("coverage"), [], 1)],
  ];
  for (const [name, errorId, render, clear] of viewMap) {
    const result = results[name];
    if (result.error) { clear(); showInline(errorId, result.error); } else { showInline(errorId, ""); render(result.data); }
  }
  if (results.inverse.error) {
    $("inverse-conv").textContent = results.inverse.error;
    $("inverse-transposed").textContent = "";
  } else {
    renderInverse(results.inverse.data);
  }
  document.body.dataset.rendered = new URLSearchParams(state).toString();
  document.body.dataset.state = "ready";
  document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
}

let pending = null;
function schedule() {
  clearTimeout(pending);
  pending = setTimeout(update, 120);
}

function init() {
  writeControls(stateFromHash());
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  // Controls live in the form and in the stack panel: listen on the whole document.
  const onControl = (event) => { if (FIELDS.includes(event.target.id)) schedule(); };
  document.addEventListener("input", onControl);
  document.addEventListener("change", onControl);
  $("play").addEventListener("click", () => {
    animation.playing = !animation.playing;
    $("play").textContent = animation.playing ? "Pause" : "Play";
  });
  $("frame").addEventListener("input", () => {
    animation.playing = false;
    $("play").textContent = "Play";
    animation.frame = Number($("frame").value);
    renderAnimationFrame();
  });
  $("add-layer").addEventListener("click", () => {
    const s = readControls();
    stack.push({ kind: s.kind, kernel: Number(s.kernel), stride: s.stride === "" ? "" : Number(s.stride),
      padding: /^\d+$/.test(s.padding) ? Number(s.padding) : s.padding,
      dilation: Number(s.dilation), output_padding: Number(s.output_padding) });
    schedule();
  });
  $("clear-stack").addEventListener("click", () => { stack = [stack[0]]; schedule(); });
  $("share").addEventListener("click", async () => {
    const url = location.href;
    try { await navigator.clipboard.writeText(url); $("share-note").textContent = "copied"; }
    catch (e) { $("share-note").textContent = url; }
  });
  window.addEventListener("hashchange", () => { writeControls(stateFromHash()); schedule(); });
  setInterval(tick, 600);
  update();
}

document.addEventListener("DOMContentLoaded", init);
