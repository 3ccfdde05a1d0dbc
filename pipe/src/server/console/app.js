// The pipe console: one page over the server's HTTP APIs (see mod.rs).
// No framework: views are functions that fill <main>; figures are sampled
// every 2 s into ring buffers kept in the tab.
"use strict";

const SAMPLE_MS = 2000;
const KEEP = 1800; // samples per series: an hour at 2 s
const main = () => document.getElementById("main");

// ---- the APIs ----

const token = {
  get: () => sessionStorage.getItem("pipe-token"),
  set: (t) => sessionStorage.setItem("pipe-token", t),
  clear: () => sessionStorage.removeItem("pipe-token"),
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

let asking = null; // the token prompt, while it is open

// Integers past 2^53 (snapshot ids, BIGINT columns) as BigInt, not
// rounded doubles: the reviver sees each number's source text.
function exactIntegers(_key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}
const jsonText = (v, indent) => JSON.stringify(v, (_k, x) => typeof x === "bigint" ? x.toString() : x, indent);

async function api(method, path, body, signal) {
  const headers = { "Content-Type": "application/json" };
  const t = token.get();
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text, exactIntegers) : null; } catch (_) { /* not JSON */ }
  if (r.status === 401) {
    await askToken(t ? "That token was refused." : "");
    return api(method, path, body, signal);
  }
  if (!r.ok) {
    const message = (json && json.error && (json.error.message || json.error)) || text || r.statusText;
    throw new ApiError(r.status, typeof message === "string" ? message : JSON.stringify(message));
  }
  return json;
}

function askToken(problem) {
  if (asking) return asking;
  token.clear();
  main().replaceChildren(el("p", { class: "muted" }, "A token is needed to see this server."));
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-error").textContent = problem;
  asking = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    form.onsubmit = (e) => {
      e.preventDefault();
      token.set(document.getElementById("token-input").value.trim());
      document.getElementById("token-input").value = "";
      dialog.close();
      asking = null;
      document.getElementById("forget").hidden = false;
      resolve();
    };
  });
  if (!dialog.open) dialog.showModal();
  return asking;
}

// ---- small helpers ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = {
  n: (v) => (v === null || v === undefined || Number.isNaN(v)) ? "–" : (Number.isInteger(v) || Math.abs(v) >= 100) ? Math.round(v).toLocaleString() : (+v).toFixed(v < 10 ? 1 : 0),
  bytes: (v) => { if (v == null) return "–"; const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0; while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; } return (i ? v.toFixed(1) : v) + " " + u[i]; },
  secs: (v) => v == null ? "–" : v < 1 ? Math.round(v * 1000) + " ms" : v < 120 ? v.toFixed(1) + " s" : Math.round(v / 60) + " min",
  ago: (ms) => !ms ? "never" : fmt.secs((Date.now() - ms) / 1000) + " ago",
};

function state(s) { return el("span", { class: "state " + s }, s); }

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : null }, h.label || h)))),
    el("tbody", {}, rows));
}

// ---- figures sampled in the tab ----

const series = new Map(); // name -> [{t, v}]
const counters = []; // the last samples' counters, oldest first
const RATE_WINDOW_MS = 10000; // rates are averaged over this long

function record(name, v) {
  let s = series.get(name);
  if (!s) { s = []; series.set(name, s); }
  s.push({ t: Date.now(), v });
  if (s.length > KEEP) s.shift();
}

