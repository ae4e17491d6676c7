// OpenStreaming dashboard: renders the frames of /events (see runtime/dashboard/frames.py) as SVG.
// No dependencies. The stream reconnects by itself (EventSource, retry 1 s); on reconnect the
// server sends a fresh snapshot, so the page always shows the latest frame and the whole series.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const KIND_COLOURS = { honest: "#2e9e44", bandwidth_liar: "#f28e2b", blackhole: "#222222", overpricer: "#8c52c4" };
const SPARE_COLOURS = ["#e15759", "#4e79a7", "#b07aa1", "#9c755f", "#edc948", "#76b7b2", "#ff9da7"];
const PANEL_COLOURS = ["#1f6feb", "#d4380d", "#2e9e44", "#8c52c4"];

const state = {
  frame: null, series: new Map(), paused: false, showPieces: true, detail: null,
  snapshots: 0, seq: 0, run: null, connected: false, source: null, flows: [], started: performance.now(),
};

function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function kindColour(kind) {
  if (KIND_COLOURS[kind]) return KIND_COLOURS[kind];
  let h = 0;
  for (const c of kind) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return SPARE_COLOURS[h % SPARE_COLOURS.length];
}

function trustColour(t) {
  if (t === null || t === undefined || Number.isNaN(t)) return "#b8bec7";
  const r = t < 0.5 ? 215 : Math.round(215 - (t - 0.5) * 2 * 170);
  const g = t < 0.5 ? Math.round(48 + t * 2 * 150) : 198;
  return `rgb(${r},${g},60)`;
}

function groupDigits(text) {
  return text.replace(/\B(?=(\d{3})+(?!\d))/g, "\u2009");
}

function big(value) {
  try { return BigInt(value); } catch { return 0n; }
}

// wei string -> "0.1000 ETH" from 1 mETH up, else "12.345 µETH" (1 µETH = 1e12 wei); environment money -> 2 decimals.
function money(value, unit) {
  if (value === null || value === undefined) return "–";
  if (unit !== "wei") return Number(value).toFixed(2);
  const w = big(value);
  const abs = w < 0n ? -w : w;
  if (abs >= 1000000000000000n) return `${(Number(w / 1000000000000n) / 1e6).toFixed(4)} ETH`;
  return `${(Number(w / 1000000n) / 1e6).toFixed(3)} µETH`;
}

function exactWei(value) {
  return `${groupDigits(big(value).toString())} wei`;
}

function int(value) {
  return groupDigits(String(Math.round(Number(value) || 0)));
}

function pct(value) {
  return `${(100 * (Number(value) || 0)).toFixed(1)} %`;
}

// ---------------------------------------------------------------- stream

function setStatus(kind, text) {
  const node = document.getElementById("stream-status");
  node.dataset.state = kind;
  node.textContent = text;
}

function statusFromFrame() {
  const f = state.frame;
  if (!state.connected) {
    setStatus("reconnecting", f && f.status === "finished" ? "finished · feed stopped" : "stream lost · reconnecting…");
  } else if (f && f.status === "finished") {
    setStatus("finished", "finished");
  } else {
    setStatus("live", f ? `live · ${f.status}` : "live · waiting for the feed");
  }
}

function addPoints(points) {
  for (const [seq, byLabel] of points) {
    for (const [label, point] of Object.entries(byLabel)) {
      if (!state.series.has(label)) state.series.set(label, []);
      const list = state.series.get(label);
      const last = list.length ? list[list.length - 1] : null;
      if (!last || last.seq < seq) list.push({ seq, ...point });
      if (list.length > 2000) list.shift();
    }
  }
}

function onSnapshot(event) {
  const data = JSON.parse(event.data);
  state.snapshots += 1;
  const status = document.getElementById("stream-status");
  status.dataset.reconnects = String(state.snapshots - 1);
  status.dataset.run = data.run;
  state.run = data.run;
  state.series = new Map();
  addPoints(data.history);
  state.connected = true;
  accept(data.seq, data.frame);
}

function onFrame(event) {
  const data = JSON.parse(event.data);
  addPoints(data.points);
  accept(data.seq, data.frame);
}

function accept(seq, frame) {
  state.seq = seq;
  document.getElementById("stream-status").dataset.seq = String(seq);
  if (frame) state.frame = frame;
  statusFromFrame();
  if (!state.paused) render();
}

