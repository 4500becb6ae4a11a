// tunelab ui: a hash-routed single page over the JSON API of tunelab/ui/app.py. DOM is built with textContent
// only (run names, configs and reports are user data). Pages: runs, run, compare, launch, playground.
"use strict";
(function () {
  const main = document.getElementById("main");
  let info = { read_only: false, root: "" };
  let cleanup = [];  // timers / event sources of the current page, closed on navigation

  // ------------------------------------------------------------------ helpers
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return e;
  }
  async function api(path, body) {
    const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const res = await fetch(path, opts);
    const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
    if (!res.ok) { const err = new Error(data.error || `HTTP ${res.status}`); err.status = res.status; err.data = data; throw err; }
    return data;
  }
  const q = (o) => new URLSearchParams(o).toString();
  const fmt = (v, d = 4) => (v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString("en-US") : v.toFixed(d)) : String(v));
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  }
  const badge = (state) => h("span", { class: `badge ${state}`, "data-state": state, text: state });
  const errorBox = (msg) => h("div", { class: "errorbox", role: "alert", text: msg });
  function page(title, ...children) { main.textContent = ""; main.appendChild(h("h1", {}, ...[].concat(title))); for (const c of children) main.appendChild(c); }
  function every(ms, fn) { const t = setInterval(fn, ms); cleanup.push(() => clearInterval(t)); }
  function runLink(id) { return h("a", { href: `#/run/${encodeURIComponent(id)}`, text: id }); }

  // ------------------------------------------------------------------ runs table
  const COLUMNS = [
    ["name", "run", (r) => runLink(r.id)], ["task", "task"], ["model", "model"], ["method", "method"],
    ["state", "status", (r) => h("span", {}, badge(r.state), r.state === "running" && r.step ? h("span", { class: "muted small", text: ` step ${r.step}` }) : null)],
    ["value", "dev metric", (r) => (r.value === null || r.value === undefined ? "–" : h("span", { title: r.value_kind }, `${r.metric} ${fmt(r.value)}`, h("span", { class: "muted small", text: r.value_kind === "best" ? "" : " (last eval)" })))],
    ["trainable_pct", "trainable %", (r) => (r.trainable_pct === null ? "–" : `${r.trainable_pct.toFixed(3)}%`), "num"],
    ["seconds", "time", (r) => duration(r.seconds), "num"], ["started", "started", (r) => when(r.started)],
  ];
  const runsView = { sort: "started", dir: -1, filter: "", state: "", picked: new Set() };

  async function runsPage() {
    const filter = h("input", { type: "search", placeholder: "filter: name, task, model, method…", value: runsView.filter, id: "filter", oninput: (e) => { runsView.filter = e.target.value; draw(); } });
    const states = h("select", { id: "state-filter", onchange: (e) => { runsView.state = e.target.value; draw(); } },
      ["", "running", "finished", "failed", "interrupted"].map((s) => h("option", { value: s, text: s || "any status", selected: s === runsView.state })));
    const compareBtn = h("button", { id: "compare-picked", onclick: () => { location.hash = `#/compare?${q({ ids: [...runsView.picked].join(",") })}`; } }, "Compare selected");
    const table = h("table", { id: "runs" });
    const compares = h("div", { id: "compares" });
    page("Runs", h("div", { class: "toolbar" }, filter, states, compareBtn, h("span", { class: "muted small", id: "count" })), table, compares);
    let rows = [];
    function draw() {
      const needle = runsView.filter.toLowerCase();
      const shown = rows.filter((r) => (!runsView.state || r.state === runsView.state) &&
        (!needle || [r.id, r.task, r.model, r.method, r.state].join(" ").toLowerCase().includes(needle)));
      shown.sort((a, b) => { const x = a[runsView.sort], y = b[runsView.sort]; return (x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1) * runsView.dir; });
      table.textContent = "";
      const head = h("tr", {}, h("th", {}, ""), COLUMNS.map(([key, label, , cls]) => h("th", {
        class: `sortable ${cls || ""} ${runsView.sort === key ? (runsView.dir > 0 ? "sorted-asc" : "sorted-desc") : ""}`, "data-key": key,
        onclick: () => { runsView.dir = runsView.sort === key ? -runsView.dir : 1; runsView.sort = key; draw(); } }, label)));
      table.appendChild(h("thead", {}, head));
      const body = h("tbody");
      for (const r of shown) {
        const box = h("input", { type: "checkbox", checked: runsView.picked.has(r.id), "aria-label": `pick ${r.id}`, onchange: (e) => { e.target.checked ? runsView.picked.add(r.id) : runsView.picked.delete(r.id); compareBtn.disabled = !runsView.picked.size; } });
        body.appendChild(h("tr", { "data-run": r.id }, h("td", {}, box), COLUMNS.map(([key, , render, cls]) => {
          const v = render ? render(r) : fmt(r[key]);
          return h("td", { class: cls || "", "data-col": key }, v);
        })));
      }
      if (!shown.length) body.appendChild(h("tr", {}, h("td", { colspan: COLUMNS.length + 1, class: "muted", text: rows.length ? "no run matches the filter" : `no runs under ${info.root} yet: launch one` })));
      table.appendChild(body);
      compareBtn.disabled = !runsView.picked.size;
      document.getElementById("count").textContent = `${shown.length} of ${rows.length} runs`;
    }
    async function load() {
      try {
        const data = await api("/api/runs");
        rows = data.runs;
        draw();
        drawCompares(compares, data.compares);
      } catch (e) { table.replaceWith(errorBox(e.message)); }
    }
    await load();
    every(3000, load);
  }

  function drawCompares(box, groups) {
    box.textContent = "";
    if (!groups.length) return;
    box.appendChild(h("h2", {}, "tunelab compare folders"));
    for (const g of groups) {
      const t = h("table", { class: "compare-json" }, h("thead", {}, h("tr", {}, ["method", "status", "dev metric", "trainable", "train time (s)", "tokens/s"].map((c) => h("th", {}, c)))));
      const body = h("tbody");
      for (const r of g.rows) {
        const id = r.run_dir ? (g.id === "." ? r.run_dir : `${g.id}/${r.run_dir}`) : null;
        body.appendChild(h("tr", {}, h("td", {}, id ? h("a", { href: `#/run/${encodeURIComponent(id)}`, text: r.method }) : r.method),
          h("td", {}, r.error ? `${r.status}: ${r.error}` : r.status), h("td", { class: "num" }, fmt(r.metric)),
          h("td", { class: "num" }, fmt(r.trainable)), h("td", { class: "num" }, fmt(r.train_seconds, 1)), h("td", { class: "num" }, fmt(r.tokens_per_s, 0))));
      }
      t.appendChild(body);
      const ids = g.rows.filter((r) => r.run_dir).map((r) => (g.id === "." ? r.run_dir : `${g.id}/${r.run_dir}`));
      box.appendChild(h("div", { class: "card" }, h("h3", {}, g.id, " ", h("a", { href: `#/compare?${q({ ids: ids.join(",") })}`, class: "small", text: "compare these runs" })), t));
    }
  }

  // ------------------------------------------------------------------ run page
  function curveSeries(records, metric) {
    const train = records.filter((r) => typeof r.loss === "number");
    const dev = records.filter((r) => Object.keys(r).some((k) => k.startsWith("dev/")));
    const devKeys = [...new Set(dev.flatMap((r) => Object.keys(r).filter((k) => k.startsWith("dev/") && typeof r[k] === "number")))];
    return {
      loss: [{ name: "train loss", points: train.map((r) => [r.step, r.loss]) }, { name: "dev loss", dots: true, points: dev.filter((r) => typeof r["dev/loss"] === "number").map((r) => [r.step, r["dev/loss"]]) }],
      lr: [{ name: "learning rate", points: train.filter((r) => typeof r.lr === "number").map((r) => [r.step, r.lr]) }],
      dev: devKeys.filter((k) => k !== "dev/loss" && (k === `dev/${metric}` || devKeys.length <= 4)).map((k) => ({ name: k, dots: true, points: dev.filter((r) => typeof r[k] === "number").map((r) => [r.step, r[k]]) })),
    };
  }

  async function runPage(id) {
    let data;
    try { data = await api(`/api/run?${q({ id })}`); }
    catch (e) { return page("Run", errorBox(e.message)); }
    if (data.starting) return startingPage(id, data.starting);
    const s = data.summary;
    const head = h("span", { id: "run-state" });
    const actions = h("span", { class: "toolbar" });
    const charts = { loss: h("div", { id: "chart-loss" }), dev: h("div", { id: "chart-dev" }), lr: h("div", { id: "chart-lr" }) };
    const logPre = h("pre", { id: "log", text: data.log || "(no train.log)" });
    const facts = h("div", { class: "muted small", id: "run-facts" });
    let records = data.records;
    function drawCharts() {
      const c = curveSeries(records, s.metric);
      Charts.plot(charts.loss, { title: "Loss", series: c.loss, xLabel: "step", yLabel: "loss" });
      Charts.plot(charts.dev, { title: `Dev metrics (${s.metric} picks the best checkpoint)`, series: c.dev, xLabel: "step", empty: "no evaluation yet" });
      Charts.plot(charts.lr, { title: "Learning rate", series: c.lr, xLabel: "step" });
    }
    function drawState(sum) {
      head.textContent = "";
      head.appendChild(badge(sum.state));
      if (sum.reason && sum.state !== "finished") head.appendChild(h("span", { class: "muted small", text: ` ${sum.reason}` }));
      facts.textContent = `${sum.task} · ${sum.model} · ${sum.method} · step ${sum.step} · ${sum.trainable_pct === null ? "" : sum.trainable_pct.toFixed(3) + "% trainable · "}` +
        `${duration(sum.seconds)} · started ${when(sum.started)}` + (sum.value !== null && sum.value !== undefined ? ` · dev ${sum.metric} ${fmt(sum.value)} (${sum.value_kind})` : "");
      actions.textContent = "";
      if (sum.state === "running" && !info.read_only) actions.appendChild(h("button", { class: "danger", id: "stop", onclick: () => act("/api/stop") }, "Stop"));
      if (sum.resumable && (sum.state === "failed" || sum.state === "interrupted") && !info.read_only) actions.appendChild(h("button", { id: "resume", onclick: () => act("/api/resume") }, "Resume"));
      if (sum.state === "finished") actions.appendChild(h("a", { href: `#/playground?${q({ id })}`, id: "try" }, "Try it in the playground"));
    }
    async function act(path) {
      try { await api(path, { id }); setTimeout(() => route(), 800); } catch (e) { actions.appendChild(errorBox(e.message)); }
    }
    const tabs = tabbed([
      ["Report", () => reportView(id, data)], ["Config", () => h("pre", { id: "config", text: data.config_text })],
      ["Final metrics", () => h("pre", { text: Object.keys(data.final).length ? JSON.stringify(data.final, null, 1) : "(the run has not finished)" })],
      ["Log", () => logPre],
      ...(s.state === "finished" && !s.generates ? [["Sample predictions", () => samplesView(id)]] : []),
      ...(data.job ? [["Launch output", () => h("div", {}, h("div", { class: "command", text: data.job.command }), h("pre", { text: data.job.output }))]] : []),
    ]);
    page([s.id, head, actions], facts, h("div", { class: "grid2" }, h("div", { class: "card" }, charts.loss), h("div", { class: "card" }, charts.dev)),
      h("div", { class: "grid2" }, h("div", { class: "card" }, charts.lr), h("div", { class: "card" }, h("div", { class: "title", text: "Files" }),
        h("ul", {}, data.files.map((f) => h("li", {}, h("a", { href: `/api/run/file?${q({ id, name: f })}`, target: "_blank", text: f })))))), tabs);
    drawState(s);
    drawCharts();
    if (s.state === "running" || data.job?.running) {
      const src = new EventSource(`/api/run/events?${q({ id, offset: data.offset })}`);
      cleanup.push(() => src.close());
      src.addEventListener("metrics", (ev) => { records = records.concat(JSON.parse(ev.data).records); drawCharts(); });
      src.addEventListener("log", (ev) => { logPre.textContent += JSON.parse(ev.data).text; });
      src.addEventListener("state", (ev) => {
        const sum = JSON.parse(ev.data);
        Object.assign(s, sum);
        drawState(sum);
        if (sum.state !== "running") { src.close(); setTimeout(() => route(), 500); }  // reload: report and final metrics
      });
      src.addEventListener("end", () => src.close());
    }
  }

  function tabbed(tabs) {
    const bar = h("div", { class: "tabs", role: "tablist" }), body = h("div", { class: "card", id: "tab-body" });
    const show = (i) => {
      [...bar.children].forEach((b, j) => b.classList.toggle("active", i === j));
      body.textContent = "";
      body.appendChild(tabs[i][1]());
    };
    tabs.forEach(([name], i) => bar.appendChild(h("button", { role: "tab", "data-tab": name, onclick: () => show(i) }, name)));
    show(0);
    return h("div", {}, bar, body);
  }

  function samplesView(id) {
    const box = h("div", { id: "samples" }, h("p", { class: "muted", text: "Predicting the first dev examples…" }));
    api(`/api/run/samples?${q({ id })}`).then((res) => {
      // an answer is a few keys of the task's prediction: a label, entity spans, an output text...
      const one = (v) => (Array.isArray(v) ? v.map((e) => (e && typeof e === "object" ? `${e.text} [${e.type}]` : String(e))).join(", ") || "(none)" : String(v));
      const show = (v) => Object.values(v).map(one).join(" · ");
      const confidence = (r) => (r.out.probs && r.pred.label !== undefined ? r.out.probs[r.pred.label] : undefined);
      box.textContent = "";
      box.appendChild(h("table", {}, h("thead", {}, h("tr", {}, ["text", "gold", "predicted", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, res.samples.map((r) => h("tr", { "data-correct": r.correct ? "yes" : "no" }, h("td", {}, r.text), h("td", {}, show(r.gold)),
          h("td", {}, show(r.pred) + (confidence(r) !== undefined ? ` (${confidence(r).toFixed(3)})` : "")), h("td", { text: r.correct ? "✓" : "✗" }))))));
    }).catch((e) => { box.textContent = ""; box.appendChild(errorBox(e.message)); });
    return box;
  }

  function reportView(id, data) {
    const box = h("div", { id: "report" });
    if (data.files.includes("report.html")) box.appendChild(h("p", {}, h("a", { href: `/api/run/file?${q({ id, name: "report.html" })}`, target: "_blank", text: "report.html (full page)" })));
    if (!data.report) { box.appendChild(h("p", { class: "muted", text: "No report yet: it is written when training finishes." })); return box; }
    box.appendChild(Markdown.render(data.report, (src) => `/api/run/file?${q({ id, name: src })}`));
    return box;
  }

  function startingPage(id, job) {
    page([id, badge(job.running ? "starting" : "failed")], h("div", { class: "command", text: job.command }),
      h("p", { class: "muted", text: job.running ? "Starting: the run folder appears once the config is validated and the data read." : `The process exited with code ${job.returncode} before creating the run folder.` }),
      h("pre", { id: "job-output", text: job.output || "" }));
    if (job.running) { const t = setTimeout(() => route(), 1000); cleanup.push(() => clearTimeout(t)); }
  }

  // ------------------------------------------------------------------ compare page
  async function comparePage(params) {
    const ids = (params.get("ids") || "").split(",").filter(Boolean);
    const all = await api("/api/runs");
    const picker = h("select", { multiple: true, size: Math.min(8, Math.max(3, all.runs.length)), id: "compare-pick" },
      all.runs.map((r) => h("option", { value: r.id, selected: ids.includes(r.id), text: `${r.id} (${r.method}, ${r.state})` })));
    const go = h("button", { id: "compare-go", onclick: () => { location.hash = `#/compare?${q({ ids: [...picker.selectedOptions].map((o) => o.value).join(",") })}`; } }, "Compare");
    const out = h("div", { id: "compare-out" });
    page("Compare runs", h("div", { class: "toolbar" }, picker, go), out);
    if (!ids.length) { out.appendChild(h("p", { class: "muted", text: "Pick runs (Ctrl/Cmd-click for several), or tick them in the runs table." })); return; }
    let data;
    try { data = await api(`/api/compare?${q({ ids: ids.join(",") })}`); } catch (e) { out.appendChild(errorBox(e.message)); return; }
    const metric = data.runs[0].summary.metric;
    const loss = data.runs.map((r) => ({ name: r.summary.id, points: r.records.filter((x) => typeof x.loss === "number").map((x) => [x.step, x.loss]) }));
    const dev = data.runs.map((r) => ({ name: r.summary.id, dots: true, points: r.records.filter((x) => typeof x[`dev/${metric}`] === "number").map((x) => [x.step, x[`dev/${metric}`]]) }));
    const scatter = data.runs.filter((r) => r.summary.trainable && r.summary.value !== null && r.summary.value !== undefined)
      .map((r) => ({ name: r.summary.id, line: false, points: [[r.summary.trainable, r.summary.value, r.summary.method]] }));
    const c1 = h("div", { id: "compare-loss" }), c2 = h("div", { id: "compare-dev" }), c3 = h("div", { id: "compare-params" });
    out.appendChild(h("div", { class: "grid2" }, h("div", { class: "card" }, c1), h("div", { class: "card" }, c2)));
    out.appendChild(h("div", { class: "grid2" }, h("div", { class: "card" }, c3), h("div", { class: "card" }, headline(data.runs))));
    Charts.plot(c1, { title: "Train loss", series: loss, xLabel: "step" });
    Charts.plot(c2, { title: `Dev ${metric}`, series: dev, xLabel: "step" });
    Charts.plot(c3, { title: `Dev ${metric} vs trainable parameters`, series: scatter, xLabel: "trainable parameters (log scale)", logX: true, empty: "no finished run with a metric" });
    const diff = h("table", { id: "config-diff" }, h("thead", {}, h("tr", {}, h("th", {}, "config key"), data.runs.map((r) => h("th", {}, r.summary.id)))));
    const body = h("tbody");
    for (const d of data.diff) body.appendChild(h("tr", {}, h("td", {}, h("code", {}, d.key)), d.values.map((v) => h("td", {}, v === undefined || v === null ? "null" : typeof v === "object" ? JSON.stringify(v) : String(v)))));
    if (!data.diff.length) body.appendChild(h("tr", {}, h("td", { colspan: data.runs.length + 1, class: "muted", text: "the configs are identical (apart from output_dir)" })));
    diff.appendChild(body);
    out.append(h("h2", {}, "Config diff"), diff);
  }

  function headline(runs) {
    return h("table", {}, h("thead", {}, h("tr", {}, ["run", "status", "dev metric", "trainable %", "time"].map((c) => h("th", {}, c)))),
      h("tbody", {}, runs.map((r) => { const s = r.summary; return h("tr", {}, h("td", {}, runLink(s.id)), h("td", {}, badge(s.state)), h("td", { class: "num" }, `${s.metric} ${fmt(s.value)}`), h("td", { class: "num" }, s.trainable_pct === null ? "–" : s.trainable_pct.toFixed(3)), h("td", { class: "num" }, duration(s.seconds))); })));
  }

  // ------------------------------------------------------------------ launch page
  async function launchPage(params) {
    const [schema, all] = await Promise.all([api("/api/schema"), api("/api/runs")]);
    const fields = schema.fields.map((f) => (f.key === "output_dir" ? { ...f, default: "", description: `Run folder name inside ${schema.runs_root} (empty: run-<date>-<time>). An unfinished run's name resumes it.` } : f));
    const inputs = [];  // {field, input, row, error}
    const sections = {};
    const form = h("form", { id: "launch-form", onsubmit: (e) => { e.preventDefault(); launch(); } });
    const from = h("select", { id: "start-from", onchange: () => prefill(from.value) }, h("option", { value: "", text: "the defaults" }),
      all.runs.map((r) => h("option", { value: r.id, text: `run ${r.id}` })));
    for (const f of fields) {
      const id = `f-${f.key}-${Object.values(f.when).join("-")}`.replace(/[^A-Za-z0-9_-]/g, "_");
      let input;
      if (f.kind === "select") input = h("select", { id, name: f.key }, f.choices.map((c) => h("option", { value: c, text: c, selected: c === f.default })));
      else if (f.kind === "bool") input = h("input", { type: "checkbox", id, name: f.key, checked: f.default === "true" });
      else if (f.kind === "text" && (f.default || "").includes("\n")) { input = h("textarea", { id, name: f.key, rows: 2 }); input.value = f.default; } // a text input drops line breaks (prompt.separator)
      else input = h("input", { type: "text", id, name: f.key, value: f.default === "null" ? "" : f.default, placeholder: f.nullable ? "null" : "", inputmode: f.kind === "number" ? "decimal" : null });
      const error = h("div", { class: "fielderror", "data-error-for": f.key });
      const row = h("div", { class: "field", "data-key": f.key }, h("label", { for: id, text: f.key }), input, h("div", { class: "desc", text: f.description + (f.default ? ` [default: ${f.default}]` : "") }), error);
      inputs.push({ f, input, row, error });
      const sec = f.section;
      if (!sections[sec]) {  // the sections most runs set are open; the rest fold away
        sections[sec] = h("details", { class: "section", "data-section": sec, open: ["run", "model", "data", "method", "train"].includes(sec) }, h("summary", {}, sec));
        form.appendChild(sections[sec]);
      }
      sections[sec].appendChild(row);
      input.addEventListener(f.kind === "text" || f.kind === "number" ? "input" : "change", () => { showVariants(); changed(); });
    }
    const general = h("div", { id: "form-errors" }), command = h("div", { class: "command", id: "command" }), note = h("div", { class: "muted small", id: "launch-note" });
    const launchBtn = h("button", { type: "submit", id: "launch", disabled: info.read_only }, "Launch");
    form.appendChild(h("div", { class: "card" }, general, h("div", { class: "small muted", text: "Command:" }), command, note, h("div", { class: "toolbar" }, launchBtn,
      info.read_only ? h("span", { class: "muted", text: "read-only dashboard: launching is disabled" }) : h("span", { class: "muted small", text: `relative data paths are relative to ${info.cwd}` }))));
    page("Launch a run", h("div", { class: "toolbar" }, h("label", {}, "Start from ", from)), form);

    const text = (x) => (x.f.kind === "bool" ? (x.input.checked ? "true" : "false") : x.input.value);
    function visible(x) { return Object.entries(x.f.when).every(([k, v]) => { const ctl = inputs.find((y) => y.f.key === k && !Object.keys(y.f.when).length); return ctl && text(ctl) === v; }); }
    function showVariants() { for (const x of inputs) x.row.hidden = !visible(x); }
    function values() {
      const out = {};
      for (const x of inputs) {
        if (!visible(x)) continue;
        const t = text(x), def = x.f.default === "null" ? "" : x.f.default;
        x.row.classList.toggle("changed", t !== def);
        if (t !== def) out[x.f.key] = t;
      }
      return out;
    }
    function prefill(runId) {
      const run = runId ? all.runs.find((r) => r.id === runId) : null;
      if (!run) { for (const x of inputs) setText(x, x.f.default === "null" ? "" : x.f.default); showVariants(); changed(); return; }
      api(`/api/run?${q({ id: runId })}`).then((d) => {
        const flat = flatten(d.config);
        if (flat["method.name"] === undefined && typeof d.config.method === "string") flat["method.name"] = d.config.method;
        for (const x of inputs) {
          if (x.f.key === "output_dir") continue;
          const v = flat[x.f.key];
          setText(x, v === undefined ? (x.f.default === "null" ? "" : x.f.default) : v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
        }
        showVariants(); changed();
      });
    }
    function setText(x, t) { if (x.f.kind === "bool") x.input.checked = t === "true"; else x.input.value = t; }
    let timer = null, lastPlan = null;
    function changed() { clearTimeout(timer); timer = setTimeout(validate, 250); }
    async function validate() {
      const res = await api("/api/validate", { values: values() }).catch((e) => ({ ok: false, error: e.message, problems: [] }));
      for (const x of inputs) { x.error.textContent = ""; x.row.classList.remove("invalid"); }
      general.textContent = "";
      lastPlan = res.ok ? res : null;
      launchBtn.disabled = info.read_only || !res.ok;
      if (res.ok) { command.textContent = res.command; note.textContent = res.resumes ? `${res.run_id} holds an unfinished run: launching resumes it.` : `new run folder: ${res.run_id}`; return; }
      command.textContent = "(fix the errors first)";
      note.textContent = "";
      const placed = new Set();
      for (const p of res.problems || []) {
        const x = inputs.find((y) => y.f.key === p.key && visible(y)) || inputs.find((y) => p.key.startsWith(y.f.key + ".") && visible(y));
        if (x) { x.error.textContent = p.message; x.row.classList.add("invalid"); placed.add(p.message); }
      }
      if (!res.problems || res.problems.some((p) => !placed.has(p.message)) || !res.problems.length) general.appendChild(errorBox(`error: ${res.error}`));
    }
    async function launch() {
      if (!lastPlan) return;
      launchBtn.disabled = true;
      try { const res = await api("/api/launch", { values: values() }); location.hash = `#/run/${encodeURIComponent(res.run_id)}`; }
      catch (e) { general.textContent = ""; general.appendChild(errorBox(e.message)); launchBtn.disabled = false; }
    }
    showVariants();
    if (params.get("from")) { from.value = params.get("from"); prefill(from.value); } else changed();
  }

  function flatten(obj, prefix = "", out = {}) {
    for (const [k, v] of Object.entries(obj || {})) {
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, `${prefix}${k}.`, out);
      else out[`${prefix}${k}`] = v;
    }
    return out;
  }

  // ------------------------------------------------------------------ playground
  async function playgroundPage(params) {
    const all = await api("/api/runs");
    const done = all.runs.filter((r) => r.state === "finished");
    const id = params.get("id") || (done[0] && done[0].id) || "";
    const pick = h("select", { id: "pg-run", onchange: () => { location.hash = `#/playground?${q({ id: pick.value })}`; } },
      done.map((r) => h("option", { value: r.id, selected: r.id === id, text: `${r.id} (${r.task}, ${r.method})` })));
    const area = h("div", { id: "pg-area" });
    page("Playground", h("div", { class: "toolbar" }, h("label", {}, "Run ", pick)), area);
    const run = done.find((r) => r.id === id);
    if (!run) { area.appendChild(h("p", { class: "muted", text: done.length ? "Pick a finished run." : "No finished run yet." })); return; }
    if (run.generates) return generateView(area, id);
    predictView(area, id);
  }

  function predictView(area, id) {
    const input = h("textarea", { id: "pg-input", placeholder: "One input per line (text, or a JSON object as `tunelab predict` reads it)" });
    const out = h("div", { id: "pg-output" });
    const go = h("button", { id: "pg-predict", onclick: async () => {
      out.textContent = "";
      go.disabled = true;
      try {
        const texts = input.value.split("\n").filter((t) => t.trim());
        const res = await api("/api/predict", { id, texts });
        // drawn by what the task's predict returned: entity spans, a label with probabilities, else the JSON
        const draw = (o) => (o.entities ? entities(o.text, o.entities) : o.label !== undefined ? label(o.text, o) : h("pre", { class: "card prediction", text: JSON.stringify(o, null, 1) }));
        res.outputs.forEach((o) => out.appendChild(draw(o)));
      } catch (e) { out.appendChild(errorBox(e.message)); }
      go.disabled = false;
    } }, "Predict");
    area.appendChild(h("div", { class: "card" }, input, h("div", { class: "toolbar" }, go), out));
  }

  function label(text, o) {
    const probs = Object.entries(o.probs || {}).sort((a, b) => b[1] - a[1]);
    return h("div", { class: "card prediction" }, h("div", {}, h("strong", { class: "pred-label", text: o.label }), " ", h("span", { class: "muted", text })),
      probs.map(([name, p]) => { const bar = h("span", { class: "probbar" }); bar.style.width = `${Math.round(p * 200)}px`; return h("div", { class: "small" }, bar, `${name} ${p.toFixed(3)}`); }));
  }

  function entities(text, ents) {
    const line = h("div", { class: "card prediction ner" });
    let at = 0;
    for (const e of ents.slice().sort((a, b) => a.start - b.start)) {
      if (e.start < at) continue;
      line.appendChild(document.createTextNode(text.slice(at, e.start)));
      line.appendChild(h("mark", { class: "ent", title: `${e.type} ${e.score}` }, text.slice(e.start, e.end), h("sup", { text: e.type })));
      at = e.end;
    }
    line.appendChild(document.createTextNode(text.slice(at)));
    if (!ents.length) line.appendChild(h("span", { class: "muted small", text: "  (no entities)" }));
    return line;
  }

  function generateView(area, id) {
    const mode = h("select", { id: "pg-mode" }, h("option", { value: "chat", text: "chat (the run's template)" }), h("option", { value: "prompt", text: "raw prompt" }));
    const ctl = {};
    const controls = h("div", { class: "controls" }, h("label", {}, "mode", mode),
      [["max_new_tokens", "64"], ["temperature", ""], ["top_p", ""], ["top_k", ""], ["repetition_penalty", ""], ["seed", ""]].map(([k, v]) => { ctl[k] = h("input", { type: "text", id: `pg-${k}`, value: v, placeholder: "run's" }); return h("label", {}, k, ctl[k]); }),
      h("label", {}, "do_sample", (ctl.do_sample = h("input", { type: "checkbox", id: "pg-do_sample" }))));
    const chat = h("div", { class: "chat", id: "pg-chat" });
    const input = h("textarea", { id: "pg-input", placeholder: "Your message" });
    const messages = [];
    const go = h("button", { id: "pg-generate", onclick: async () => {
      const text = input.value;
      if (!text.trim()) return;
      const decoding = {};
      for (const [k, el] of Object.entries(ctl)) if (k === "do_sample") { if (el.checked) decoding.do_sample = true; } else if (el.value.trim()) decoding[k] = Number(el.value);
      const body = { id, decoding };
      if (mode.value === "chat") { messages.push({ role: "user", content: text }); body.messages = messages; } else body.prompt = text;
      chat.appendChild(h("div", { class: "msg user", text }));
      go.disabled = true;
      try {
        const res = await api("/api/generate", body);
        if (mode.value === "chat") messages.push({ role: "assistant", content: res.text });
        chat.appendChild(h("div", { class: "msg assistant", "data-finish": res.finish_reason, text: res.text || "(empty)" }));
        chat.appendChild(h("div", { class: "muted small", text: `${res.new_tokens} tokens, finish: ${res.finish_reason}` }));
        input.value = "";
      } catch (e) { if (mode.value === "chat") messages.pop(); chat.appendChild(errorBox(e.message)); }
      go.disabled = false;
    } }, "Generate");
    const reset = h("button", { class: "secondary", onclick: () => { messages.length = 0; chat.textContent = ""; } }, "Reset chat");
    area.appendChild(h("div", { class: "card" }, controls, chat, input, h("div", { class: "toolbar" }, go, reset)));
  }

  // ------------------------------------------------------------------ router
  async function route() {
    for (const fn of cleanup) fn();
    cleanup = [];
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    const name = path.split("/")[1] || "runs";
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === (name === "run" ? "runs" : name));
    try {
      if (name === "run") await runPage(decodeURIComponent(path.slice("/run/".length)));
      else if (name === "compare") await comparePage(params);
      else if (name === "launch") await launchPage(params);
      else if (name === "playground") await playgroundPage(params);
      else await runsPage();
    } catch (e) { page("Error", errorBox(e.message)); }
    main.dataset.ready = name;
  }

  window.addEventListener("hashchange", route);
  api("/api/info").then((i) => { info = i; document.getElementById("where").textContent = `${i.root}${i.read_only ? " · read-only" : ""}`; route(); })
    .catch((e) => page("tunelab ui", errorBox(e.message)));
})();