async function sample() {
  const [streams, pipelines] = await Promise.all([api("GET", "/v1/streams"), api("GET", "/v1/pipelines")]);
  const now = { at: Date.now(), streams: {}, pipelines: {} };
  for (const s of streams.streams) now.streams[s.stream] = s.stats || {};
  for (const p of pipelines.pipelines) now.pipelines[p.pipeline] = p;
  counters.push(now);
  while (counters.length > 2 && now.at - counters[1].at >= RATE_WINDOW_MS) counters.shift();
  const then = counters[0];
  const dt = (now.at - then.at) / 1000;
  const rate = (a, b, k) => (dt > 0 && a && b && a[k] != null && b[k] != null) ? Math.max(0, (a[k] - b[k]) / dt) : null;
  const rates = { streams: {}, pipelines: {} };
  for (const [name, c] of Object.entries(now.streams)) {
    const before = then.streams[name];
    rates.streams[name] = { events: rate(c, before, "records_in"), bytes: rate(c, before, "bytes_in"), errors: rate(c, before, "decode_errors") };
    if (rates.streams[name].events != null) record("stream:" + name, rates.streams[name].events);
  }
  for (const [name, p] of Object.entries(now.pipelines)) {
    rates.pipelines[name] = { rows: rate(p, then.pipelines[name], "rows_committed") };
    record("lag:" + name, p.commit_lag_secs || 0);
  }
  return { streams: streams.streams, pipelines: pipelines.pipelines, rates };
}