function connect() {
  const source = new EventSource("events");
  state.source = source;
  source.addEventListener("snapshot", onSnapshot);
  source.addEventListener("frame", onFrame);
  source.addEventListener("error", () => {
    state.connected = false;
    statusFromFrame();
    if (source.readyState === EventSource.CLOSED) {
      // the server refused the stream (e.g. too many tabs): try again later ourselves
      setTimeout(connect, 3000);
    }
  });
}

// ---------------------------------------------------------------- rendering

function render() {
  const f = state.frame;
  if (!f) return;
  document.getElementById("feed-title").textContent = f.title || f.feed;
  document.title = `OpenStreaming · ${f.title || f.feed}`;
  const c = f.clock || {};
  const unit = c.unit === "step" ? "step" : "s";
  const now = unit === "s" ? Number(c.now || 0).toFixed(1) : String(Math.round(c.now || 0));
  document.getElementById("clock").textContent =
    c.end !== null && c.end !== undefined ? `${unit === "s" ? "t" : "step"} ${now} / ${c.end} ${unit === "s" ? "s" : ""}` : `t ${now}`;
  renderPanelChoice(f.panels);
  renderTopologies(f.panels);
  renderSeries(f.panels);
  const detail = f.panels.find((p) => p.label === state.detail) || f.panels[0];
  renderNodes(detail);
  renderChannels(detail);
  renderSettlement(detail);
  renderAttacks(detail);
  renderAccusations(detail);
  renderKindLegend(f.panels);
}

function renderPanelChoice(panels) {
  const select = document.getElementById("detail-panel");
  const labels = panels.map((p) => p.label);
  const have = Array.from(select.options).map((o) => o.value);
  if (have.join("\n") !== labels.join("\n")) {
    select.replaceChildren(...labels.map((l) => el("option", { value: l }, l)));
  }
  if (!labels.includes(state.detail)) state.detail = labels[0];
  select.value = state.detail;
}

function renderTopologies(panels) {
  const root = document.getElementById("topologies");
  const existing = new Map(Array.from(root.children).map((n) => [n.dataset.label, n]));
  const keep = [];
  state.flows = [];
  panels.forEach((panel, i) => {
    let box = existing.get(panel.label);
    if (!box) {
      box = el("article", { class: "panel", "data-testid": "panel", "data-label": panel.label });
      box.append(el("h2", {}, panel.label));
      box.append(svgEl("svg", { viewBox: "0 0 400 300", role: "img", "aria-label": `topology of ${panel.label}` }));
      box.append(el("dl", { class: "summary" }));
    }
    keep.push(box);
    drawTopology(box.querySelector("svg"), panel, i);
    drawSummary(box.querySelector("dl"), panel);
  });
  root.replaceChildren(...keep);
}

