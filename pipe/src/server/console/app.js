// The pipe console: one page over the server's HTTP APIs (see mod.rs).
// No framework: views are functions that fill <main>; figures are sampled
// every 2 s into ring buffers kept in the tab.
"use strict";

const SAMPLE_MS = 2000;
const KEEP = 1800; // samples per series: an hour at 2 s
const main = () => document.getElementById("main");

// ---- the APIs ----

// Two tokens, as the server has two: the admin API's, and `POST /v1/query`'s
// (which takes the admin token too unless `[query]` has its own). Each is
// asked for when its API first answers 401, and kept in this tab only.
const tokens = {
  get: (kind) => sessionStorage.getItem("pipe-token-" + kind),
  set: (kind, t) => sessionStorage.setItem("pipe-token-" + kind, t),
  clear: (kind) => (kind ? [kind] : ["admin", "query"]).forEach((k) => sessionStorage.removeItem("pipe-token-" + k)),
  any: () => !!(sessionStorage.getItem("pipe-token-admin") || sessionStorage.getItem("pipe-token-query")),
};
const kindOf = (path) => path === "/v1/query" ? "query" : "admin";
const declined = {}; // the kinds of token the user chose not to give (until a reload)

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

// `quiet`: a 401 is an error, not a prompt (the background sampler).
async function api(method, path, body, signal, quiet) {
  const kind = kindOf(path);
  const headers = { "Content-Type": "application/json" };
  const own = tokens.get(kind);
  const t = own || (kind === "query" ? tokens.get("admin") : null);
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text, exactIntegers) : null; } catch (_) { /* not JSON */ }
  if (r.status === 401) {
    if (declined[kind] || quiet) throw new ApiError(401, `This needs the server's ${kind} token, which this tab was not given.`);
    if (asking) { await asking.catch(() => {}); return api(method, path, body, signal); }
    await askToken(kind, own ? "That token was refused." : t ? "The admin token does not run queries here: the server has a query token of its own." : "");
    return api(method, path, body, signal);
  }
  if (!r.ok) {
    const message = (json && json.error && (json.error.message || json.error)) || text || r.statusText;
    throw new ApiError(r.status, typeof message === "string" ? message : JSON.stringify(message));
  }
  return json;
}

