// Small SVG charts drawn by hand (no library, no network): line charts with several series and scatter plots.
// Charts.plot(container, {title, series: [{name, points: [[x, y], ...], dots, line}], xLabel, yLabel, logX})
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f6fdf", "#e4572e", "#1f8a4c", "#9b5de5", "#f2a541", "#00a6a6", "#c43d3d", "#5c6b7a", "#d62fa0", "#7a9e1f"];
  const W = 560, H = 260, M = { l: 58, r: 26, t: 10, b: 38 };

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((s) => s * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
    return { lo: Math.min(lo, ticks[0]), hi: Math.max(hi, ticks[ticks.length - 1]), ticks };
  }

  function decades(lo, hi) {  // log10 axis: whole powers of ten around the data
    const a = Math.floor(lo), b = Math.max(Math.ceil(hi), a + 1), ticks = [];
    for (let t = a; t <= b; t++) ticks.push(t);
    return { lo: a, hi: b, ticks };
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e6 || a < 1e-3) return v.toExponential(1);
    if (a >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 0 });
    return +v.toPrecision(4) + "";
  }

  function plot(container, opts) {
    container.textContent = "";
    container.classList.add("chart");
    if (opts.title) { const t = document.createElement("div"); t.className = "title"; t.textContent = opts.title; container.appendChild(t); }
    const series = (opts.series || []).filter((s) => s.points && s.points.length);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title || "chart" }, container);
    if (!series.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#68717d", "font-size": 13 }, svg).textContent = opts.empty || "no data yet";
      return svg;
    }
    const tx = (x) => (opts.logX ? Math.log10(Math.max(x, 1e-12)) : x);
    const xs = series.flatMap((s) => s.points.map((p) => tx(p[0]))), ys = series.flatMap((s) => s.points.map((p) => p[1]));
    const X = opts.logX ? decades(Math.min(...xs), Math.max(...xs)) : niceTicks(Math.min(...xs), Math.max(...xs), 6);
    const Y = niceTicks(Math.min(...ys), Math.max(...ys), 5);
    const px = (x) => M.l + ((tx(x) - X.lo) / (X.hi - X.lo)) * (W - M.l - M.r);
    const py = (y) => H - M.b - ((y - Y.lo) / (Y.hi - Y.lo)) * (H - M.t - M.b);
    const axis = el("g", { "font-size": 11, fill: "#68717d" }, svg);
    for (const t of Y.ticks) {
      el("line", { x1: M.l, x2: W - M.r, y1: py(t), y2: py(t), stroke: "#e6e9ed" }, axis);
      el("text", { x: M.l - 6, y: py(t) + 4, "text-anchor": "end" }, axis).textContent = fmt(t);
    }
    for (const t of X.ticks) {
      const x = M.l + ((t - X.lo) / (X.hi - X.lo)) * (W - M.l - M.r);
      el("line", { x1: x, x2: x, y1: H - M.b, y2: H - M.b + 4, stroke: "#9aa4b1" }, axis);
      el("text", { x, y: H - M.b + 16, "text-anchor": "middle" }, axis).textContent = opts.logX ? fmt(Math.pow(10, t)) : fmt(t);
    }
    el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, stroke: "#9aa4b1" }, axis);
    if (opts.xLabel) el("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle" }, axis).textContent = opts.xLabel;
    if (opts.yLabel) el("text", { x: 12, y: (M.t + H - M.b) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})` }, axis).textContent = opts.yLabel;
    series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const pts = s.points.slice().sort((a, b) => a[0] - b[0]);
      const g = el("g", { "data-series": s.name }, svg);
      if (s.line !== false && pts.length > 1) {
        el("path", { d: pts.map((p, j) => `${j ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(""), fill: "none", stroke: color, "stroke-width": 1.8 }, g);
      }
      if (s.dots || pts.length === 1 || s.line === false) {
        for (const p of pts) {
          const c = el("circle", { cx: px(p[0]), cy: py(p[1]), r: s.line === false ? 5 : 3, fill: color }, g);
          el("title", {}, c).textContent = `${s.name}${p[2] ? " " + p[2] : ""}: (${fmt(p[0])}, ${fmt(p[1])})`;
        }
      }
    });
    hover(svg, series, px, py);
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, i) => {
      const span = document.createElement("span");
      span.style.setProperty("--swatch", s.color || COLORS[i % COLORS.length]);
      span.textContent = s.name;
      legend.appendChild(span);
    });
    container.appendChild(legend);
    return svg;
  }

  function hover(svg, series, px, py) {
    const guide = el("line", { y1: M.t, y2: H - M.b, stroke: "#9aa4b1", "stroke-dasharray": "3 3", visibility: "hidden" }, svg);
    const label = el("text", { y: M.t + 12, "font-size": 11, fill: "#1d232b", visibility: "hidden" }, svg);
    svg.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const x = ((ev.clientX - box.left) / box.width) * W;
      let best = null;
      for (const s of series) for (const p of s.points) {
        const d = Math.abs(px(p[0]) - x);
        if (!best || d < best.d) best = { d, p, s };
      }
      if (!best) return;
      const gx = px(best.p[0]);
      guide.setAttribute("x1", gx); guide.setAttribute("x2", gx); guide.setAttribute("visibility", "visible");
      label.textContent = `${best.s.name}: ${fmt(best.p[1])} @ ${fmt(best.p[0])}`;
      label.setAttribute("x", Math.min(gx + 6, W - 180)); label.setAttribute("visibility", "visible");
    });
    svg.addEventListener("mouseleave", () => { guide.setAttribute("visibility", "hidden"); label.setAttribute("visibility", "hidden"); });
  }

  window.Charts = { plot, COLORS, fmt };
})();