function drawTopology(svg, panel, index) {
  const W = 400, H = 300, PAD = 18;
  const pos = new Map(panel.nodes.map((n) => [n.id, [PAD + n.x * (W - 2 * PAD), PAD + (1 - n.y) * (H - 2 * PAD)]]));
  const edges = svgEl("g", { class: "edges" });
  const peak = Math.max(1e-9, ...panel.edges.map((e) => Number(e.traffic) || 0));
  for (const e of panel.edges) {
    const [x1, y1] = pos.get(e.a), [x2, y2] = pos.get(e.b);
    const load = Math.min(1, (Number(e.traffic) || 0) / peak);
    const line = svgEl("line", {
      x1, y1, x2, y2, stroke: "#4e79a7", "stroke-opacity": 0.25 + 0.6 * load, "stroke-width": 0.8 + 5 * load,
      "stroke-linecap": "round",
    });
    const title = svgEl("title");
    title.textContent = `${e.a} – ${e.b}: ${panel.money === "wei" ? money(String(e.traffic), "wei") + " paid" : int(e.traffic) + " pieces"}`;
    line.append(title);
    edges.append(line);
    if (!panel.pieces) {
      if (e.ab > 0) state.flows.push({ index, x1, y1, x2, y2, rate: e.ab });
      if (e.ba > 0) state.flows.push({ index, x1: x2, y1: y2, x2: x1, y2: y1, rate: e.ba });
    }
  }
  const pieces = svgEl("g", { class: "pieces", "data-panel": String(index) });
  if (panel.pieces && state.showPieces) {
    for (const p of panel.pieces) {
      const a = pos.get(p.a), b = pos.get(p.b);
      if (!a || !b) continue;
      const f = Math.max(0, Math.min(1, p.f));
      pieces.append(svgEl("circle", { cx: a[0] + (b[0] - a[0]) * f, cy: a[1] + (b[1] - a[1]) * f, r: 2.6, fill: "#f0b400", stroke: "#7a5c00", "stroke-width": 0.6 }));
    }
  }
  const nodes = svgEl("g", { class: "nodes" });
  for (const n of panel.nodes) {
    const [x, y] = pos.get(n.id);
    const g = svgEl("g", { class: "node", "data-id": n.id, "data-kind": n.kind });
    g.append(svgEl("circle", { cx: x, cy: y, r: 11.5, fill: "none", stroke: trustColour(n.trust), "stroke-width": 4 }));
    g.append(svgEl("circle", { class: "node-dot", cx: x, cy: y, r: 8.5, fill: kindColour(n.kind) }));
    const label = svgEl("text", { x, y: y + 3.5, "text-anchor": "middle", class: "node-label" });
    label.textContent = n.id.replace(/^n/, "");
    g.append(label);
    const title = svgEl("title");
    const trust = n.trust === null || n.trust === undefined ? "unknown" : pct(n.trust);
    title.textContent = `${n.id} (${n.kind}) · trusted by ${trust} of honest neighbours · forwarded ${n.forwarded}, delivered ${n.delivered}, dropped ${n.dropped}`;
    g.append(title);
    nodes.append(g);
  }
  svg.replaceChildren(edges, pieces, nodes);
}

function drawSummary(dl, panel) {
  const t = panel.totals || {};
  const items = [
    ["nodes", "nodes", String(panel.nodes.length)],
    ["sent", "sent", int(t.sent)],
    ["delivered", "delivered", int(t.delivered)],
    ["delivery_rate", "delivery rate", pct(t.delivery_rate)],
    ["dishonest_share", "dishonest share", pct(t.dishonest_share)],
  ];
  dl.replaceChildren(
    ...items.map(([key, name, value]) => {
      const div = el("div");
      div.append(el("dt", {}, name), el("dd", { "data-stat": key }, value));
      return div;
    }),
  );
}

function animateFlows(now) {
  const layers = document.querySelectorAll("#topologies .pieces");
  if (state.showPieces && !state.paused) {
    const byPanel = new Map();
    for (const fl of state.flows) {
      const dots = Math.max(1, Math.round(fl.rate * 4));
      for (let k = 0; k < dots; k++) {
        const f = ((now / 1500) * (0.5 + fl.rate) + k / dots) % 1;
        if (!byPanel.has(fl.index)) byPanel.set(fl.index, []);
        byPanel.get(fl.index).push(svgEl("circle", {
          cx: fl.x1 + (fl.x2 - fl.x1) * f, cy: fl.y1 + (fl.y2 - fl.y1) * f, r: 2.4, fill: "#f0b400", stroke: "#7a5c00", "stroke-width": 0.5,
        }));
      }
    }
    layers.forEach((layer) => {
      if (state.frame && state.frame.panels[Number(layer.dataset.panel)] && !state.frame.panels[Number(layer.dataset.panel)].pieces) {
        layer.replaceChildren(...(byPanel.get(Number(layer.dataset.panel)) || []));
      }
    });
  } else if (!state.showPieces) {
    layers.forEach((layer) => layer.replaceChildren());
  }
  requestAnimationFrame(animateFlows);
}

