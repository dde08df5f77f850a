/* report.html's only script (inlined at build time): SVG charts and the per-example browser over the JSON
   embedded in the JSON script element #report-data. No network, no library. */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function s(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined || (typeof v === "number" && isNaN(v))) return "—";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const a = Math.abs(v);
    return a >= 1000 ? v.toLocaleString("en-US", {maximumFractionDigits: 0}) : a >= 1 ? v.toFixed(3) : v.toPrecision(4);
  }

  const tfmt = (t) => (Number.isInteger(t) ? fmt(t) : String(+t.toPrecision(6)));

  // ---- scales and axes ----------------------------------------------------------------------------------
  function scale(lo, hi, a, b, log) {
    if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    const k = (b - a) / ((hi - lo) || 1);
    return (v) => a + ((log ? Math.log10(v) : v) - lo) * k;
  }
  function ticks(lo, hi, log) {
    const out = [];
    if (log) {
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
        for (const m of [1, 2, 5]) { const v = m * Math.pow(10, e); if (v >= lo && v <= hi) out.push(v); }
      return out;
    }
    const step0 = (hi - lo) / 6 || 1, p = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= step0);
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function frame(W, H, M, xs, ys, xlo, xhi, ylo, yhi, xlabel, ylabel, logx) {
    const g = s("g", {class: "axis"});
    g.append(s("line", {x1: M.l, y1: H - M.b, x2: W - M.r, y2: H - M.b}));
    g.append(s("line", {x1: M.l, y1: M.t, x2: M.l, y2: H - M.b}));
    for (const t of ticks(xlo, xhi, logx)) {
      g.append(s("line", {x1: xs(t), x2: xs(t), y1: H - M.b, y2: H - M.b + 4}));
      g.append(s("text", {x: xs(t), y: H - M.b + 15, "text-anchor": "middle"}, tfmt(t)));
    }
    for (const t of ticks(ylo, yhi, false)) {
      g.append(s("line", {x1: M.l - 4, x2: M.l, y1: ys(t), y2: ys(t)}));
      g.append(s("text", {x: M.l - 6, y: ys(t) + 4, "text-anchor": "end"}, tfmt(t)));
    }
    g.append(s("text", {x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle"}, xlabel || ""));
    g.append(s("text", {x: 12, y: (M.t + H - M.b) / 2, transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})`,
                        "text-anchor": "middle"}, ylabel || ""));
    return g;
  }
  function legend(items) {
    return h("div", {class: "legend"}, ...items.map((it) => h("span", {}, h("i", {style: `background:${it.color}`}),
                                                               it.label)));
  }

  // ---- charts -------------------------------------------------------------------------------------------
  function hist(b) {
    const W = b.width || 620, H = 300, M = {l: 56, r: 16, t: 26, b: 36}, E = b.edges, logx = !!b.log_x;
    let ymax = 0;
    for (const se of b.series) for (const v of se.values) ymax = Math.max(ymax, v);
    ymax = ymax * 1.08 || 1;
    const xs = scale(E[0], E[E.length - 1], M.l, W - M.r, logx), ys = scale(0, ymax, H - M.b, M.t, false);
    const svg = s("svg", {width: W, height: H, class: "chart hist"});
    svg.append(frame(W, H, M, xs, ys, E[0], E[E.length - 1], 0, ymax, b.xlabel, b.ylabel, logx));
    for (const se of b.series) {
      if (se.fill) {
        se.values.forEach((v, i) => svg.append(s("rect", {x: xs(E[i]), width: Math.max(0.5, xs(E[i + 1]) - xs(E[i])),
          y: ys(v), height: ys(0) - ys(v), fill: se.color, opacity: 0.8})));
      } else {
        let d = `M${xs(E[0])},${ys(0)}`;
        se.values.forEach((v, i) => { d += `L${xs(E[i])},${ys(v)}L${xs(E[i + 1])},${ys(v)}`; });
        d += `L${xs(E[E.length - 1])},${ys(0)}`;
        svg.append(s("path", {d, fill: "none", stroke: se.color, "stroke-width": 2}));
      }
    }
    for (const c of b.cuts || []) {
      const x = xs(Math.min(Math.max(c.value, E[0]), E[E.length - 1]));
      svg.append(s("line", {class: "cut", x1: x, x2: x, y1: M.t - 4, y2: H - M.b, "data-value": String(c.value),
                            "data-label": c.label}));
      const anchor = c.anchor || "middle", dx = anchor === "end" ? -4 : anchor === "start" ? 4 : 0;
      svg.append(s("text", {x: x + dx, y: M.t - 8, "text-anchor": anchor, class: "cut-label"}, `${c.label} ${fmt(c.value)}`));
    }
    return [svg, legend(b.series)];
  }
  function hbar(b) {
    const cats = b.categories, k = b.series.length, bh = 14, gap = 8;
    const W = b.width || 620, M = {l: 170, r: 70, t: 8, b: 8}, H = M.t + M.b + cats.length * (k * bh + gap);
    let vmax = 1;
    for (const se of b.series) for (const v of se.values) if (v !== null) vmax = Math.max(vmax, v);
    const xs = scale(0, vmax, M.l, W - M.r, false), svg = s("svg", {width: W, height: H, class: "chart hbar"});
    cats.forEach((c, i) => {
      const y0 = M.t + i * (k * bh + gap);
      svg.append(s("text", {x: M.l - 6, y: y0 + (k * bh) / 2 + 4, "text-anchor": "end"}, c));
      b.series.forEach((se, j) => {
        const v = se.values[i];
        if (v === null) return;
        const y = y0 + j * bh;
        svg.append(s("rect", {x: M.l, y, width: Math.max(0, xs(v) - M.l), height: bh - 2, fill: se.color}));
        svg.append(s("text", {x: xs(v) + 4, y: y + bh - 4}, fmt(v)));
      });
    });
    return [svg, k > 1 ? legend(b.series) : null];
  }
  function stack(b) {  // one horizontal bar per category, the series stacked left to right (null: no segment)
    const cats = b.categories, bh = 18, gap = 8, W = b.width || 620, M = {l: 210, r: 60, t: 8, b: 8};
    const H = M.t + M.b + cats.length * (bh + gap);
    const totals = cats.map((_, i) => b.series.reduce((t, se) => t + (se.values[i] || 0), 0));
    const xs = scale(0, Math.max(1, ...totals), M.l, W - M.r, false), svg = s("svg", {width: W, height: H, class: "chart stack"});
    cats.forEach((c, i) => {
      const y = M.t + i * (bh + gap);
      svg.append(s("text", {x: M.l - 6, y: y + bh / 2 + 4, "text-anchor": "end"}, c));
      let x0 = 0;
      for (const se of b.series) {
        const v = se.values[i];
        if (!v) continue;
        const seg = s("rect", {class: "seg", x: xs(x0), y, width: Math.max(0, xs(x0 + v) - xs(x0)), height: bh, fill: se.color});
        seg.append(s("title", {}, `${se.label}: ${fmt(v)}`));
        svg.append(seg);
        x0 += v;
      }
      svg.append(s("text", {x: xs(x0) + 4, y: y + bh / 2 + 4}, fmt(totals[i])));
    });
    return [svg, legend(b.series)];
  }
  function scatter(b) {
    const W = b.width || 620, H = 340, M = {l: 56, r: 16, t: 14, b: 36}, logx = !!b.log_x;
    const xr = b.x_range, yr = b.y_range;
    const xs = scale(xr[0], xr[1], M.l, W - M.r, logx), ys = scale(yr[0], yr[1], H - M.b, M.t, false);
    const svg = s("svg", {width: W, height: H, class: "chart scatter"});
    svg.append(frame(W, H, M, xs, ys, xr[0], xr[1], yr[0], yr[1], b.xlabel, b.ylabel, logx));
    for (const g of b.groups) {
      let d = "";
      const r = g.r || 1.6;
      for (let i = 0; i < g.x.length; i++) {
        const x = xs(g.x[i]), y = ys(Math.min(Math.max(g.y[i], yr[0]), yr[1]));
        d += `M${(x - r).toFixed(1)},${y.toFixed(1)}a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0`;
      }
      svg.append(s("path", {d, fill: g.color, opacity: g.opacity || 0.7}));
    }
    for (const l of b.hlines || []) {
      svg.append(s("line", {class: "cut", x1: M.l, x2: W - M.r, y1: ys(l.value), y2: ys(l.value)}));
      svg.append(s("text", {x: W - M.r, y: ys(l.value) - 3, "text-anchor": "end"}, `${l.label} ${fmt(l.value)}`));
    }
    if (b.line) {
      svg.append(s("path", {d: b.line.x.map((x, i) => `${i ? "L" : "M"}${xs(x)},${ys(b.line.y[i])}`).join(""),
                            fill: "none", stroke: "#000", "stroke-width": 1.5}));
    }
    const items = b.groups.map((g) => ({label: g.label, color: g.color}));
    if (b.line) items.push({label: b.line.label, color: "#000"});
    return [svg, legend(items)];
  }
  function table(b) {
    const t = h("table", {class: "t"});
    t.append(h("tr", {}, ...b.columns.map((c) => h("th", {text: c}))));
    for (const r of b.rows) t.append(h("tr", {}, ...r.map((c) => h("td", {text: fmt(c)}))));
    return [h("div", {class: "tscroll"}, t)];  // a wide table scrolls inside its block, never the page
  }
  function intervals(b) {  // estimate with [low, high] per row (accuracy CIs, paired differences)
    const W = b.width || 620, M = {l: 190, r: 150, t: 8, b: 34}, rh = 24, H = M.t + M.b + b.rows.length * rh;
    let lo = Math.min(...b.rows.map((r) => r.low)), hi = Math.max(...b.rows.map((r) => r.high));
    if (b.zero) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    const pad = (hi - lo) * 0.05 || 1, xs = scale(lo - pad, hi + pad, M.l, W - M.r, false);
    const svg = s("svg", {width: W, height: H, class: "chart intervals"});
    const g = s("g", {class: "axis"});
    g.append(s("line", {x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b}));
    for (const t of ticks(lo - pad, hi + pad, false)) {
      g.append(s("line", {x1: xs(t), x2: xs(t), y1: H - M.b, y2: H - M.b + 4}));
      g.append(s("text", {x: xs(t), y: H - M.b + 15, "text-anchor": "middle"}, tfmt(t)));
    }
    g.append(s("text", {x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle"}, b.xlabel || ""));
    svg.append(g);
    if (b.zero) svg.append(s("line", {x1: xs(0), x2: xs(0), y1: M.t, y2: H - M.b, stroke: "#000"}));
    b.rows.forEach((r, i) => {
      const y = M.t + i * rh + rh / 2, c = r.color || "#1f77b4";
      svg.append(s("text", {x: M.l - 8, y: y + 4, "text-anchor": "end"}, r.label));
      svg.append(s("line", {x1: xs(r.low), x2: xs(r.high), y1: y, y2: y, stroke: c, "stroke-width": 2}));
      for (const v of [r.low, r.high]) svg.append(s("line", {x1: xs(v), x2: xs(v), y1: y - 5, y2: y + 5, stroke: c, "stroke-width": 2}));
      if (r.estimate !== null && r.estimate !== undefined) svg.append(s("circle", {cx: xs(r.estimate), cy: y, r: 4, fill: c}));
      svg.append(s("text", {x: W - M.r + 6, y: y + 4}, r.text || `${fmt(r.estimate)} [${fmt(r.low)}, ${fmt(r.high)}]`));
    });
    return [svg];
  }
  function grid(b) {  // rows x columns of scores in [0, 1] (arm x seed by problem)
    const cw = Math.max(2, Math.min(12, Math.floor(900 / b.columns.length))), ch = 14, M = {l: 150, t: 4};
    const W = Math.max(480, M.l + cw * b.columns.length + 10), H = M.t + ch * b.rows.length + 24;
    const svg = s("svg", {width: W, height: H, class: "chart grid"});
    b.rows.forEach((label, i) => {
      svg.append(s("text", {x: M.l - 6, y: M.t + i * ch + ch - 3, "text-anchor": "end"}, label));
      b.values[i].forEach((v, j) => {
        const rect = s("rect", {x: M.l + j * cw, y: M.t + i * ch, width: cw - (cw > 3 ? 1 : 0), height: ch - 1,
                                fill: v === null ? "#eee" : `rgb(${Math.round(215 - 190 * v)},${Math.round(60 + 120 * v)},${Math.round(60 + 20 * v)})`});
        rect.append(s("title", {}, `${label} · ${b.columns[j]}: ${v === null ? "—" : fmt(v)}`));
        svg.append(rect);
      });
    });
    svg.append(s("text", {x: M.l, y: H - 6}, b.xlabel || ""));
    return [svg, legend([{label: "solved", color: "rgb(25,180,80)"}, {label: "not solved", color: "rgb(215,60,60)"}])];
  }
  function links(b) {
    return [h("ul", {}, ...b.items.map((it) => h("li", {}, it.href ? h("a", {href: it.href, text: it.label}) : it.label,
                                                   it.text ? ` — ${it.text}` : "")))];
  }
  const KINDS = {hist, hbar, stack, scatter, table, intervals, grid, links, note: (b) => [h("p", {class: "note", text: b.text})]};

  function renderSections() {
    const main = document.getElementById("sections"), nav = document.getElementById("nav");
    D.sections.forEach((sec, i) => {
      const id = `s${i}`;
      nav.append(h("a", {href: `#${id}`, text: sec.title}));
      const el = h("section", {id}, h("h2", {text: sec.title}));
      for (const b of sec.blocks) {
        const div = h("div", {class: b.kind === "note" ? "" : "block", "data-kind": b.kind});
        if (b.title) div.append(h("h3", {text: b.title}));
        for (const part of KINDS[b.kind](b)) if (part) div.append(part);
        el.append(div);
      }
      main.append(el);
    });
    for (const l of D.links || []) nav.append(h("a", {href: l.href, text: l.label}));
  }

  // ---- per-example browser ------------------------------------------------------------------------------
  function browser() {
    const B = D.browser;
    if (!B) return;
    const root = document.getElementById("browser");
    document.getElementById("nav").append(h("a", {href: "#browser", text: "Examples"}));
    const cols = B.columns, data = B.data, n = data[cols[0].key].length, legendOf = B.status_legend;
    const shortOf = B.status_short || legendOf;  // what a status cell shows; the whole sentence is its tooltip
    const cell = (c, i) => { const v = data[c.key][i]; return c.type === "status" ? legendOf[v] : v; };
    const state = {order: [...Array(n).keys()], match: null, sort: null, desc: false, page: 0, size: 50, active: -1};
    const ranges = {}, statusFilter = {};
    const q = h("input", {type: "search", id: "text-filter", placeholder: "text in id, source, category, status…",
                          size: 36});
    const sizeSel = h("select", {id: "page-size"}, ...[50, 200, 1000, "all"].map((v) => h("option", {value: v, text: v})));
    const rangeBox = h("div", {class: "ranges"});
    for (const c of cols.filter((c) => c.type === "num")) {
      const lo = h("input", {type: "number", step: "any", id: `min-${c.key}`, placeholder: "min"});
      const hi = h("input", {type: "number", step: "any", id: `max-${c.key}`, placeholder: "max"});
      ranges[c.key] = [lo, hi];
      rangeBox.append(h("span", {}, `${c.label} `, lo, "–", hi));
    }
    const statusBox = h("div", {class: "ranges"});
    for (const c of cols.filter((c) => c.type === "status")) {
      const sel = h("select", {id: `status-${c.key}`}, ...["any", "kept", "dropped"].map((v) => h("option", {value: v, text: v})));
      statusFilter[c.key] = sel;
      statusBox.append(h("span", {}, `${c.label}: `, sel));
    }
    const count = h("span", {id: "match-count"}), pageInfo = h("span", {id: "page-info"});
    const prev = h("button", {text: "◀", onclick: () => { state.page = Math.max(0, state.page - 1); draw(); }});
    const next = h("button", {text: "▶", onclick: () => { state.page += 1; draw(); }});
    const thead = h("tr", {}), tbody = h("tbody", {id: "rows"}), detail = h("div", {id: "detail"});
    cols.forEach((c) => thead.append(h("th", {text: c.label, title: c.help || "", "data-key": c.key,
                                               onclick: () => sortBy(c.key)})));
    root.append(h("h2", {text: "Examples"}), h("p", {class: "note", text: B.note}),
                h("div", {class: "controls"}, q, " rows per page ", sizeSel, " ", prev, next, " ", pageInfo, " · ",
                  count, " match of ", h("b", {id: "table-rows", text: String(n)}), " rows in the table (pool ",
                  fmt(B.n_pool), ")"),
                h("div", {class: "controls"}, rangeBox, statusBox),
                h("div", {class: "wrap"}, h("table", {class: "t", id: "example-table"}, h("thead", {}, thead), tbody)),
                detail);
    function filter() {
      const text = q.value.trim().toLowerCase();
      const rs = Object.entries(ranges).map(([k, [lo, hi]]) => [data[k], lo.value === "" ? -Infinity : +lo.value,
                                                                 hi.value === "" ? Infinity : +hi.value])
        .filter(([, a, b]) => a !== -Infinity || b !== Infinity);
      const ss = Object.entries(statusFilter).filter(([, sel]) => sel.value !== "any")
        .map(([k, sel]) => [data[k], sel.value]);
      const strCols = cols.filter((c) => c.type === "str" || c.type === "status");
      const out = [];
      for (let i = 0; i < n; i++) {
        let ok = true;
        for (const [arr, a, b] of rs) { const v = arr[i]; if (v === null || v < a || v > b) { ok = false; break; } }
        if (ok) for (const [arr, want] of ss) if (!legendOf[arr[i]].startsWith(want)) { ok = false; break; }
        if (ok && text) ok = strCols.some((c) => String(cell(c, i)).toLowerCase().includes(text));
        if (ok) out.push(i);
      }
      state.match = out;
      applySort();
    }
    function applySort() {
      if (state.sort) {
        const c = cols.find((c) => c.key === state.sort), sign = state.desc ? -1 : 1;
        state.match.sort((a, b) => {
          const x = cell(c, a), y = cell(c, b);
          if (x === y) return a - b;
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : 1) * sign;
        });
      }
      state.page = 0;
      draw();
    }
    function sortBy(key) {
      state.desc = state.sort === key ? !state.desc : false;
      state.sort = key;
      thead.querySelectorAll("th").forEach((th) => {
        const c = cols.find((c) => c.key === th.dataset.key);
        th.textContent = c.label + (c.key === key ? (state.desc ? " ▼" : " ▲") : "");
      });
      applySort();
    }
    function draw() {
      const size = sizeSel.value === "all" ? state.match.length || 1 : +sizeSel.value;
      const pages = Math.max(1, Math.ceil(state.match.length / size));
      state.page = Math.min(state.page, pages - 1);
      const part = state.match.slice(state.page * size, (state.page + 1) * size);
      count.textContent = String(state.match.length);
      pageInfo.textContent = `page ${state.page + 1} of ${pages}`;
      const frag = document.createDocumentFragment();
      for (const i of part) {
        const tr = h("tr", {class: "row" + (i === state.active ? " active" : ""), "data-pos": i, onclick: () => show(i, tr)});
        for (const c of cols) {
          const v = cell(c, i);
          const td = c.type === "status" ? h("td", {text: shortOf[data[c.key][i]], title: v}) : h("td", {text: fmt(v)});
          if (c.type === "status") td.className = "status " + (String(v).startsWith("kept") ? "kept" : "dropped");
          tr.append(td);
        }
        frag.append(tr);
      }
      tbody.replaceChildren(frag);
    }
    function lossColor(loss) {
      const a = Math.max(0, Math.min(1, loss / (B.loss_scale || 5)));
      return `rgba(215,48,39,${a.toFixed(3)})`;
    }
    function show(i, tr) {
      state.active = i;
      tbody.querySelectorAll("tr.active").forEach((r) => r.classList.remove("active"));
      if (tr) tr.classList.add("active");
      const t = (B.texts || {})[String(i)];
      const facts = cols.map((c) => `${c.label}: ${fmt(cell(c, i))}`).join(" · ");
      const parts = [h("h3", {text: `Row ${fmt(data.row ? data.row[i] : i)} — ${data.id ? data.id[i] : ""}`}),
                     h("p", {class: "note", text: facts})];
      if (!t) {
        parts.push(h("p", {class: "note", id: "no-text", text: B.text_note || "No text embedded for this row."}));
      } else {
        if (t.note) parts.push(h("p", {class: "note", text: t.note}));
        parts.push(h("h4", {text: t.prompt_label || "Prompt (as LLaMA-Factory renders it)"}), h("div", {class: "msg", id: "prompt-text", text: t.prompt}));
        const resp = h("div", {class: "msg", id: "response-text"});
        if (t.steps) {
          for (const st of t.steps) resp.append(st.deleted ? h("del", {title: `deleted ${st.type || ""} step`, text: st.text})
                                                           : document.createTextNode(st.text));
        } else {
          for (const [piece, loss] of t.pieces || []) resp.append(h("span", {class: "tok", title: `loss ${loss.toFixed(3)}`,
                                                                              style: `background:${lossColor(loss)}`, text: piece}));
          resp.append(document.createTextNode(t.response || ""));
        }
        parts.push(h("h4", {text: t.steps ? "Response (struck through: steps PIR pruning deleted)" :
                                  t.pieces && t.pieces.length ? `Response (first ${t.pieces.length} tokens coloured by loss)` :
                                  "Response (as LLaMA-Factory renders it)"}), resp);
      }
      detail.replaceChildren(...parts);
    }
    q.addEventListener("input", filter);
    sizeSel.addEventListener("change", () => { state.page = 0; draw(); });
    for (const [lo, hi] of Object.values(ranges)) { lo.addEventListener("input", filter); hi.addEventListener("input", filter); }
    for (const sel of Object.values(statusFilter)) sel.addEventListener("change", filter);
    filter();
  }

  renderSections();
  browser();
  document.body.setAttribute("data-ready", "1");
})();
