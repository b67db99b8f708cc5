/* lstm-inspect report: builds the page from the JSON payload with plotly.js (inlined above).
 *
 * Payload (lstm_inspect/report.py): model, layers, sequences, trace[sequence][layer][value]
 * (float32 units × columns, base64), saturation[layer], weights[layer], stride, notes, text.
 * A column is one step, or the mean of `stride` steps for a long input.
 */
(function () {
  "use strict";
  const P = JSON.parse(document.getElementById("payload").textContent);
  const STRIDE = P.stride;
  const state = { seq: 0, unit: {}, matches: {}, xrange: null, syncing: false };
  const timePlots = [];
  const GATE_COLOURS = { i: "#1f77b4", f: "#d62728", o: "#2ca02c", c: "#9467bd", z: "#ff7f0e", r: "#17becf", h: "#7f7f7f" };

  // ------------------------------------------------------------------ data

  const decoded = new Map();
  function decode(b64, type) {
    const key = type + ":" + b64;
    if (decoded.has(key)) return decoded.get(key);
    const text = atob(b64);
    const bytes = new Uint8Array(text.length);
    for (let k = 0; k < text.length; k++) bytes[k] = text.charCodeAt(k);
    const array = type === "u1" ? bytes : new Float32Array(bytes.buffer);
    decoded.set(key, array);
    return array;
  }
  function columns(seq, li) { return P.trace[seq][li].columns; }
  function values(seq, li, name) { return decode(P.trace[seq][li][name], "f4"); }
  function masked(seq, li) { return decode(P.trace[seq][li].masked, "u1"); }
  function rows(seq, li, name) {
    const data = values(seq, li, name), C = columns(seq, li), U = P.layers[li].units, out = [];
    for (let u = 0; u < U; u++) out.push(Array.from(data.subarray(u * C, (u + 1) * C)));
    return out;
  }
  function xs(seq, li) { const C = columns(seq, li), x = []; for (let j = 0; j < C; j++) x.push(j * STRIDE); return x; }
  function stepsText(col, seq) {
    if (STRIDE === 1) return "t " + col;
    const last = Math.min((col + 1) * STRIDE, P.sequences[seq].steps) - 1;
    return "t " + col * STRIDE + "–" + last + " (mean of " + (last - col * STRIDE + 1) + " steps)";
  }
  function inputText(seq, col) {
    const s = P.sequences[seq];
    if (s.ids) {
      if (STRIDE > 1) return "";  // a column covers several tokens: the text view shows them
      const id = s.ids[col];
      if (id === undefined) return "";
      return s.tokens ? "token " + JSON.stringify(s.tokens[col]) + " (id " + id + ")" : "token id " + id;
    }
    if (!s.inputs) return "";
    const data = decode(s.inputs, "f4"), w = s.input_width;
    const row = Array.from(data.subarray(col * w, (col + 1) * w)).map(v => Number(v.toPrecision(4)));
    return "input [" + row.join(", ") + (s.features > w ? ", …" : "") + "] (" + s.features + " features)";
  }
  function fmt(v) { return Number.isNaN(v) ? "empty (masked step)" : String(Number(v.toPrecision(8))); }

  // ------------------------------------------------------------------ page skeleton

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const child of children || []) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    return node;
  }
  const app = document.getElementById("app");
  const select = el("select", { id: "sequence" }, P.sequences.map((s, k) =>
    el("option", { value: String(k), text: "sequence " + s.id + " (" + s.steps + " steps)" })));
  const nav = el("nav", {}, [el("a", { href: "#model", text: "Model" })]
    .concat(P.layers.map((l, li) => el("a", { href: "#layer-" + li, text: l.name })))
    .concat(P.text ? [el("a", { href: "#text", text: "Text" })] : [])
    .concat([el("a", { href: "#weights", text: "Weights" })]));
  app.appendChild(el("header", {}, [el("h1", { text: P.title }), el("label", {}, ["Sequence", select]), nav]));
  const main = el("main");
  app.appendChild(main);
  if (P.notes.length) main.appendChild(el("div", { class: "notes", id: "notes" }, P.notes.map(n => el("p", { text: n }))));

  // ------------------------------------------------------------------ model

  (function model() {
    const m = P.model;
    const table = el("table", { class: "layers" }, [
      el("tr", {}, m.columns.map(c => el("th", { text: c }))),
      ...m.rows.map(r => el("tr", {}, r.map(v => el("td", { text: v })))),
    ]);
    const parts = [el("h2", { text: "Model: " + m.label }),
      el("p", { text: m["class"] + " saved by Keras " + m.keras_version }), table];
    for (const r of m.recurrent) {
      parts.push(el("h3", { text: r.name + ": " + r.kind + ", " + r.units + " units, activation=" + r.activation +
        ", recurrent_activation=" + r.recurrent_activation + (r.go_backwards ? ", go_backwards" : "") }));
      parts.push(el("pre", { class: "equations", text: r.equations.join("\n") }));
    }
    main.appendChild(el("section", { id: "model" }, parts));
  })();

  // ------------------------------------------------------------------ layers

  function colourscale(scale) { return scale.diverging ? "RdBu" : "Viridis"; }
  const PLOT_CONFIG = { displaylogo: false, responsive: true };

  function heatmapHeight(units) { return Math.max(120, Math.min(340, 50 + units * 13)); }

  function heatmapData(seq, li, name) {
    const layer = P.layers[li], scale = layer.scales[name];
    const data = [{
      type: "heatmap", z: rows(seq, li, name), x: xs(seq, li), y: [...Array(layer.units).keys()],
      zmin: scale.range[0], zmax: scale.range[1], colorscale: colourscale(scale),
      colorbar: { thickness: 10, len: 0.9, x: 1.01, xanchor: "left", tickfont: { size: 10 } },
      hovertemplate: "t %{x} · unit %{y}<br>" + name + " %{z:.6g}<extra></extra>",
    }];
    if (name === "hidden") {  // invisible points that box selection picks up (heatmaps cannot be selected)
      const gx = [], gy = [], every = Math.max(1, Math.floor(layer.units / 12)), x = xs(seq, li);
      for (let u = 0; u < layer.units; u += every) for (const t of x) { gx.push(t); gy.push(u); }
      data.push({ type: "scatter", mode: "markers", x: gx, y: gy, marker: { opacity: 0, size: 1 },
        hoverinfo: "skip", showlegend: false, name: "selection" });
    }
    return data;
  }

  function heatmapLayout(li, name, last) {
    const layer = P.layers[li];
    return {
      height: heatmapHeight(layer.units) + (last ? 28 : 0), margin: { l: 70, r: 80, t: 6, b: last ? 40 : 12 },
      xaxis: { title: last ? { text: "t (input row)" } : undefined, range: state.xrange || fullRange(state.seq, li),
        zeroline: false, showticklabels: last },
      yaxis: { title: { text: name + "<br><sub>" + layer.value_names[name] + "</sub>" },
        autorange: "reversed", zeroline: false },
      plot_bgcolor: "#d9d9d9", dragmode: name === "hidden" ? "select" : "zoom", selectdirection: "h",
      shapes: shapes(li), uirevision: "sequence " + state.seq,
    };
  }

  function fullRange(seq, li) { return [-0.5 * STRIDE, (columns(seq, li) - 0.5) * STRIDE]; }

  function shapes(li) {
    const out = [];
    for (const m of state.matches[li] || []) {
      if (m.seq !== state.seq) continue;
      out.push({ type: "rect", xref: "x", yref: "paper", x0: m.t0 - 0.5, x1: m.t1 + 0.5, y0: 0, y1: 1,
        line: { color: m.selection ? "#000" : "#ff00aa", width: 2 }, fillcolor: "rgba(0,0,0,0)" });
    }
    const unit = state.unit[li];
    if (unit !== undefined) {
      out.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: unit, y1: unit, line: { color: "#ff00aa", width: 1, dash: "dot" } });
    }
    return out;
  }

  function linkZoom(div) {
    timePlots.push(div);
    div.on("plotly_relayout", ev => {
      if (state.syncing) return;
      let range;
      if (ev["xaxis.range[0]"] !== undefined) range = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
      else if (ev["xaxis.range"]) range = ev["xaxis.range"];
      else if (ev["xaxis.autorange"]) range = null;
      else return;
      state.xrange = range;
      state.syncing = true;
      Promise.all(timePlots.filter(d => d !== div).map(d =>
        Plotly.relayout(d, range ? { "xaxis.range": range.slice() } : { "xaxis.autorange": true })))
        .finally(() => { state.syncing = false; });
    });
  }

  function hoverPanel(li) { return document.getElementById("hover-" + li); }

  function showHover(li, name, unit, col) {
    const seq = state.seq, C = columns(seq, li);
    const v = values(seq, li, name)[unit * C + col];
    const panel = hoverPanel(li);
    panel.dataset.layer = P.layers[li].name; panel.dataset.value_name = name;
    panel.dataset.t = String(col * STRIDE); panel.dataset.unit = String(unit); panel.dataset.value = String(v);
    const input = inputText(seq, col);
    panel.textContent = P.layers[li].name + " · " + name + " · " + stepsText(col, seq) + " · unit " + unit +
      " · " + fmt(v) + (masked(seq, li)[col] ? " · masked" : "") + (input ? " · " + input : "");
  }

  function drawUnit(li) {
    const unit = state.unit[li], div = document.getElementById("unit-" + li), layer = P.layers[li];
    if (unit === undefined) {
      Plotly.react(div, [], {
        height: 120, margin: { l: 10, r: 10, t: 10, b: 10 }, xaxis: { visible: false }, yaxis: { visible: false },
        annotations: [{ text: "Click a heatmap cell or a saturation point to draw that unit's values over time",
          showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }],
      }, PLOT_CONFIG);
      return;
    }
    const seq = state.seq, C = columns(seq, li), x = xs(seq, li);
    const data = layer.values.map(name => ({
      type: "scatter", mode: "lines", name: name, x: x,
      y: Array.from(values(seq, li, name).subarray(unit * C, (unit + 1) * C)),
      line: { color: GATE_COLOURS[name] || (name === "cell" ? "#8c564b" : "#111") },
      hovertemplate: name + " %{y:.6g} · t %{x}<extra></extra>",
    }));
    Plotly.react(div, data, {
      height: 260, margin: { l: 50, r: 10, t: 30, b: 36 }, title: { text: layer.name + " · unit " + unit, font: { size: 13 } },
      xaxis: { title: { text: "t (input row)" }, range: state.xrange || fullRange(seq, li) }, uirevision: "sequence " + state.seq,
      legend: { orientation: "h" },
    }, PLOT_CONFIG);
    div.dataset.unit = String(unit);
  }

  function selectUnit(li, unit) {
    state.unit[li] = unit;
    drawUnit(li);
    for (const name of P.layers[li].values) Plotly.relayout("hm-" + li + "-" + name, { shapes: shapes(li) });
    if (P.text) { textLayer.value = String(li); textUnit.value = String(unit); fillTextValues(); drawText(); }
  }

  function renderLayer(li) {
    const layer = P.layers[li];
    for (const [k, name] of layer.values.entries()) {
      const id = "hm-" + li + "-" + name;
      Plotly.react(id, heatmapData(state.seq, li, name), heatmapLayout(li, name, k === layer.values.length - 1), PLOT_CONFIG);
    }
    drawUnit(li);
  }

  P.layers.forEach((layer, li) => {
    const section = el("section", { id: "layer-" + li }, [
      el("h2", { text: layer.name + " (" + layer.kind + ", " + layer.units + " units)" +
        (layer.go_backwards ? ": processed last row first (go_backwards)" : "") }),
      el("p", { class: "caption", text: "Hover a cell for its value and input row; click it to draw that unit over time. " +
        "Zooming on time zooms every chart. Drag on the hidden-state heatmap to select a time span for the pattern search." }),
      el("div", { class: "hover-panel", id: "hover-" + li, text: " " }),
    ]);
    main.appendChild(section);
    for (const name of layer.values) section.appendChild(el("div", { class: "heatmap", id: "hm-" + li + "-" + name }));
    section.appendChild(el("div", { class: "search", id: "search-" + li }, [
      el("b", { text: "Pattern search (hidden state): " }),
      "from t", el("input", { type: "number", id: "from-" + li, min: "0" }),
      "to t", el("input", { type: "number", id: "to-" + li, min: "0" }),
      "threshold", el("input", { type: "number", id: "thr-" + li, value: "0.3", step: "0.05" }),
      "at least", el("input", { type: "number", id: "min-" + li, min: "1" }), "steps ",
      el("button", { id: "run-" + li, type: "button", text: "Search" }),
      el("div", { class: "units-on", id: "units-" + li }),
      el("div", { class: "matches", id: "matches-" + li }),
    ]));
    section.appendChild(el("div", { class: "row" }, [
      el("div", { id: "unit-" + li, style: "flex: 2 1 600px; min-height: 40px" }),
      el("div", { style: "flex: 1 1 340px" }, [el("div", { id: "sat-" + li }), el("div", { class: "caption", id: "sat-caption-" + li })]),
    ]));
  });

  function bindLayer(li) {
    const layer = P.layers[li];
    for (const name of layer.values) {
      const div = document.getElementById("hm-" + li + "-" + name);
      linkZoom(div);
      div.on("plotly_hover", ev => {
        const pt = ev.points.find(p => p.data.type === "heatmap");
        if (pt) showHover(li, name, pt.y, Math.round(pt.x / STRIDE));
      });
      div.on("plotly_click", ev => {
        const pt = ev.points.find(p => p.data.type === "heatmap");
        if (pt) selectUnit(li, pt.y);
      });
      if (name === "hidden") {
        div.on("plotly_selected", ev => {
          if (!ev || !ev.points || !ev.points.length) return;
          const ts = ev.points.map(p => p.x);
          const from = Math.min(...ts), to = Math.max(...ts) + STRIDE - 1;
          document.getElementById("from-" + li).value = String(from);
          document.getElementById("to-" + li).value = String(to);
          document.getElementById("min-" + li).value = String(to - from + 1);
          search(li);
        });
      }
    }
    linkZoom(document.getElementById("unit-" + li));
    document.getElementById("run-" + li).addEventListener("click", () => search(li));
  }

  // ------------------------------------------------------------------ pattern search (LSTMVis-style)

  function search(li) {
    const num = id => Number(document.getElementById(id + "-" + li).value);
    const from = num("from"), to = num("to"), thr = num("thr");
    const unitsDiv = document.getElementById("units-" + li), list = document.getElementById("matches-" + li);
    list.textContent = "";
    if (!(to >= from) || Number.isNaN(thr)) { unitsDiv.textContent = "Give a span (from ≤ to) and a threshold."; return; }
    const minSteps = Math.max(1, num("min") || (to - from + 1));
    const a = Math.floor(from / STRIDE), b = Math.floor(to / STRIDE), minCols = Math.ceil(minSteps / STRIDE);
    const seq = state.seq, C = columns(seq, li), H = values(seq, li, "hidden"), U = P.layers[li].units;
    if (b >= C) { unitsDiv.textContent = "The span ends after the sequence (" + P.sequences[seq].steps + " steps)."; return; }
    const on = [];
    for (let u = 0; u < U; u++) {
      let all = true;
      for (let j = a; j <= b && all; j++) all = H[u * C + j] > thr;
      if (all) on.push(u);
    }
    unitsDiv.dataset.units = on.join(",");
    if (!on.length) {
      unitsDiv.textContent = "No unit stays above " + thr + " throughout t " + from + "–" + to + ".";
      state.matches[li] = [];
      renderShapes(li);
      return;
    }
    unitsDiv.textContent = on.length + " unit(s) stay above " + thr + " throughout t " + from + "–" + to + ": " + on.join(", ");
    const matches = [];
    P.sequences.forEach((s, si) => {
      const Cs = columns(si, li), Hs = values(si, li, "hidden");
      let start = -1;
      for (let j = 0; j <= Cs; j++) {
        const lit = j < Cs && on.every(u => Hs[u * Cs + j] > thr);
        if (lit && start < 0) start = j;
        if (!lit && start >= 0) {
          if (j - start >= minCols) {
            const t0 = start * STRIDE, t1 = Math.min(j * STRIDE, s.steps) - 1;
            matches.push({ seq: si, t0: t0, t1: t1, selection: si === seq && start <= a && j - 1 >= b });
          }
          start = -1;
        }
      }
    });
    state.matches[li] = matches;
    list.dataset.matches = JSON.stringify(matches.map(m => [P.sequences[m.seq].id, m.t0, m.t1]));
    list.appendChild(el("span", { text: matches.length + " span(s) where these units are all on for at least " + minSteps + " steps: " }));
    for (const m of matches) {
      const button = el("button", { type: "button", text: "sequence " + P.sequences[m.seq].id + ": t " + m.t0 + "–" + m.t1 +
        (m.selection ? " (selection)" : "") });
      button.addEventListener("click", () => {
        setSequence(m.seq);
        const pad = Math.max(2, Math.round((m.t1 - m.t0 + 1) * 2));
        Plotly.relayout("hm-" + li + "-hidden", { "xaxis.range": [m.t0 - pad, m.t1 + pad] });
      });
      list.appendChild(button);
    }
    renderShapes(li);
  }

  function renderShapes(li) {
    for (const name of P.layers[li].values) Plotly.relayout("hm-" + li + "-" + name, { shapes: shapes(li) });
  }

  // ------------------------------------------------------------------ saturation (Karpathy et al. 2015, §4.2)

  function drawSaturation(li) {
    const points = P.saturation[li], layer = P.layers[li], div = document.getElementById("sat-" + li);
    const caption = document.getElementById("sat-caption-" + li);
    if (!points.length) { div.appendChild(el("p", { class: "caption", text: "No gate with a bounded activation." })); return; }
    const gates = [...new Set(points.map(p => p.gate))], labelled = new Set();
    const data = gates.map(gate => {
      const mine = points.filter(p => p.gate === gate);
      return {
        type: "scatter", mode: "markers+text", name: gate, x: mine.map(p => p.left), y: mine.map(p => p.right),
        marker: { size: mine.map(p => 7 * Math.sqrt(p.units.length)), color: GATE_COLOURS[gate] || "#555", opacity: 0.75,
          line: { color: "#fff", width: 0.5 } },
        text: mine.map(p => {  // one count per place, whatever the gate: how many points it hides
          const key = p.left + "," + p.right;
          if (p.shared < 2 || labelled.has(key)) return "";
          labelled.add(key);
          return String(p.shared);
        }),
        textposition: "top right", textfont: { size: 11 }, customdata: mine.map(p => p.units),
        hovertext: mine.map(p => gate + " (" + layer.value_names[gate] + "): unit" + (p.units.length > 1 ? "s " : " ") +
          p.units.join(", ") + "<br>left " + p.left.toFixed(3) + " · right " + p.right.toFixed(3)),
        hoverinfo: "text",
      };
    });
    Plotly.newPlot(div, data, {
      height: 330, margin: { l: 50, r: 10, t: 30, b: 44 }, title: { text: layer.name + ": gate saturation", font: { size: 13 } },
      xaxis: { title: { text: "fraction left-saturated (< 0.1)" }, range: [-0.05, 1.05] },
      yaxis: { title: { text: "fraction right-saturated (> 0.9)" }, range: [-0.05, 1.05] },
      shapes: [{ type: "line", x0: 0, y0: 1, x1: 1, y1: 0, line: { dash: "dash", color: "#999", width: 1 } }],
      legend: { title: { text: "gate" } },
    }, PLOT_CONFIG);
    caption.textContent = "Numbers: how many units sit at one point (all gates). Over all sequences, as `stats` computes it.";
    div.on("plotly_click", ev => {
      const units = ev.points[0].customdata;
      caption.textContent = "Selected " + ev.points[0].data.name + " unit" + (units.length > 1 ? "s " : " ") + units.join(", ") +
        "; drawing unit " + units[0] + ".";
      selectUnit(li, units[0]);
    });
  }

  // ------------------------------------------------------------------ text (Karpathy-style)

  let textLayer, textValue, textUnit;
  function fillTextValues() {
    const layer = P.layers[Number(textLayer.value)], keep = textValue.value;
    textValue.replaceChildren(...layer.values.map(v => el("option", { value: v, text: v })));
    textValue.value = layer.values.includes(keep) ? keep : "hidden";
    textUnit.max = String(layer.units - 1);
  }
  function colour(v, scale) {
    if (Number.isNaN(v)) return "#e0e0e0";
    const [lo, hi] = scale.range, x = Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1)));
    if (scale.diverging) {  // blue (low) - white - red (high)
      const d = Math.abs(x - 0.5) * 2, c = Math.round(255 * (1 - d));
      return x >= 0.5 ? "rgb(255," + c + "," + c + ")" : "rgb(" + c + "," + c + ",255)";
    }
    const mix = (from, to) => Math.round(from + x * (to - from));  // white - green
    return "rgb(" + mix(255, 30) + "," + mix(255, 150) + "," + mix(255, 60) + ")";
  }
  function drawText() {
    const view = document.getElementById("text-view"), seq = P.sequences[state.seq];
    const li = Number(textLayer.value), name = textValue.value, unit = Math.max(0, Math.min(Number(textUnit.value) || 0, P.layers[li].units - 1));
    const C = columns(state.seq, li), data = values(state.seq, li, name), scale = P.layers[li].scales[name];
    const tokens = seq.tokens || seq.ids.map(String);
    const wordy = tokens.some(t => t.length > 1);
    const spans = tokens.map((token, t) => {
      const v = data[unit * C + Math.floor(t / STRIDE)];
      const span = el("span", { "data-t": String(t), "data-value": String(v),
        title: "t " + t + " · " + JSON.stringify(token) + " · " + name + "[" + unit + "] = " + fmt(v),
        style: "background:" + colour(v, scale) }, [token === "\n" ? "↵\n" : token]);
      return span;
    });
    view.replaceChildren(...spans.flatMap((s, k) => (wordy && k ? [" ", s] : [s])));
    view.dataset.layer = P.layers[li].name; view.dataset.valueName = name; view.dataset.unit = String(unit);
  }
  if (P.text) {
    textLayer = el("select", { id: "text-layer" }, P.layers.map((l, li) => el("option", { value: String(li), text: l.name })));
    textValue = el("select", { id: "text-value" });
    textUnit = el("input", { type: "number", id: "text-unit", value: "0", min: "0" });
    main.appendChild(el("section", { id: "text" }, [
      el("h2", { text: "Text: each token coloured by one unit's value" }),
      el("div", { class: "text-controls" }, ["layer", textLayer, "value", textValue, "unit", textUnit]),
      el("div", { class: "text-view", id: "text-view" }),
      el("p", { class: "caption", text: "Click a unit in a heatmap or in the saturation scatter to show it here." }),
    ]));
    fillTextValues();
    textLayer.addEventListener("change", () => { fillTextValues(); drawText(); });
    textValue.addEventListener("change", drawText);
    textUnit.addEventListener("input", drawText);
  }

  // ------------------------------------------------------------------ weights

  function drawWeights() {
    const section = el("section", { id: "weights" }, [el("h2", { text: "Weights, labelled as `lstm-inspect weights` labels them" })]);
    main.appendChild(section);
    P.weights.forEach((layer, wi) => {
      section.appendChild(el("h3", { text: layer.layer }));
      const grid = el("div", { class: "gate-grid" });
      section.appendChild(grid);
      layer.blocks.forEach((block, bi) => {
        const id = "w-" + wi + "-" + bi, data = decode(block.values, "f4");
        grid.appendChild(el("div", {}, [el("div", { id: id }),
          el("div", { class: "caption", text: block.path + " " + block.columns })]));
        whenVisible(document.getElementById(id), () => drawBlock(id, block, data));
      });
    });
  }

  // Weight charts are many: each is drawn when it first scrolls into view.
  const pending = new Map();
  const observer = "IntersectionObserver" in window ? new IntersectionObserver(entries => {
    for (const entry of entries) {
      if (!entry.isIntersecting || !pending.has(entry.target)) continue;
      observer.unobserve(entry.target);
      const draw = pending.get(entry.target);
      pending.delete(entry.target);
      draw();
    }
  }, { rootMargin: "400px" }) : null;
  function whenVisible(div, draw) {
    div.style.minHeight = "150px";
    if (!observer) { draw(); return; }
    pending.set(div, draw);
    observer.observe(div);
  }

  function drawBlock(id, block, data) {
    const units = block.shape[block.shape.length - 1], nrows = block.shape.length > 1 ? block.shape[0] : 1;
    const z = [];
    for (let r = 0; r < nrows; r++) z.push(Array.from(data.subarray(r * units, (r + 1) * units)));
    let top = 1e-12;
    for (const v of data) if (Math.abs(v) > top) top = Math.abs(v);
    Plotly.newPlot(id, [{
      type: "heatmap", z: z, colorscale: "RdBu", zmin: -top, zmax: top,
      colorbar: { thickness: 8 },
      hovertemplate: "unit %{x}" + (block.rows ? " · " + block.rows + " %{y}" : "") + "<br>%{z:.6g}<extra></extra>",
    }], {
      height: block.shape.length > 1 ? Math.max(160, Math.min(320, 70 + nrows * 10)) : 130,
      margin: { l: 50, r: 10, t: 28, b: 42 },
      yaxis: { autorange: "reversed", title: { text: block.rows || "" }, showticklabels: block.shape.length > 1 },
      title: { text: block.tensor + " · " + block.gate + " (" + block.gate_name + ")", font: { size: 12 } },
      xaxis: { title: { text: "unit" } },
    }, PLOT_CONFIG);
    document.getElementById(id).dataset.drawn = "1";
  }

  // ------------------------------------------------------------------ go

  function setSequence(seq) {
    state.seq = seq;
    select.value = String(seq);
    state.xrange = null;
    P.layers.forEach((_, li) => { hoverPanel(li).textContent = " "; renderLayer(li); });
    if (P.text) drawText();
  }
  select.addEventListener("change", () => setSequence(Number(select.value)));
  P.layers.forEach((_, li) => { renderLayer(li); bindLayer(li); drawSaturation(li); });
  if (P.text) drawText();
  drawWeights();
  document.body.dataset.ready = "1";
})();