function chart(name, label, unit) {
  const points = series.get(name) || [];
  const canvas = el("canvas", { class: "chart", "data-series": name, "data-points": points.length, width: 320, height: 110 });
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 18;
  ctx.font = "11px system-ui"; ctx.fillStyle = "#6b7385";
  if (points.length < 2) { ctx.fillText("collecting…", 8, h / 2); return el("div", { class: "card" }, el("h3", {}, label), canvas); }
  const max = Math.max(...points.map((p) => p.v), 1e-9);
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  ctx.strokeStyle = "#dde1e8"; ctx.beginPath(); ctx.moveTo(0, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
  ctx.strokeStyle = "#2b6cb0"; ctx.lineWidth = 1.5; ctx.beginPath();
  points.forEach((p, i) => {
    const x = ((p.t - t0) / Math.max(1, t1 - t0)) * (w - 4) + 2;
    const y = h - pad - (p.v / max) * (h - pad - 12);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillText("max " + fmt.n(max) + " " + unit, 4, 10);
  ctx.fillText(fmt.secs((t1 - t0) / 1000), w - 60, h - 4);
  return el("div", { class: "card" }, el("h3", {}, label, " ", el("span", { class: "muted" }, fmt.n(points[points.length - 1].v) + " " + unit)), canvas);
}

// ---- views ----

let timer = null;
let view = null;

async function overview() {
  const data = await sample();
  const problems = (p) => ({ failed: 0, retrying: 1, draining: 2 })[p.state] ?? 3;
  const pipelines = [...data.pipelines].sort((a, b) => problems(a) - problems(b) || a.pipeline.localeCompare(b.pipeline));
  const streamRows = data.streams.map((s) => {
    const r = data.rates.streams[s.stream] || {};
    const b = s.buffer || {};
    return el("tr", { "data-stream": s.stream },
      el("td", {}, el("a", { href: "#/streams/" + encodeURIComponent(s.stream) }, s.stream)),
      el("td", { class: "num", "data-rate": r.events || 0 }, fmt.n(r.events)),
      el("td", { class: "num" }, fmt.bytes(r.bytes) + "/s"),
      el("td", { class: "num" }, fmt.n(r.errors)),
      el("td", { class: "num" }, s.stats ? fmt.n(s.stats.decode_errors) : "–",
        s.stats && Object.keys(s.stats.errors_by_type).length ? el("div", { class: "muted" }, Object.entries(s.stats.errors_by_type).map(([k, v]) => `${k} ${v}`).join(", ")) : null),
      el("td", { class: "num" }, b.bytes != null ? fmt.bytes(b.bytes) + " of " + fmt.bytes(b.quota_bytes) : "–"),
      el("td", { class: "num" }, b.unprocessed_records != null ? fmt.n(b.unprocessed_records) : "–"),
      el("td", {}, s.pipelines.join(", ")));
  });
  const pipelineRows = pipelines.map((p) => {
    const r = data.rates.pipelines[p.pipeline] || {};
    return el("tr", { "data-pipeline": p.pipeline, class: p.state !== "running" ? "problem" : null },
      el("td", {}, el("a", { href: "#/pipelines/" + encodeURIComponent(p.pipeline) }, p.pipeline)),
      el("td", {}, state(p.state), p.state_reason ? el("div", { class: "muted" }, p.state_reason) : null),
      el("td", {}, p.stream),
      el("td", {}, p.sink_kind === "iceberg" ? el("a", { href: "#/tables/" + encodeURIComponent(p.sink) }, p.sink) : p.sink),
      el("td", { class: "num", "data-rate": r.rows || 0 }, fmt.n(r.rows)),
      el("td", { class: "num" }, fmt.n(p.uncommitted_records)),
      el("td", { class: "num" }, fmt.secs(p.commit_lag_secs)),
      el("td", { class: "num" }, fmt.ago(p.last_commit_unix_ms), p.commits ? el("div", { class: "muted" }, fmt.n(p.commit_ms_mean) + " ms each") : null),
      el("td", { class: "num" }, fmt.n(p.failed_rows_committed)));
  });
  const charts = [
    ...data.streams.map((s) => chart("stream:" + s.stream, s.stream + " events/s", "/s")),
    ...pipelines.map((p) => chart("lag:" + p.pipeline, p.pipeline + " commit lag", "s")),
  ];
  return [
    el("h1", {}, "Overview"),
    el("h2", {}, "Pipelines"),
    table(["Pipeline", "State", "Stream", "Sink", { label: "Rows/s", num: 1 }, { label: "Uncommitted requests", num: 1 }, { label: "Oldest uncommitted", num: 1 }, { label: "Last commit", num: 1 }, { label: "Failed rows", num: 1 }], pipelineRows, { id: "pipelines" }),
    el("h2", {}, "Streams"),
    table(["Stream", { label: "Events/s", num: 1 }, { label: "Bytes/s", num: 1 }, { label: "Rejected/s", num: 1 }, { label: "Rejected", num: 1 }, { label: "Buffer", num: 1 }, { label: "Unprocessed requests", num: 1 }, "Pipelines"], streamRows, { id: "streams" }),
    el("h2", {}, "Last minutes"),
    el("div", { class: "grid", id: "charts" }, charts),
  ];
}

async function streamPage(name) {
  const s = await api("GET", "/v1/streams/" + encodeURIComponent(name));
  const fields = (s.schema && s.schema.fields) || [];
  const example = {};
  for (const f of fields.slice(0, 6)) example[f.name] = f.type === "string" ? "…" : f.type === "bool" ? true : 0;
  const curl = `curl -X POST ${s.endpoint} \\\n  -H 'Content-Type: application/json'${s.http && s.http.auth ? " \\\n  -H 'Authorization: Bearer $TOKEN'" : ""} \\\n  -d '${JSON.stringify([example])}'`;
  return [
    el("h1", {}, "Stream ", name),
    table(["Setting", "Value"], [
      ["Endpoint", s.endpoint], ["Invalid events", s.invalid_events], ["Unknown fields", JSON.stringify(s.unknown_fields)],
      ["Max request bytes", fmt.bytes(s.max_request_bytes)], ["Max events per request", s.max_events_per_request],
      ["HTTP", JSON.stringify(s.http)], ["Pipelines", s.pipelines.join(", ")], ["Quarantine table", s.quarantine_table || "–"],
    ].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, String(v))))),
    el("h2", {}, "Schema"),
    fields.length ? table(["Field", "Type", "Required"], fields.map((f) => el("tr", {}, el("td", {}, f.name), el("td", {}, f.type), el("td", {}, f.required ? "yes" : "")))) : el("p", { class: "muted" }, "Unstructured"),
    el("h2", {}, "Send events"),
    el("pre", {}, curl),
    el("h2", {}, "Recent problems"),
    s.stats && s.stats.recent_rejections.length
      ? table(["At", "Event", "Field", "Type", "Error"], s.stats.recent_rejections.slice().reverse().map((r) => el("tr", {}, el("td", {}, new Date(r.at_micros / 1000).toISOString()), el("td", { class: "num" }, r.index), el("td", {}, r.field), el("td", {}, r.type), el("td", {}, r.message))), { id: "rejections" })
      : el("p", { class: "muted" }, "None since the server started"),
    s.quarantine_table ? [el("h2", {}, "Recently set aside"), await rows(`SELECT * FROM ${s.quarantine_table} ORDER BY __ingest_ts DESC LIMIT 20`)] : null,
  ];
}