function renderSeries(panels) {
  const svg = document.getElementById("series");
  const W = 360, H = 170, L = 34, R = 8, T = 8, B = 22;
  const parts = [];
  let tMin = Infinity, tMax = -Infinity;
  for (const p of panels) {
    for (const pt of state.series.get(p.label) || []) {
      tMin = Math.min(tMin, pt.t);
      tMax = Math.max(tMax, pt.t);
    }
  }
  if (!Number.isFinite(tMin)) { tMin = 0; tMax = 1; }
  if (tMax <= tMin) tMax = tMin + 1;
  const sx = (t) => L + ((t - tMin) / (tMax - tMin)) * (W - L - R);
  const sy = (v) => T + (1 - Math.max(0, Math.min(1, v))) * (H - T - B);
  for (const v of [0, 0.5, 1]) {
    parts.push(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: sy(v), y2: sy(v), "stroke-opacity": v === 0 ? 1 : 0.3 }));
    const label = svgEl("text", { class: "axis-label", x: L - 4, y: sy(v) + 4, "text-anchor": "end" });
    label.textContent = `${v * 100}%`;
    parts.push(label);
  }
  const unit = state.frame && state.frame.clock && state.frame.clock.unit === "step" ? "step" : "s";
  for (const [t, anchor] of [[tMin, "start"], [tMax, "end"]]) {
    const label = svgEl("text", { class: "axis-label", x: sx(t), y: H - 6, "text-anchor": anchor });
    label.textContent = `${unit === "s" ? t.toFixed(0) + " s" : "step " + Math.round(t)}`;
    parts.push(label);
  }
  const legend = [];
  panels.forEach((p, i) => {
    const colour = PANEL_COLOURS[i % PANEL_COLOURS.length];
    const pts = state.series.get(p.label) || [];
    for (const [key, dash] of [["delivery_rate", null], ["dishonest_share", "5 4"]]) {
      const d = pts.map((pt) => `${sx(pt.t).toFixed(1)},${sy(pt[key]).toFixed(1)}`).join(" ");
      const attrs = { points: d, fill: "none", stroke: colour, "stroke-width": 2, "data-series": `${p.label}:${key}` };
      if (dash) attrs["stroke-dasharray"] = dash;
      parts.push(svgEl("polyline", attrs));
    }
    const a = el("li");
    a.append(el("span", { class: "line-swatch" }), document.createTextNode(`${p.label}: delivery`));
    a.firstChild.style.borderTopColor = colour;
    const b = el("li");
    b.append(el("span", { class: "line-swatch dashed" }), document.createTextNode(`${p.label}: dishonest share`));
    b.firstChild.style.borderTopColor = colour;
    legend.push(a, b);
  });
  svg.replaceChildren(...parts);
  document.getElementById("series-legend").replaceChildren(...legend);
}

function renderNodes(panel) {
  const body = document.querySelector("#nodes-table tbody");
  body.replaceChildren(
    ...panel.nodes.map((n) => {
      const tr = el("tr", { "data-id": n.id });
      const kind = el("td");
      const sw = el("span", { class: "swatch" });
      sw.style.background = kindColour(n.kind);
      kind.append(sw, document.createTextNode(` ${n.kind}`));
      tr.append(
        el("td", {}, n.id), kind,
        el("td", {}, n.trust === null || n.trust === undefined ? "–" : pct(n.trust)),
        el("td", { "data-col": "forwarded" }, int(n.forwarded)),
        el("td", { "data-col": "delivered" }, int(n.delivered)),
        el("td", { "data-col": "dropped" }, int(n.dropped)),
        el("td", {}, int(n.queue)),
        el("td", {}, money(n.earned, panel.money)),
        el("td", {}, money(n.unpaid, panel.money)),
        el("td", {}, n.decision_us === null || n.decision_us === undefined ? "–" : Number(n.decision_us).toFixed(1)),
      );
      return tr;
    }),
  );
}

function renderChannels(panel) {
  const wrap = document.getElementById("channels-wrap");
  const totals = document.getElementById("channel-totals");
  const card = document.getElementById("money");
  const channels = panel.channels;
  if (!channels) {
    wrap.hidden = true;
    totals.replaceChildren(el("dt", {}, "channels"), el("dd", { "data-total": "none" }, "none in this feed"));
    card.dataset.channels = "0";
    return;
  }
  wrap.hidden = false;
  const sum = { deposit: 0n, claimed: 0n, owed: 0n, refund: 0n };
  const rows = channels.map((c) => {
    for (const k of Object.keys(sum)) sum[k] += big(c[k]);
    const tr = el("tr", { "data-channel": String(c.id) });
    tr.append(
      el("td", {}, String(c.id)), el("td", {}, `${c.payer} → ${c.payee}`), el("td", {}, c.state),
      ...["deposit", "claimed", "owed", "refund"].map((k) => el("td", { title: exactWei(c[k]) }, money(c[k], "wei"))),
    );
    return tr;
  });
  document.querySelector("#channels-table tbody").replaceChildren(...rows);
  card.dataset.channels = String(channels.length);
  const names = { deposit: "deposits", claimed: "claimed on chain", owed: "owed by vouchers", refund: "refunded" };
  const items = [el("dt", {}, "channels"), el("dd", { "data-total": "count" }, String(channels.length))];
  for (const [k, name] of Object.entries(names)) {
    items.push(el("dt", {}, name), el("dd", { "data-total": k }, exactWei(sum[k])));
  }
  const match = sum.claimed === sum.owed;
  items.push(el("dt", {}, "claimed = owed"), el("dd", { "data-total": "match", class: match ? "ok" : "bad" }, match ? "yes" : "not yet"));
  totals.replaceChildren(...items);
}