function askToken(kind, problem) {
  tokens.clear(kind);
  // Pages of the admin API show nothing without its token (the call that
  // asked draws them once it is given); the SQL page keeps what was typed.
  const wiped = kind === "admin" && !location.hash.startsWith("#/sql");
  if (wiped) main().replaceChildren(el("p", { class: "muted" }, "A token is needed to see this server."));
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-title").textContent = kind === "admin" ? "Admin token" : "Query token";
  document.getElementById("token-why").textContent = (kind === "admin"
    ? "This server asks for its admin token to show its streams, pipelines and tables."
    : "This server asks for its query token to run SQL.") + " It is kept in this tab only.";
  document.getElementById("token-error").textContent = problem;
  asking = new Promise((resolve, reject) => {
    const done = (given) => {
      document.getElementById("token-input").value = "";
      if (dialog.open) dialog.close();
      asking = null;
      if (given) {
        tokens.set(kind, given);
        document.getElementById("forget").hidden = false;
        resolve();
      } else {
        declined[kind] = true;
        reject(new ApiError(401, `This needs the server's ${kind} token, which this tab was not given.`));
      }
    };
    document.getElementById("token-form").onsubmit = (e) => { e.preventDefault(); done(document.getElementById("token-input").value.trim()); };
    document.getElementById("token-cancel").onclick = () => done(null);
    dialog.oncancel = (e) => { e.preventDefault(); done(null); };
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
let sampling = false; // whether the tab samples behind other pages

function record(name, v) {
  let s = series.get(name);
  if (!s) { s = []; series.set(name, s); }
  s.push({ t: Date.now(), v });
  if (s.length > KEEP) s.shift();
}

async function sample(quiet) {
  const [streams, pipelines] = await Promise.all([api("GET", "/v1/streams", undefined, undefined, quiet), api("GET", "/v1/pipelines", undefined, undefined, quiet)]);
  // Keyed by names users choose ("__proto__" too): objects without a prototype.
  const dict = () => Object.create(null);
  const now = { at: Date.now(), streams: dict(), pipelines: dict() };
  // Only the counters are kept from one sample to the next.
  for (const s of streams.streams) {
    const c = s.stats || {};
    now.streams[s.stream] = { records_in: c.records_in, bytes_in: c.bytes_in, decode_errors: c.decode_errors };
  }
  for (const p of pipelines.pipelines) now.pipelines[p.pipeline] = { rows_committed: p.rows_committed, commit_lag_secs: p.commit_lag_secs };
  // A counter that went down (the server restarted): rates start again
  // from here, rather than reading 0 until the older samples age out.
  const last = counters[counters.length - 1];
  const dropped = (a, b, keys) => Object.keys(a).some((n) => b && Object.hasOwn(b, n) && keys.some((k) => a[n][k] < b[n][k]));
  if (last && (dropped(now.streams, last.streams, ["records_in", "bytes_in", "decode_errors"]) || dropped(now.pipelines, last.pipelines, ["rows_committed"]))) counters.length = 0;
  counters.push(now);
  while (counters.length > 2 && now.at - counters[1].at >= RATE_WINDOW_MS) counters.shift();
  const then = counters[0];
  const dt = (now.at - then.at) / 1000;
  const rate = (a, b, k) => (dt > 0 && a && b && a[k] != null && b[k] != null) ? Math.max(0, (a[k] - b[k]) / dt) : null;
  const rates = { streams: dict(), pipelines: dict() };
  for (const [name, c] of Object.entries(now.streams)) {
    const before = then.streams[name];
    rates.streams[name] = { events: rate(c, before, "records_in"), bytes: rate(c, before, "bytes_in"), errors: rate(c, before, "decode_errors") };
    const r = rates.streams[name];
    if (r.events != null) { record("stream:" + name, r.events); record("bytes:" + name, r.bytes); record("rejected:" + name, r.errors); }
  }
  const sum = (k) => { const v = Object.values(rates.streams).filter((r) => r[k] != null); return v.length ? v.reduce((n, r) => n + r[k], 0) : null; };
  if (sum("events") != null) { record("total:events", sum("events")); record("total:bytes", sum("bytes")); record("total:rejected", sum("errors")); }
  for (const [name, p] of Object.entries(now.pipelines)) {
    rates.pipelines[name] = { rows: rate(p, then.pipelines[name], "rows_committed") };
    record("lag:" + name, p.commit_lag_secs || 0);
  }
  record("total:lag", Math.max(0, ...Object.values(now.pipelines).map((p) => p.commit_lag_secs || 0)));
  // Series of streams and pipelines that are gone go with them.
  for (const key of series.keys()) {
    const [kind, name] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
    if (kind !== "total" && !Object.hasOwn(kind === "lag" ? now.pipelines : now.streams, name)) series.delete(key);
  }
  sampling = true;
  return { streams: streams.streams, pipelines: pipelines.pipelines, rates };
}

const COLORS = ["#2b6cb0", "#c53030", "#1f8a4c"];

// A small line chart of one or more series (the first one's unit), drawn
// on a canvas; `data-points` says how many samples it shows.
function chart(names, label, unit) {
  names = [names].flat();
  const all = names.map((n) => series.get(n) || []);
  const points = all[0];
  const canvas = el("canvas", { class: "chart", "data-series": names[0], "data-points": points.length, width: 320, height: 110 });
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 18;
  ctx.font = "11px system-ui"; ctx.fillStyle = "#6b7385";
  if (points.length < 2) { ctx.fillText("collecting…", 8, h / 2); return el("div", { class: "card" }, el("h3", {}, label), canvas); }
  const max = Math.max(...all.flat().map((p) => p.v), 1e-9);
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  ctx.strokeStyle = "#dde1e8"; ctx.beginPath(); ctx.moveTo(0, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
  all.forEach((line, k) => {
    ctx.strokeStyle = COLORS[k % COLORS.length]; ctx.lineWidth = 1.5; ctx.beginPath();
    line.filter((p) => p.t >= t0).forEach((p, i) => {
      const x = ((p.t - t0) / Math.max(1, t1 - t0)) * (w - 4) + 2;
      const y = h - pad - (p.v / max) * (h - pad - 12);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
  ctx.fillText("max " + fmt.n(max) + " " + unit, 4, 10);
  ctx.fillText(fmt.secs((t1 - t0) / 1000), w - 60, h - 4);
  return el("div", { class: "card" }, el("h3", {}, label, " ", el("span", { class: "muted" }, fmt.n(points[points.length - 1].v) + " " + unit)), canvas);
}

// ---- views ----

let timer = null;
let view = 0; // which call of route() the page is drawn by
let fetchedAt = 0; // when the overview's figures arrived (to time drawing them)

async function overview() {
  const [data, sinks] = await Promise.all([sample(), api("GET", "/v1/sinks")]);
  fetchedAt = performance.now();
  const problems = (p) => ({ failed: 0, retrying: 1, draining: 2 })[p.state] ?? 3;
  const pipelines = [...data.pipelines].sort((a, b) => problems(a) - problems(b) || a.pipeline.localeCompare(b.pipeline));
  // Streams with problems first: taking no events, a buffer near its
  // quota (requests get 503 past it), events being refused now.
  const streamState = (s) => s.failure ? "failed" : !s.stats ? "stopped" : s.buffer && s.buffer.bytes >= 0.8 * s.buffer.quota_bytes ? "nearly full" : "taking events";
  const streamProblem = (s) => ({ failed: 0, stopped: 1, "nearly full": 2 })[streamState(s)] ?? ((data.rates.streams[s.stream] || {}).errors > 0 ? 3 : 4);
  const streams = [...data.streams].sort((a, b) => streamProblem(a) - streamProblem(b) || a.stream.localeCompare(b.stream));
  const streamRows = streams.map((s) => {
    const r = data.rates.streams[s.stream] || {};
    const b = s.buffer || {};
    const st = streamState(s);
    return el("tr", { "data-stream": s.stream, class: streamProblem(s) < 4 ? "problem" : null },
      el("td", {}, el("a", { href: "#/streams/" + encodeURIComponent(s.stream) }, s.stream)),
      el("td", {}, state(st), s.failure ? el("div", { class: "muted" }, s.failure) : null),
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
  const byName = Object.fromEntries(data.pipelines.map((p) => [p.pipeline, p]));
  const sinkRows = sinks.sinks.map((k) => {
    const writer = k.pipeline && byName[k.pipeline];
    return el("tr", { "data-sink": k.sink, class: writer && writer.state !== "running" ? "problem" : null },
      el("td", {}, k.sink),
      el("td", {}, k.type),
      el("td", {}, k.table ? el("a", { href: "#/tables/" + encodeURIComponent(k.table) }, k.table) : k.path),
      el("td", {}, writer ? [el("a", { href: "#/pipelines/" + encodeURIComponent(writer.pipeline) }, writer.pipeline), " ", state(writer.state)] : el("span", { class: "muted" }, "no pipeline writes it")),
      el("td", { class: "num" }, fmt.secs(k.roll_interval_secs)),
      el("td", { class: "num" }, writer ? fmt.bytes(writer.bytes_committed) : "–"));
  });
  const charts = [
    chart(["total:events", "total:rejected"], "All streams: events/s (rejected in red)", "/s"),
    chart("total:bytes", "All streams: bytes/s", "B/s"),
    chart("total:lag", "Largest commit lag", "s"),
    ...data.streams.map((s) => chart(["stream:" + s.stream, "rejected:" + s.stream], s.stream + " events/s", "/s")),
    ...pipelines.map((p) => chart("lag:" + p.pipeline, p.pipeline + " commit lag", "s")),
  ];
  return [
    el("h1", {}, "Overview"),
    el("h2", {}, "Pipelines"),
    table(["Pipeline", "State", "Stream", "Sink", { label: "Rows/s", num: 1 }, { label: "Uncommitted requests", num: 1 }, { label: "Oldest uncommitted", num: 1 }, { label: "Last commit", num: 1 }, { label: "Failed rows", num: 1 }], pipelineRows, { id: "pipelines" }),
    el("h2", {}, "Streams"),
    table(["Stream", "State", { label: "Events/s", num: 1 }, { label: "Bytes/s", num: 1 }, { label: "Rejected/s", num: 1 }, { label: "Rejected", num: 1 }, { label: "Buffer", num: 1 }, { label: "Unprocessed requests", num: 1 }, "Pipelines"], streamRows, { id: "streams" }),
    el("h2", {}, "Sinks"),
    table(["Sink", "Type", "Table or folder", "Written by", { label: "Roll every", num: 1 }, { label: "Bytes committed since start", num: 1 }], sinkRows, { id: "sinks" }),
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
    s.quarantine_table ? [el("h2", {}, "Recently set aside"), await rows(`SELECT * FROM ${tableSql(s.quarantine_table)} ORDER BY __ingest_ts DESC LIMIT 20`)] : null,
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
    p.quarantine_table ? [el("h2", {}, "Quarantined rows (", p.quarantine_table, ")"), await rows(`SELECT * FROM ${tableSql(p.quarantine_table)} ORDER BY __ingest_ts DESC LIMIT 20`)] : null,
  ];
}

// Names in generated SQL: quoted unless plain (a namespace of several
// levels, `lake.sub`, is one quoted name; `"` is doubled).
const ident = (s) => /^[a-z_][a-z0-9_]*$/.test(s) ? s : '"' + s.replace(/"/g, '""') + '"';
const literal = (s) => "'" + s.replace(/'/g, "''") + "'";
// `namespace.table` (the namespace may have dots; a table name has none)
// as SQL, with `suffix` (`$snapshots`) on the table.
function tableSql(name, suffix) {
  const dot = name.lastIndexOf(".");
  return ident(name.slice(0, dot)) + "." + ident(name.slice(dot + 1) + (suffix || ""));
}

async function tablePage(name) {
  const snapshots = await query(`SELECT committed_at, snapshot_id, operation, summary['added-records'] AS added_records, summary['total-records'] AS total_records, summary['total-data-files'] AS files FROM ${tableSql(name, "$snapshots")} ORDER BY committed_at DESC LIMIT 50`);
  let runs = null;
  // (Quiet: with a query token alone, the rest of the page still shows.)
  try { runs = await api("GET", "/v1/tables/" + encodeURIComponent(name) + "/maintenance", undefined, undefined, true); } catch (_) { /* not a table this server maintains */ }
  return [
    el("h1", {}, "Table ", name),
    el("h2", {}, "Schema and spec"), await rows(`DESCRIBE ${tableSql(name)}`),
    el("h2", {}, "Snapshots"),
    grid(snapshots, { snapshot_id: (v) => runLink(`SELECT * FROM table_at(${literal(name)}, ${v}) LIMIT 100`, String(v)) }),
    el("h2", {}, "Files"), await rows(`SELECT partition, count(*) AS files, sum(record_count) AS records, sum(file_size_in_bytes) AS bytes FROM ${tableSql(name, "$files")} GROUP BY partition ORDER BY partition`),
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

// A row's value in column `c`: the API leaves nulls out of its rows, and a
// column may be named `constructor` or `__proto__`.
const value = (row, c) => Object.hasOwn(row, c) ? row[c] : null;

function grid(answer, links) {
  if (!answer.columns.length) return el("p", { class: "muted" }, "No rows");
  const cell = (c, v) => {
    if (links && Object.hasOwn(links, c) && v != null) return links[c](v);
    return v === null ? el("span", { class: "muted" }, "null") : typeof v === "object" ? jsonText(v) : String(v);
  };
  return el("div", { class: "result" }, table(answer.columns, answer.rows.map((r) => el("tr", {}, answer.columns.map((c) => el("td", {}, cell(c, value(r, c))))))));
}

function download(name, type, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a); a.click(); a.remove();
}

function csv(answer) {
  const text = (v) => typeof v === "object" ? jsonText(v) : String(v);
  const q = (v) => v == null ? "" : /[",\n]/.test(text(v)) ? '"' + text(v).replace(/"/g, '""') + '"' : text(v);
  return [answer.columns.join(","), ...answer.rows.map((r) => answer.columns.map((c) => q(value(r, c))).join(","))].join("\n") + "\n";
}

// The place an error names (" at Line: L, Column: C"): its line with a
// caret under it, and the editor's cursor put there.
function pointAt(editor, sql, message) {
  const m = / at Line: (\d+), Column: (\d+)/.exec(message || "");
  if (!m) return null;
  const lines = sql.split("\n");
  const line = +m[1], column = +m[2];
  if (line < 1 || line > lines.length) return null;
  // The parser counts characters; JavaScript, UTF-16 units (an emoji is two).
  const before = Array.from(lines[line - 1]).slice(0, column - 1).join("");
  const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + before.length;
  // The editor's text is the statement's, less the spaces trimmed before it.
  const lead = editor.value.length - editor.value.trimStart().length;
  editor.focus();
  editor.setSelectionRange(lead + offset, lead + offset);
  return el("pre", { class: "error", id: "sql-error-at" }, `line ${line}, column ${column}:\n${lines[line - 1]}\n${" ".repeat(Math.max(0, column - 1))}^`);
}

function readHistory() {
  try {
    const h = JSON.parse(localStorage.getItem("pipe-sql-history") || "[]");
    return Array.isArray(h) ? h.filter((x) => typeof x === "string") : [];
  } catch (_) { return []; }
}

// A statement a link of this console opened the SQL page to run (time
// travel from a snapshot): it runs at once. A `#/sql?q=` link from
// anywhere else only fills the editor.
let runNext = null;
function runLink(sql, text) {
  return el("a", { href: "#/sql?q=" + encodeURIComponent(sql), onclick: () => { runNext = sql; } }, text);
}

function sqlPage(initial) {
  const history = readHistory();
  const editor = el("textarea", { id: "sql-editor", spellcheck: "false" }, initial || history[0] || "SHOW TABLES");
  const maxRows = el("input", { id: "sql-max-rows", class: "narrow", type: "number", min: 1, value: 1000 });
  const committed = el("input", { id: "sql-committed", type: "checkbox" });
  const out = el("div", { id: "sql-result" });
  const stats = el("p", { id: "sql-stats", class: "muted" });
  let running = null;
  let lastAnswer = null;
  const run = async () => {
    const sql = editor.value.trim();
    if (!sql) return;
    // One statement runs at a time: a new Run cancels the one before, and
    // only the newest may draw its answer.
    if (running) running.abort();
    const mine = running = new AbortController();
    // (Read again: another tab of this console may have added some.)
    localStorage.setItem("pipe-sql-history", JSON.stringify([sql, ...readHistory().filter((x) => x !== sql)].slice(0, 50)));
    stats.textContent = "Running…"; out.replaceChildren();
    try {
      const a = await query(sql, +maxRows.value, committed.checked, mine.signal);
      if (running !== mine) return;
      lastAnswer = a;
      out.replaceChildren(grid(a));
      stats.textContent = `${a.row_count} row${a.row_count === 1 ? "" : "s"}${a.truncated ? " (cut at the row limit)" : ""} in ${a.elapsed_ms.toFixed(1)} ms; read ${fmt.bytes(a.bytes_read)} from ${a.files_scanned} of ${a.files_total} files` + (a.buffer_records ? `; ${a.buffer_rows} rows from ${a.buffer_records} buffered requests not committed yet` : "") + (a.committed_only ? "; committed snapshots only" : "");
    } catch (e) {
      if (running !== mine) return;
      lastAnswer = null;
      stats.textContent = "";
      out.replaceChildren(...[el("p", { class: "error", id: "sql-error" }, e.name === "AbortError" ? "Cancelled" : e.message), pointAt(editor, sql, e.message)].filter(Boolean));
    } finally { if (running === mine) running = null; }
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
      const sql = (r.table_schema ? ident(r.table_schema) + "." : "") + ident(r.table_name);
      list.append(el("li", { onclick: () => { editor.value = `SELECT * FROM ${sql} LIMIT 100`; } }, name));
    }
  }).catch(() => {});
  if (initial && initial === runNext) setTimeout(run, 0);
  runNext = null;
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
          el("button", { class: "secondary", onclick: () => lastAnswer && download("result.json", "application/json", jsonText(lastAnswer.rows.map((r) => Object.fromEntries(lastAnswer.columns.map((c) => [c, value(r, c)]))))) }, "JSON")),
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

// A change's body (PATCH) to start from: what can change in place, as it is now.
const EDITABLE = {
  // (A JSON Schema's rules are not in the view: its stream starts empty.)
  streams: (v) => v.json_schema ? {} : { schema: v.schema },
  sinks: (v) => ({ roll_interval_secs: v.roll_interval_secs, roll_size_mb: v.roll_size_mb }),
  pipelines: (v) => ({ sql: v.sql }),
};
const EDIT_HINT = {
  streams: "its schema (one its pipelines and tables can take: {\"schema\": …} as a field list, or {\"json_schema\": …}), and/or settings: keys of [streams.NAME] in docs/configuration.md, null to unset one",
  sinks: "keys of [sinks.NAME] in docs/configuration.md, null to unset one; the table or folder stays",
  pipelines: "the new SQL takes every event after the last commit; \"quarantine_table\": \"ns.table\" moves its failed rows",
};

// What a change did, in the words `pipe … update` uses (cli/render.rs).
const SUMMARY = {
  streams: (name, a, dry) => [
    dry ? `Dry run: stream '${name}' can change:` : `Changed stream '${name}':`,
    ...a.change.schema_changes.map((l) => "  " + l),
    ...(a.change.settings.length ? [`  settings ${a.change.settings.join(", ")}: the next request is handled with them`] : []),
    ...a.change.pipelines.map((p) => `  pipeline '${p.pipeline}': ` + (p.switched_after_offset != null ? `switched after offset ${p.switched_after_offset}`
      : dry ? `would first commit ${p.records_through_old_definition} record(s) under the old schema` : "switched before its first commit")),
  ].join("\n"),
  sinks: (name, a, dry) => {
    const c = a.change;
    if (dry) return `Dry run: sink '${name}' can change; ` + (c ? `pipeline '${c.pipeline}' would first commit the ${c.records_through_old_definition} record(s) it has not committed with the old settings.` : "no pipeline writes it.");
    return `Changed sink '${name}': ` + (!c ? "no pipeline writes it." : c.switched_after_offset != null
      ? `pipeline '${c.pipeline}' wrote events through offset ${c.switched_after_offset} with the old settings, every later one with the new.`
      : `pipeline '${c.pipeline}' writes every event with the new settings.`);
  },
  pipelines: (name, a, dry) => {
    const c = a.change, definitions = `definition ${c.definition_before} → ${c.definition_after}`;
    if (dry) return `Dry run: pipeline '${name}' can change (${definitions}). The current SQL would first commit the ${c.records_through_old_definition} record(s) it has not committed; every later event would go through the new SQL.`;
    return `Changed pipeline '${name}' (${definitions}): ` + (c.switched_after_offset != null
      ? `events through offset ${c.switched_after_offset} went through the old SQL, every later one goes through the new.` : "every event goes through the new SQL.");
  },
};

async function managePage() {
  const [streams, sinks, pipelines] = await Promise.all(["streams", "sinks", "pipelines"].map((k) => api("GET", "/v1/" + k)));
  const items = {
    streams: streams.streams.map((s) => ({ name: s.stream, origin: s.origin })),
    sinks: sinks.sinks.map((s) => ({ name: s.sink, origin: s.origin })),
    pipelines: pipelines.pipelines.filter((p) => p.sql).map((p) => ({ name: p.pipeline, origin: p.origin })),
  };
  const section = (kind) => {
    const noun = kind.slice(0, -1);
    const body = el("textarea", { id: "create-" + kind }, JSON.stringify(TEMPLATES[kind], null, 2));
    const message = el("p", { id: "message-" + kind });
    const say = (text, bad) => { message.className = bad ? "error" : ""; message.textContent = text; };
    const parsed = (box) => { try { return JSON.parse(box.value); } catch (e) { throw new Error("not JSON: " + e.message); } };
    const create = async () => {
      say("…");
      try {
        const made = await api("POST", "/v1/" + kind, parsed(body));
        say("Created " + (made.stream || made.sink || made.pipeline));
        setTimeout(route, 600);
      } catch (e) { say(e.message, true); }
    };
    const remove = async (name) => {
      if (!confirm(`Delete ${noun} ${name}?`)) return;
      say("Deleting " + name + "… (it commits what it has read first)");
      try { await api("DELETE", `/v1/${kind}/${encodeURIComponent(name)}`); say("Deleted " + name); setTimeout(route, 300); }
      catch (e) { say(e.message, true); }
    };
    // Changing one in place: its current settings to edit, a dry run, then apply.
    const editing = el("div", { id: "edit-" + kind, hidden: true });
    const edit = async (name) => {
      const view = await api("GET", `/v1/${kind}/${encodeURIComponent(name)}`);
      const box = el("textarea", { id: "change-" + kind }, jsonText(EDITABLE[kind](view), 2));
      const answer = el("pre", { id: "change-message-" + kind, class: "message" });
      const change = async (dry) => {
        answer.className = "message"; answer.textContent = "…";
        try {
          const a = await api("PATCH", `/v1/${kind}/${encodeURIComponent(name)}${dry ? "?dry_run=true" : ""}`, parsed(box));
          answer.textContent = a.changed === false ? `${noun[0].toUpperCase() + noun.slice(1)} '${name}' already is so; nothing changed.` : SUMMARY[kind](name, a, dry);
        } catch (e) { answer.className = "message error"; answer.textContent = e.message; }
      };
      editing.replaceChildren(
        el("p", {}, `Change ${noun} `, el("strong", {}, name), " in place: ", EDIT_HINT[kind], "."),
        box,
        el("div", { class: "toolbar" },
          el("button", { class: "secondary", id: `check-${kind}`, onclick: () => change(true) }, "Check (dry run)"),
          el("button", { id: `apply-${kind}`, onclick: () => change(false) }, "Apply"),
          el("button", { class: "link", onclick: () => { editing.hidden = true; } }, "Close")),
        answer);
      editing.hidden = false;
      say("");
    };
    return [
      el("h2", {}, kind[0].toUpperCase() + kind.slice(1)),
      table(["Name", "Defined in", ""], items[kind].map(({ name, origin }) => el("tr", { "data-name": name },
        el("td", {}, name),
        el("td", { class: "muted" }, origin === "file" ? "pipe.toml (change it there and reload)" : "the API"),
        el("td", {}, origin === "file" ? null : [
          el("button", { class: "secondary", "data-edit": kind + "/" + name, onclick: () => edit(name).catch((e) => say(e.message, true)) }, "Change"), " ",
          el("button", { class: "danger", "data-delete": kind + "/" + name, onclick: () => remove(name) }, "Delete")])))),
      editing,
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
  const current = ++view;
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
      // How long the overview took from its figures to laid out (layout forced).
      if (!parts.length) main().dataset.drawMs = (main().offsetHeight, performance.now() - fetchedAt).toFixed(1);
      document.getElementById("status").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      if (view !== current) return;
      main().replaceChildren(el("p", { class: "error" }, e.message),
        e.status === 401 ? el("button", { id: "token-again", onclick: () => { for (const k in declined) delete declined[k]; route(); } }, "Enter a token") : null);
    }
    // The overview follows the figures; other pages stay as loaded.
    if (!parts.length && view === current) timer = setTimeout(render, SAMPLE_MS);
  };
  await render();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("forget").hidden = !tokens.any();
  document.getElementById("forget").onclick = () => { tokens.clear(); location.reload(); };
  route();
});
// Sampling goes on behind other pages, so charts have history.
// (Once the overview has been seen: a tab opened on the SQL page with a
// query token alone is not asked for the admin token.)
setInterval(() => { if (sampling && location.hash.slice(1).replace(/^\/$/, "") !== "" && !asking) sample(true).catch(() => {}); }, SAMPLE_MS);