async function pipelinePage(name) {
  const p = await api("GET", "/v1/pipelines/" + encodeURIComponent(name));
  const figures = ["state", "stream", "sink", "committed_through", "rows_committed", "failed_rows_committed", "files_committed", "bytes_committed", "commits", "commit_ms_mean", "uncommitted_records", "commit_lag_secs", "newest_committed_age_secs"];
  return [
    el("h1", {}, "Pipeline ", name, " ", state(p.state)),
    p.state_reason ? el("p", { class: "error" }, p.state_reason) : null,
    el("h2", {}, "SQL"), el("pre", {}, p.sql || "(a stream's quarantine pipeline)"),
    el("h2", {}, "Figures"),
    table(["", ""], figures.map((k) => el("tr", {}, el("th", {}, k), el("td", {}, p[k] == null ? "–" : String(p[k]))))),
    el("h2", {}, "Recent errors"),
    p.recent_errors.length ? table(["At", "Error"], p.recent_errors.slice().reverse().map((e) => el("tr", {}, el("td", {}, e.at), el("td", {}, e.error)))) : el("p", { class: "muted" }, "None"),
    p.quarantine_table ? [el("h2", {}, "Quarantined rows (", p.quarantine_table, ")"), await rows(`SELECT * FROM ${p.quarantine_table} ORDER BY __ingest_ts DESC LIMIT 20`)] : null,
  ];
}

async function tablePage(name) {
  const [ns, t] = [name.slice(0, name.lastIndexOf(".")), name.slice(name.lastIndexOf(".") + 1)];
  const snapshots = await query(`SELECT committed_at, snapshot_id, operation, summary['added-records'] AS added_records, summary['total-records'] AS total_records, summary['total-data-files'] AS files FROM ${ns}."${t}$snapshots" ORDER BY committed_at DESC LIMIT 50`);
  let runs = null;
  try { runs = await api("GET", "/v1/tables/" + encodeURIComponent(name) + "/maintenance"); } catch (_) { /* not a table this server maintains */ }
  return [
    el("h1", {}, "Table ", name),
    el("h2", {}, "Schema and spec"), await rows(`DESCRIBE ${name}`),
    el("h2", {}, "Snapshots"),
    grid(snapshots, { snapshot_id: (v) => el("a", { href: "#/sql?q=" + encodeURIComponent(`SELECT * FROM table_at('${name}', ${v}) LIMIT 100`) }, String(v)) }),
    el("h2", {}, "Files"), await rows(`SELECT partition, count(*) AS files, sum(record_count) AS records, sum(file_size_in_bytes) AS bytes FROM ${ns}."${t}$files" GROUP BY partition ORDER BY partition`),
    el("h2", {}, "Maintenance runs"),
    runs && runs.runs.length ? el("pre", {}, jsonText(runs.runs.slice(-10).reverse(), 1)) : el("p", { class: "muted" }, "None"),
  ];
}

// ---- SQL ----

async function query(sql, maxRows, committedOnly, signal) {
  return api("POST", "/v1/query", { sql, max_rows: maxRows || 1000, committed_only: !!committedOnly }, signal);
}

async function rows(sql) {
  try { return grid(await query(sql, 200)); } catch (e) { return el("p", { class: "error" }, e.message); }
}

function grid(answer, links) {
  if (!answer.columns.length) return el("p", { class: "muted" }, "No rows");
  const cell = (c, v) => {
    if (links && links[c] && v != null) return links[c](v);
    return v === null ? el("span", { class: "muted" }, "null") : typeof v === "object" ? jsonText(v) : String(v);
  };
  return el("div", { class: "result" }, table(answer.columns, answer.rows.map((r) => el("tr", {}, answer.columns.map((c) => el("td", {}, cell(c, r[c])))))));
}

function download(name, type, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a); a.click(); a.remove();
}