function renderSettlement(panel) {
  const card = document.getElementById("settlement-card");
  const s = panel.settlement;
  card.hidden = !s;
  if (!s) return;
  const roots = s.roots_match === null || s.roots_match === undefined ? "–" : s.roots_match ? "yes" : "NO";
  document.getElementById("settlement").replaceChildren(
    el("dt", {}, "epochs finalised"), el("dd", { "data-settlement": "epochs" }, String(s.epochs_finalised)),
    el("dt", {}, "roots match"), el("dd", { "data-settlement": "roots", class: s.roots_match === false ? "bad" : "ok" }, roots),
    el("dt", {}, "operators slashed"), el("dd", { "data-settlement": "slashed" }, String(s.slashed.length)),
    el("dt", {}, "slashed"), el("dd", {}, money(s.slashed_wei, "wei")),
  );
}

function renderAttacks(panel) {
  const card = document.getElementById("attacks-card");
  const a = panel.attacks;
  const entries = a ? Object.entries(a).filter(([, v]) => Number(v) > 0) : [];
  card.hidden = !a;
  if (!a) return;
  const list = document.getElementById("attacks");
  if (!entries.length) {
    list.replaceChildren(el("dt", {}, "none"), el("dd", {}, "0"));
    return;
  }
  list.replaceChildren(...entries.sort().flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-attack": k }, int(v))]));
}

function renderAccusations(panel) {
  // who rates whom below 0.5 among honest nodes; an accused honest node is slander that worked
  const card = document.getElementById("accusations-card");
  const list = panel.accusations;
  card.hidden = !Array.isArray(list);
  if (!Array.isArray(list)) return;
  const kindOf = Object.fromEntries(panel.nodes.map((n) => [n.id, n.kind]));
  const wrong = list.filter((a) => kindOf[a.of] === "honest").length;
  document.getElementById("accusations-summary").textContent = list.length
    ? `${list.length} · ${wrong} of an honest node`
    : "none";
  document.getElementById("accusations").replaceChildren(
    ...list.map((a) => {
      const li = el("li", { "data-accusation": `${a.by}>${a.of}`, class: kindOf[a.of] === "honest" ? "bad" : "ok" });
      li.textContent = `${a.by} rates ${a.of} (${kindOf[a.of] || "?"}) ${Number(a.rating).toFixed(2)}`;
      return li;
    }),
  );
}

function renderKindLegend(panels) {
  const kinds = [...new Set(panels.flatMap((p) => p.nodes.map((n) => n.kind)))].sort();
  document.getElementById("kind-legend").replaceChildren(
    ...kinds.map((k) => {
      const li = el("li");
      const sw = el("span", { class: "swatch" });
      sw.style.background = kindColour(k);
      li.append(sw, document.createTextNode(k));
      return li;
    }),
  );
}

// ---------------------------------------------------------------- controls

function setup() {
  const pause = document.getElementById("pause");
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.setAttribute("aria-pressed", String(state.paused));
    pause.textContent = state.paused ? "Resume updates" : "Pause updates";
    if (!state.paused) render();
  });
  const pieces = document.getElementById("show-pieces");
  pieces.addEventListener("change", () => {
    state.showPieces = pieces.checked;
    render();
  });
  const select = document.getElementById("detail-panel");
  select.addEventListener("change", () => {
    state.detail = select.value;
    render();
  });
  connect();
  requestAnimationFrame(animateFlows);
}

document.addEventListener("DOMContentLoaded", setup);
