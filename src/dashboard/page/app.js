// agifarm dashboard: polls /agifarm/status (the JSON of `agifarm status --json`) once a second and
// renders nodes/devices, pools (live uPlot charts), backends and the plan. Sections and a selected
// backend live in the URL hash, so the back button and links work.
"use strict";
(function () {
  const POLL_MS = 1000, KEEP = 180;  // chart points kept per pool (3 minutes)
  const MiB = 1024 * 1024;
  const dash = window.agifarmDashboard = { status: null, charts: {}, history: {}, polls: 0, errors: 0 };
  const $ = (s) => document.querySelector(s);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const mib = (b) => b == null ? "-" : (b / MiB >= 1024 ? (b / MiB / 1024).toFixed(2) + " GiB" : (b / MiB).toFixed(1) + " MiB");
  const dur = (s) => { if (!s || s < 0) return "-"; if (s < 120) return s + "s"; if (s < 7200) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s"; return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m"; };
  const okState = (st) => st === "ready";
  const stateClass = (st) => okState(st) ? "ok" : (st === "stopped" ? "idle" : "bad");
  const devKey = (d) => String(d).split("[")[0];

  // ---- navigation: #overview #pools #backends #plan, #backend=<name> ----------------------------
  function route() {
    const h = decodeURIComponent(location.hash.slice(1));
    const sel = h.startsWith("backend=") ? h.slice(8) : null;
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === "#" + (sel ? "backends" : h || "overview")));
    dash.selected = sel;
    if (dash.status) renderDetail(dash.status);
    if (sel) { const el = $("#backends"); if (el) el.scrollIntoView(); }
  }
  window.addEventListener("hashchange", route);

  // ---- rendering -------------------------------------------------------------------------------
  function renderFarm(s) {
    $("#farm").innerHTML = s.running === false ? "<b>No farm is running.</b>" :
      `<span>farm <b>${esc(s.phase)}</b>, up <b>${dur(s.uptime_s)}</b></span>` +
      `<span>strategy <b>${esc(s.strategy)}</b></span><span>from <b>${esc(s.source)}</b></span>` +
      `<span>endpoint <b>${esc(s.endpoint ? s.endpoint + "/v1" : "(starting)")}</b></span>` +
      `<span>backends ready <b>${(s.backends || []).filter((b) => okState(b.state)).length} of ${(s.backends || []).length}</b></span>`;
  }

  // Nodes, and per node the devices its backends use: predicted (plan) and measured (buffers) summed.
  function renderNodes(s) {
    const nodes = new Map();
    const node = (n) => { if (!nodes.has(n)) nodes.set(n, { name: n, state: n === "local" ? "up" : "?", devices: new Map() }); return nodes.get(n); };
    node("local");
    for (const n of s.nodes || []) node(n.name).state = n.state;
    for (const b of s.backends || []) {
      const nd = node(b.node || "local");
      for (const row of b.memory || []) {
        const k = devKey(row.device);
        if (!nd.devices.has(k)) nd.devices.set(k, { pred: 0, meas: 0, hasPred: false, hasMeas: false, backends: [] });
        const d = nd.devices.get(k);
        if (row.predicted) { d.pred += row.predicted.total_bytes; d.hasPred = true; }
        if (row.measured) { d.meas += row.measured.total_bytes; d.hasMeas = true; }
        d.backends.push(b.name);
      }
    }
    let html = "";
    for (const nd of nodes.values()) {
      let max = 1;
      for (const d of nd.devices.values()) max = Math.max(max, d.pred, d.meas);
      html += `<div class="card" data-node="${esc(nd.name)}"><h3>${esc(nd.name)} <span class="sub">${esc(nd.state)}</span></h3>`;
      if (!nd.devices.size) html += `<div class="sub">no memory figures yet</div>`;
      for (const [k, d] of nd.devices) {
        const diff = d.hasPred && d.hasMeas ? d.meas - d.pred : null;
        const pct = diff != null && d.pred ? (100 * diff / d.pred) : null;
        html += `<div class="dev" data-device="${esc(k)}"><div class="label"><span>${esc(k === "host" ? "host (CPU / RAM)" : k)}</span>` +
          `<span>${d.hasMeas ? mib(d.meas) : "-"} / ${d.hasPred ? mib(d.pred) : "-"}` +
          (pct != null ? ` <span class="diff ${diff > 0 ? "pos" : "neg"}">${diff >= 0 ? "+" : ""}${(diff / MiB).toFixed(1)} MiB (${pct >= 0 ? "+" : ""}${pct.toFixed(1)} %)</span>` : "") +
          `</span></div><div class="bar" title="predicted ${mib(d.pred)}"><span class="pred" style="width:${(100 * d.pred / max).toFixed(1)}%"></span></div>` +
          `<div class="bar" title="measured ${mib(d.meas)}"><span class="meas" style="width:${(100 * d.meas / max).toFixed(1)}%"></span></div></div>`;
      }
      html += "</div>";
    }
    $("#nodes").innerHTML = html;
  }

  function rates(s, t) {
    for (const p of s.pools || []) {
      const h = dash.history[p.name] || (dash.history[p.name] = { t: [], req: [], tok: [], last: null });
      const cur = { t, req: p.requests_total, tok: p.completion_tokens_total };
      let rq = null, tk = null;
      if (h.last && cur.req != null && h.last.req != null && t > h.last.t) {
        const dt = (t - h.last.t) / 1000;
        rq = Math.max(0, (cur.req - h.last.req) / dt);
        tk = Math.max(0, (cur.tok - h.last.tok) / dt);
      }
      h.last = cur;
      if (rq == null && h.t.length) continue;
      h.t.push(Date.now() / 1000); h.req.push(rq ?? 0); h.tok.push(tk ?? 0);
      if (h.t.length > KEEP) { h.t.shift(); h.req.shift(); h.tok.shift(); }
      h.rq = rq; h.tk = tk;
    }
  }

  function renderPools(s) {
    const list = $("#pool-list");
    const names = (s.pools || []).map((p) => p.name);
    if (list.dataset.names !== names.join("\n")) {  // the set of pools changed: build the cards again
      for (const c of Object.values(dash.charts)) c.destroy();
      dash.charts = {};
      list.innerHTML = names.map((n) => `<div class="card" data-pool="${esc(n)}"><h3>${esc(n)} <span class="sub aliases"></span></h3>` +
        `<div class="kv"></div><div class="chart"></div></div>`).join("");
      list.dataset.names = names.join("\n");
    }
    for (const p of s.pools || []) {
      const card = list.querySelector(`[data-pool="${CSS.escape(p.name)}"]`);
      if (!card) continue;
      const h = dash.history[p.name];
      const members = (s.backends || []).filter((b) => (p.backends || []).includes(b.name));
      const ready = members.filter((b) => okState(b.state)).length;
      card.dataset.ready = String(ready);
      card.querySelector(".aliases").textContent = (p.aliases || []).length ? "roles " + p.aliases.join(", ") : "";
      card.querySelector(".kv").innerHTML =
        `<span>replicas ready <b>${ready} / ${members.length}</b></span>` +
        `<span>queue <b class="queue">${p.queue_depth ?? "-"}</b></span>` +
        `<span>requests <b class="requests">${p.requests_total ?? "-"}</b></span>` +
        `<span>req/s <b>${h && h.rq != null ? h.rq.toFixed(2) : "-"}</b></span>` +
        `<span>tokens/s <b>${h && h.tk != null ? h.tk.toFixed(1) : "-"}</b></span>`;
      const el = card.querySelector(".chart");
      const width = Math.max(200, el.clientWidth || 300);
      if (!dash.charts[p.name] && window.uPlot) {
        dash.charts[p.name] = new uPlot({
          width, height: 150, legend: { show: true },
          scales: { x: { time: true }, r: {}, t: {} },
          axes: [{}, { scale: "r", label: "req/s", size: 50 }, { scale: "t", side: 1, label: "tok/s", size: 50, grid: { show: false } }],
          series: [{}, { label: "req/s", scale: "r", stroke: "#0969da", width: 2 }, { label: "tokens/s", scale: "t", stroke: "#1a7f37", width: 2 }],
        }, [h.t, h.req, h.tok], el);
      } else if (dash.charts[p.name]) {
        const c = dash.charts[p.name];
        if (Math.abs(c.width - width) > 4) c.setSize({ width, height: 150 });
        c.setData([h.t, h.req, h.tok]);
      }
    }
  }

  function memoryCell(b) {
    let pred = 0, meas = 0, hp = false, hm = false;
    for (const r of b.memory || []) { if (r.predicted) { pred += r.predicted.total_bytes; hp = true; } if (r.measured) { meas += r.measured.total_bytes; hm = true; } }
    return `${hm ? mib(meas) : "-"} / ${hp ? mib(pred) : "-"}`;
  }

  function renderBackends(s) {
    const rows = (s.backends || []).map((b) => `<tr data-backend="${esc(b.name)}" data-state="${esc(b.state)}" class="${dash.selected === b.name ? "sel" : ""}">` +
      `<td><a class="bk" href="#backend=${encodeURIComponent(b.name)}">${esc(b.name)}</a></td><td>${esc(b.node)}</td>` +
      `<td><span class="state ${stateClass(b.state)}">${esc(b.state)}</span></td><td>${b.restarts}</td><td>${dur(b.uptime_s)}</td>` +
      `<td>${b.kind === "llama-server" ? (b.in_flight ?? "-") + " / " + b.slots : "-"}</td><td>${memoryCell(b)}</td>` +
      `<td class="reason">${esc(b.reason)}</td></tr>`).join("");
    $("#backend-table tbody").innerHTML = rows;
  }

  function renderDetail(s) {
    const el = $("#backend-detail");
    const b = (s.backends || []).find((x) => x.name === dash.selected);
    document.querySelectorAll("#backend-table tr[data-backend]").forEach((tr) => tr.classList.toggle("sel", tr.dataset.backend === dash.selected));
    if (!b) { el.innerHTML = dash.selected ? `<p>No backend ${esc(dash.selected)}.</p>` : `<p class="hint">Select a backend for its memory per device and its last log lines.</p>`; return; }
    let mem = `<table><thead><tr><th>Device</th><th>Predicted</th><th>Measured</th><th>Diff</th><th>model / KV / compute measured</th></tr></thead><tbody>`;
    for (const r of b.memory || []) {
      mem += `<tr><td>${esc(r.device)}</td><td>${r.predicted ? mib(r.predicted.total_bytes) : "-"}</td><td>${r.measured ? mib(r.measured.total_bytes) : "-"}</td>` +
        `<td>${r.diff_bytes == null ? "-" : (r.diff_bytes >= 0 ? "+" : "") + (r.diff_bytes / MiB).toFixed(1) + " MiB (" + (r.diff_pct >= 0 ? "+" : "") + r.diff_pct + " %)"}</td>` +
        `<td>${r.measured ? [r.measured.model_bytes, r.measured.kv_bytes, r.measured.compute_bytes].map(mib).join(" / ") : "-"}</td></tr>`;
    }
    mem += "</tbody></table>";
    el.innerHTML = `<div class="card" data-detail="${esc(b.name)}"><h3>${esc(b.name)} <span class="sub">${esc(b.kind)} ${esc(b.model)} on ${esc(b.host)}:${b.port}, pid ${b.pid || "-"}${b.last_exit ? ", last exit: " + esc(b.last_exit) : ""}</span></h3>` +
      mem + `<pre class="log">${esc((b.log_tail || []).join("\n")) || "(no log lines)"}</pre></div>`;
  }

  function renderPlan(s) {
    const p = s.plan;
    if (!p) { $("#plan-body").innerHTML = `<p class="hint">Strategy <b>${esc(s.strategy)}</b>. The table of considered strategies is shown for farms started from a plan file (<code>agifarm up --plan plan.json</code>) or planned from their farm file (<code>agifarm up farm.yaml</code> without <code>strategy:</code>).</p>`; return; }
    let html = `<p>Chose <b>${esc(p.strategy)}</b>` + (p.runner_up ? `; runner-up <b>${esc(p.runner_up)}</b> would need to be ${(100 * p.runner_up_gain).toFixed(0)} % faster to win` : "") + ".</p>";
    if ((p.reasons || []).length) html += "<ul>" + p.reasons.map((r) => `<li>${esc(r)}</li>`).join("") + "</ul>";
    html += `<div class="scroll"><table><thead><tr><th>Model</th><th>Strategy</th><th>Summary</th><th>Fits</th><th>Decode tok/s</th><th>All agents tok/s</th><th>Max ctx</th><th>Score</th><th>Why not</th></tr></thead><tbody>`;
    for (const c of p.candidates || [])
      html += `<tr class="${c.chosen ? "chosen" : ""}"><td>${esc(c.model)}</td><td>${esc(c.strategy)}${c.chosen ? " ✓" : ""}</td><td>${esc(c.summary)}</td>` +
        `<td>${c.feasible ? "yes" : "no"}</td><td>${c.decode_tps.toFixed(1)}</td><td>${c.aggregate_decode_tps.toFixed(1)}</td><td>${c.max_ctx}</td><td>${c.score.toFixed(2)}</td><td class="reason">${esc(c.why_not)}</td></tr>`;
    $("#plan-body").innerHTML = html + "</tbody></table></div>";
  }

  function render(s) {
    renderFarm(s);
    if (s.running === false) return;
    rates(s, performance.now());
    renderNodes(s);
    renderPools(s);
    renderBackends(s);
    renderDetail(s);
    renderPlan(s);
  }

  async function poll() {
    try {
      const r = await fetch("/agifarm/status", { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const s = await r.json();
      dash.status = s;
      dash.polls++;
      render(s);
      const c = $("#conn");
      c.dataset.ok = "true";
      c.textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      dash.errors++;
      const c = $("#conn");
      c.dataset.ok = "false";
      c.textContent = "no answer from the farm (" + e.message + "); retrying";
    }
    setTimeout(poll, POLL_MS);
  }
  window.addEventListener("resize", () => { if (dash.status) renderPools(dash.status); });
  route();
  poll();
})();