function csv(answer) {
  const text = (v) => typeof v === "object" ? jsonText(v) : String(v);
  const q = (v) => v == null ? "" : /[",\n]/.test(text(v)) ? '"' + text(v).replace(/"/g, '""') + '"' : text(v);
  return [answer.columns.join(","), ...answer.rows.map((r) => answer.columns.map((c) => q(r[c])).join(","))].join("\n") + "\n";
}

function sqlPage(initial) {
  const history = JSON.parse(localStorage.getItem("pipe-sql-history") || "[]");
  const editor = el("textarea", { id: "sql-editor", spellcheck: "false" }, initial || history[0] || "SHOW TABLES");
  const maxRows = el("input", { id: "sql-max-rows", class: "narrow", type: "number", min: 1, value: 1000 });
  const committed = el("input", { id: "sql-committed", type: "checkbox" });
  const out = el("div", { id: "sql-result" });
  const stats = el("p", { id: "sql-stats", class: "muted" });
  let running = null;
  let lastAnswer = null;
  const run = async () => {
    if (running) running.abort();
    running = new AbortController();
    const sql = editor.value.trim();
    if (!sql) return;
    const h = [sql, ...history.filter((x) => x !== sql)].slice(0, 50);
    localStorage.setItem("pipe-sql-history", JSON.stringify(h));
    stats.textContent = "Running…"; out.replaceChildren();
    try {
      const a = await query(sql, +maxRows.value, committed.checked, running.signal);
      lastAnswer = a;
      out.replaceChildren(grid(a));
      stats.textContent = `${a.row_count} row${a.row_count === 1 ? "" : "s"}${a.truncated ? " (cut at the row limit)" : ""} in ${a.elapsed_ms.toFixed(1)} ms; read ${fmt.bytes(a.bytes_read)} from ${a.files_scanned} of ${a.files_total} files` + (a.buffer_records ? `; ${a.buffer_rows} rows from ${a.buffer_records} buffered requests not committed yet` : "") + (a.committed_only ? "; committed snapshots only" : "");
    } catch (e) {
      lastAnswer = null;
      stats.textContent = "";
      out.replaceChildren(el("p", { class: "error", id: "sql-error" }, e.name === "AbortError" ? "Cancelled" : e.message));
    } finally { running = null; }
  };
  editor.addEventListener("keydown", (e) => { if ((e.ctrlKey || e.metaKey) && e.key === "Enter") run(); });
  const side = el("aside", {}, el("strong", {}, "Statements"),
    el("ul", {}, ["SHOW DATABASES", "SHOW TABLES", "DESCRIBE ns.table"].map((s) => el("li", { onclick: () => { editor.value = s; } }, s))),
    el("strong", {}, "Tables"), el("ul", { id: "sql-tables" }),
    el("strong", {}, "History"), el("ul", {}, history.slice(0, 15).map((s) => el("li", { title: s, onclick: () => { editor.value = s; } }, s.length > 40 ? s.slice(0, 40) + "…" : s))));
  query("SHOW TABLES", 500).then((a) => {
    const list = document.getElementById("sql-tables");
    if (!list) return;
    for (const r of a.rows) {
      const name = (r.table_schema ? r.table_schema + "." : "") + r.table_name;
      if ((r.table_catalog && r.table_catalog !== "pipe") || r.table_schema === "information_schema" || r.table_name.includes("$")) continue;
      list.append(el("li", { onclick: () => { editor.value = `SELECT * FROM ${name} LIMIT 100`; } }, name));
    }
  }).catch(() => {});
  if (initial) setTimeout(run, 0);
  return [
    el("h1", {}, "SQL"),
    el("div", { class: "sql" },
      el("div", {},
        editor,
        el("div", { class: "toolbar" },
          el("button", { id: "sql-run", onclick: run }, "Run (Ctrl+Enter)"),
          el("button", { class: "secondary", id: "sql-cancel", onclick: () => running && running.abort() }, "Cancel"),
          el("label", {}, "Row limit ", maxRows),
          el("label", {}, committed, " committed only"),
          el("button", { class: "secondary", onclick: () => lastAnswer && download("result.csv", "text/csv", csv(lastAnswer)) }, "CSV"),
          el("button", { class: "secondary", onclick: () => lastAnswer && download("result.json", "application/json", jsonText(lastAnswer.rows)) }, "JSON")),
        stats, out),
      side),
  ];
}

// ---- manage ----

const TEMPLATES = {
  streams: { name: "my_stream", schema: { fields: [{ name: "id", type: "string", required: true }] } },
  sinks: { name: "my_sink", type: "iceberg", namespace: "default", table: "my_table" },
  pipelines: { name: "my_pipeline", sql: "INSERT INTO my_sink SELECT * FROM my_stream" },
};

async function managePage() {
  const [streams, sinks, pipelines] = await Promise.all(["streams", "sinks", "pipelines"].map((k) => api("GET", "/v1/" + k)));
  const names = { streams: streams.streams.map((s) => s.stream), sinks: sinks.sinks.map((s) => s.sink), pipelines: pipelines.pipelines.map((p) => p.pipeline) };
  const section = (kind) => {
    const body = el("textarea", { id: "create-" + kind }, JSON.stringify(TEMPLATES[kind], null, 2));
    const message = el("p", { id: "message-" + kind });
    const create = async () => {
      message.className = ""; message.textContent = "…";
      try {
        const made = await api("POST", "/v1/" + kind, JSON.parse(body.value));
        message.textContent = "Created " + (made.stream || made.sink || made.pipeline);
        setTimeout(route, 600);
      } catch (e) { message.className = "error"; message.textContent = e.message; }
    };
    const remove = async (name) => {
      if (!confirm(`Delete ${kind.slice(0, -1)} ${name}?`)) return;
      try { await api("DELETE", `/v1/${kind}/${encodeURIComponent(name)}`); message.className = ""; message.textContent = "Deleted " + name; setTimeout(route, 300); }
      catch (e) { message.className = "error"; message.textContent = e.message; }
    };
    return [
      el("h2", {}, kind[0].toUpperCase() + kind.slice(1)),
      table(["Name", ""], names[kind].map((n) => el("tr", { "data-name": n }, el("td", {}, n), el("td", {}, el("button", { class: "danger", "data-delete": kind + "/" + n, onclick: () => remove(n) }, "Delete"))))),
      el("p", { class: "muted" }, "New (the same JSON as the API and `pipe " + kind + " create`):"), body,
      el("div", { class: "toolbar" }, el("button", { id: "create-" + kind + "-button", onclick: create }, "Create")), message,
    ];
  };
  return [el("h1", {}, "Manage"), section("streams"), section("sinks"), section("pipelines")];
}

// ---- routing ----

async function route() {
  clearTimeout(timer);
  const hash = location.hash.slice(1) || "/";
  const [path, search] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === (parts[0] || "overview")));
  const current = view = hash;
  const render = async () => {
    try {
      let content;
      if (!parts.length) content = await overview();
      else if (parts[0] === "streams") content = await streamPage(parts[1]);
      else if (parts[0] === "pipelines") content = await pipelinePage(parts[1]);
      else if (parts[0] === "tables") content = await tablePage(parts[1]);
      else if (parts[0] === "sql") content = sqlPage(new URLSearchParams(search || "").get("q"));
      else if (parts[0] === "manage") content = await managePage();
      else content = [el("p", {}, "Nothing here.")];
      if (view !== current) return;
      main().replaceChildren(...[content].flat(2).filter(Boolean));
      document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (view !== current) return;
      main().replaceChildren(el("p", { class: "error" }, e.message));
    }
    // The overview follows the figures; other pages stay as loaded.
    if (!parts.length && view === current) timer = setTimeout(render, SAMPLE_MS);
  };
  await render();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("forget").hidden = !token.get();
  document.getElementById("forget").onclick = () => { token.clear(); location.reload(); };
  route();
});
// Sampling goes on behind other pages, so charts have history.
setInterval(() => { if (location.hash.slice(1).replace(/^\/$/, "") !== "") sample().catch(() => {}); }, SAMPLE_MS);
