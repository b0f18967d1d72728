// netdumplings live view: an ordinary eater of the hub that served this page.
//
// It opens a WebSocket to the same host and port (with the page's query string, so a
// token given as `?token=...` reaches the hub the same way as for other eaters), sends an
// eater hello, and folds every dumpling into small bounded stores. Rendering is decoupled
// from arrival: messages only update the stores (O(1) each), and the visible view is
// redrawn at most every RENDER_MS, so 10 k dumplings/s do not block the main thread.
//
// Safety: every string a chef or peer controls reaches the DOM through textContent only
// (never innerHTML), and the server sends a Content-Security-Policy that forbids any
// script not served by the hub.
"use strict";

(function () {
  const RENDER_MS = 500;        // redraw period of the visible view
  const FEED_MAX = 1000;        // dumplings kept for the raw feed
  const FEED_SHOWN = 200;       // feed rows drawn
  const RAW_MAX = 16384;        // characters of one dumpling kept for the feed
  const TABLE_ROWS = 200;       // rows drawn per table
  const MAP_MAX = 5000;         // entries per name/device store
  const LIST_MAX = 200;         // entries per event list (HTTP, DHCP, MAC changes)
  const CHART_POINTS = 600;     // points per kitchen in the protocol chart
  const CHART_SERIES = 12;      // layers drawn; the rest are summed as "other"
  const KNOWN = new Set(["SystemStatusChef", "KitchenStatusChef", "HubNoticeChef", "PacketCountChef",
    "DNSLookupChef", "ARPChef", "TLSServerNameChef", "HTTPRequestChef", "DHCPLeaseChef", "TopTalkersChef"]);

  const $ = (id) => document.getElementById(id);

  // ---- diagnostics the browser tests read (and a curious user may too) -------------------
  const diag = { errors: [], longTasks: 0, longTaskMs: 0, longTaskMax: 0, renders: 0, renderMs: 0 };
  window.addEventListener("error", (e) => { if (diag.errors.length < 50) diag.errors.push(String(e.message)); });
  window.addEventListener("unhandledrejection", (e) => { if (diag.errors.length < 50) diag.errors.push(String(e.reason)); });
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        diag.longTasks += 1;
        diag.longTaskMs += entry.duration;
        diag.longTaskMax = Math.max(diag.longTaskMax, entry.duration);
      }
    }).observe({ type: "longtask", buffered: true });
  } catch (_) { /* longtask is Chromium-only; other browsers just do not report it */ }

  // ---- small helpers ----------------------------------------------------------------------
  function text(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }
  function fmtTime(t) {
    if (typeof t !== "number" || !isFinite(t)) return "";
    const d = new Date(t * 1000);
    return isNaN(d.getTime()) ? "" : d.toISOString().replace("T", " ").slice(0, 19);
  }
  // One formatter: toLocaleString builds a new Intl formatter per call (~0.5 ms each).
  const NUM = new Intl.NumberFormat("en-US");
  function fmtNum(n) { return typeof n === "number" && isFinite(n) ? NUM.format(n) : ""; }
  function fmtBytes(n) {
    if (typeof n !== "number") return "";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  // A Map that forgets its oldest-inserted entry past `max` (bounded memory).
  function boundedSet(map, key, value, max) {
    if (!map.has(key) && map.size >= max) map.delete(map.keys().next().value);
    map.set(key, value);
  }
  function pushBounded(list, item, max) {
    list.push(item);
    if (list.length > max) list.splice(0, list.length - max);
  }
  // Replace a table body with rows of cell texts (textContent only).
  function fillTable(id, rows) {
    const body = $(id).tBodies[0];
    const frag = document.createDocumentFragment();
    for (const cells of rows.slice(0, TABLE_ROWS)) {
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = text(c);
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    body.replaceChildren(frag);
  }
  function setOptions(select, values, allLabel) {
    const current = select.value;
    const have = Array.from(select.options).map((o) => o.value);
    const want = (allLabel === null ? [] : [""]).concat(values);
    if (have.length === want.length && have.every((v, i) => v === want[i])) return;
    select.replaceChildren();
    for (const v of want) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = v === "" ? allLabel : v;
      select.appendChild(o);
    }
    if (want.includes(current)) select.value = current;
  }

  // ---- stores -------------------------------------------------------------------------------
  const stats = { hubStatuses: 0, received: 0, pageDropped: 0, lagged: 0, badJson: 0, rate: 0, lastCount: 0, lastAt: performance.now() };
  const dirty = new Set();
  const fleet = { hub: null, prevIn: new Map(), rates: new Map(), kstatus: new Map() };
  const pc = new Map();           // kitchen -> {layers: [], x: [], values: Map(layer -> [])}
  const dns = new Map();          // kitchen\0name -> {name, count, latest, kitchen}
  const arp = new Map();          // kitchen\0ip -> {ip, mac, first, last, packets, kitchen}
  const arpChanges = [];
  const tls = new Map();          // name -> {...}
  const http = [];
  const dhcpLeases = new Map();   // kitchen -> leases object
  const dhcpEvents = [];
  const talkers = { latest: null, kitchen: "" };
  const other = new Map();        // kitchen\0chef -> {kitchen, chef, driver, time, payload}
  const feed = new Array(FEED_MAX);
  let feedNext = 0;               // total feed items ever stored
  const seen = { kitchens: new Set(), chefs: new Set() };

  function onDumpling(raw) {
    stats.received += 1;
    let d;
    try { d = JSON.parse(raw); } catch (_) { stats.badJson += 1; return; }
    const meta = (d && typeof d.metadata === "object" && d.metadata) || {};
    const payload = d ? d.payload : undefined;
    const chef = typeof meta.chef === "string" ? meta.chef : text(meta.chef);
    const kitchen = meta.kitchen === null || meta.kitchen === undefined ? "" : text(meta.kitchen);
    const driver = text(meta.driver);
    const time = typeof meta.creation_time === "number" ? meta.creation_time : Date.now() / 1000;

    // Raw feed: a ring; what falls off is counted as dropped by the page.
    if (feedNext >= FEED_MAX) stats.pageDropped += 1;
    feed[feedNext % FEED_MAX] = { n: feedNext, kitchen, chef, driver, time,
      raw: raw.length > RAW_MAX ? raw.slice(0, RAW_MAX) + "…" : raw };
    feedNext += 1;
    dirty.add("feed");
    if (seen.kitchens.size < 200 && kitchen) seen.kitchens.add(kitchen);
    if (seen.chefs.size < 200) seen.chefs.add(chef);

    if (!payload || typeof payload !== "object") return;
    switch (chef) {
      case "SystemStatusChef": stats.hubStatuses += 1; onHubStatus(payload); break;
      case "KitchenStatusChef": fleet.kstatus.set(kitchen, payload); dirty.add("fleet"); break;
      case "HubNoticeChef":
        if (typeof payload.lagged === "number") stats.lagged += payload.lagged;
        break;
      case "PacketCountChef": onPacketCounts(kitchen, time, payload.packet_counts); break;
      case "DNSLookupChef": onDns(kitchen, payload); break;
      case "ARPChef": onArp(kitchen, payload); break;
      case "TLSServerNameChef": onTls(kitchen, payload); break;
      case "HTTPRequestChef":
        if (payload.http_request && typeof payload.http_request === "object") {
          pushBounded(http, Object.assign({ kitchen }, payload.http_request), LIST_MAX);
          dirty.add("http");
        }
        break;
      case "DHCPLeaseChef": onDhcp(kitchen, payload); break;
      case "TopTalkersChef":
        if (payload.top_talkers && typeof payload.top_talkers === "object") {
          talkers.latest = payload.top_talkers;
          talkers.kitchen = kitchen;
          dirty.add("talkers");
        }
        break;
      default: break;
    }
    if (!KNOWN.has(chef)) {
      boundedSet(other, kitchen + "\0" + chef, { kitchen, chef, driver, time, payload }, LIST_MAX);
      dirty.add("other");
    }
  }

  function onHubStatus(p) {
    const uptime = typeof p.server_uptime === "number" ? p.server_uptime : 0;
    for (const k of Array.isArray(p.dumpling_kitchens) ? p.dumpling_kitchens : []) {
      const hub = (k && k.info_from_hub) || {};
      const key = text(hub.host) + ":" + text(hub.port);
      const prev = fleet.prevIn.get(key);
      if (prev && uptime > prev.uptime && typeof hub.dumplings_in === "number") {
        fleet.rates.set(key, (hub.dumplings_in - prev.count) / (uptime - prev.uptime));
      }
      if (typeof hub.dumplings_in === "number") boundedSet(fleet.prevIn, key, { uptime, count: hub.dumplings_in }, 1000);
    }
    fleet.hub = p;
    dirty.add("fleet");
  }

  function onPacketCounts(kitchen, time, counts) {
    if (!counts || typeof counts !== "object") return;
    let s = pc.get(kitchen);
    if (!s || (s.x.length && time < s.x[s.x.length - 1])) {
      // First sight, or a new run under the same name (time went backwards): start over.
      s = { layers: [], x: [], values: new Map() };
      boundedSet(pc, kitchen, s, 100);
    }
    for (const layer of Object.keys(counts)) {
      if (!s.values.has(layer) && s.layers.length < 1000) {
        s.layers.push(layer);
        s.values.set(layer, new Array(s.x.length).fill(0));
      }
    }
    s.x.push(time);
    for (const layer of s.layers) {
      const v = counts[layer];
      s.values.get(layer).push(typeof v === "number" ? v : 0);
    }
    if (s.x.length > CHART_POINTS) {
      const cut = s.x.length - CHART_POINTS;
      s.x.splice(0, cut);
      for (const arr of s.values.values()) arr.splice(0, cut);
    }
    s.latest = counts;
    dirty.add("protocols");
  }

  function onDns(kitchen, p) {
    if (p.lookup && typeof p.lookup === "object") {
      const name = text(p.lookup.hostname);
      const key = kitchen + "\0" + name;
      const e = dns.get(key);
      if (!e) boundedSet(dns, key, { name, count: 1, latest: p.lookup.when, kitchen }, MAP_MAX);
      else if (typeof p.lookup.when === "number" && !(e.latest >= p.lookup.when)) e.latest = p.lookup.when;
      dirty.add("dns");
    }
    if (p.lookups_seen && typeof p.lookups_seen === "object") {
      // The chef's own totals are authoritative: they replace the page's running guess.
      for (const [name, v] of Object.entries(p.lookups_seen)) {
        if (!v || typeof v !== "object") continue;
        boundedSet(dns, kitchen + "\0" + name, { name, count: v.count, latest: v.latest, kitchen }, MAP_MAX);
      }
      dirty.add("dns");
    }
  }

  function onArp(kitchen, p) {
    const ip = text(p.src_ip);
    const mac = text(p.src_hw);
    if (!ip || ip === "0.0.0.0") return;
    const key = kitchen + "\0" + ip;
    const e = arp.get(key);
    if (!e) {
      boundedSet(arp, key, { ip, mac, first: p.time, last: p.time, packets: 1, kitchen }, MAP_MAX);
    } else {
      if (e.mac !== mac) {
        pushBounded(arpChanges, { time: p.time, ip, old: e.mac, mac, kitchen }, LIST_MAX);
        e.mac = mac;
      }
      e.last = p.time;
      e.packets += 1;
    }
    dirty.add("arp");
  }

  function onTls(kitchen, p) {
    if (p.tls && typeof p.tls === "object") {
      const name = text(p.tls.server_name);
      const e = tls.get(name) || { name, count: 0, latest: null };
      e.count = Math.max(e.count, 1);
      e.latest = p.tls.time;
      e.client = p.tls.client; e.server = p.tls.server; e.version = p.tls.version;
      e.alpn = Array.isArray(p.tls.alpn) ? p.tls.alpn.map(text).join(", ") : "";
      boundedSet(tls, name, e, MAP_MAX);
      dirty.add("tls");
    }
    if (p.server_names_seen && typeof p.server_names_seen === "object") {
      for (const [name, v] of Object.entries(p.server_names_seen)) {
        if (!v || typeof v !== "object") continue;
        const e = tls.get(name) || { name };
        e.count = v.count; e.latest = v.latest;
        boundedSet(tls, name, e, MAP_MAX);
      }
      dirty.add("tls");
    }
  }

  function onDhcp(kitchen, p) {
    if (p.dhcp && typeof p.dhcp === "object") {
      pushBounded(dhcpEvents, p.dhcp, LIST_MAX);
      dirty.add("dhcp");
    }
    if (p.leases && typeof p.leases === "object") {
      boundedSet(dhcpLeases, kitchen, p.leases, 100);
      dirty.add("dhcp");
    }
  }

  // ---- rendering ----------------------------------------------------------------------------
  function renderFleet() {
    const hub = fleet.hub || {};
    const rows = [];
    const listed = new Set();
    for (const k of Array.isArray(hub.dumpling_kitchens) ? hub.dumpling_kitchens : []) {
      const info = (k && k.info_from_kitchen) || {};
      const from = (k && k.info_from_hub) || {};
      const name = text(info.kitchen_name);
      listed.add(name);
      const ks = fleet.kstatus.get(name);
      const cap = (ks && ks.capture) || {};
      const drops = ks ? (cap.kernel_dropped || 0) + (cap.queue_dropped || 0) : "";
      const rate = fleet.rates.get(text(from.host) + ":" + text(from.port));
      rows.push([name, info.interface, info.filter,
        Array.isArray(info.chefs) ? info.chefs.map(text).join(", ") : text(info.chefs),
        info.read_file ? "file " + text(info.read_file) : info.source,
        fmtNum(from.dumplings_in), rate === undefined ? "" : rate.toFixed(1),
        fmtNum(cap.packets), fmtNum(drops), fmtNum(from.dumplings_invalid),
        text(from.host) + ":" + text(from.port)]);
    }
    // Kitchens that report status but are beyond the hub's list cap (or not yet listed).
    for (const [name, ks] of fleet.kstatus) {
      if (listed.has(name)) continue;
      const cap = ks.capture || {};
      rows.push([name, "", "", Object.keys(ks.chefs || {}).join(", "), "", "", "",
        fmtNum(cap.packets), fmtNum((cap.kernel_dropped || 0) + (cap.queue_dropped || 0)), "", ""]);
    }
    fillTable("kitchens", rows);
    const chefRows = [];
    for (const [kitchen, ks] of fleet.kstatus) {
      for (const [name, c] of Object.entries(ks.chefs || {})) {
        if (!c || typeof c !== "object") continue;
        chefRows.push([kitchen, name, c.state, fmtNum(c.packets_offered), fmtNum(c.dumplings),
          fmtNum(c.traps), fmtNum(c.timeouts), fmtNum(c.restarts), c.version]);
      }
    }
    fillTable("chefs", chefRows);
    fillTable("eaters", (Array.isArray(hub.dumpling_eaters) ? hub.dumpling_eaters : []).map((e) => {
      const info = (e && e.info_from_eater) || {};
      const from = (e && e.info_from_hub) || {};
      return [info.eater_name, text(from.host) + ":" + text(from.port), fmtNum(from.dumplings_delivered), fmtNum(from.dumplings_dropped)];
    }));
    $("hub-summary").textContent = fleet.hub
      ? `hub: ${fmtNum(hub.dumpling_kitchen_count)} kitchens, ${fmtNum(hub.dumpling_eater_count)} eaters, ` +
        `${fmtNum(hub.total_dumplings_in)} dumplings in, ${fmtNum(hub.total_dumplings_out)} out, ` +
        `up ${Math.round(hub.server_uptime || 0)} s`
      : "waiting for the hub's status…";
  }

  const COLORS = ["#c2410c", "#2563eb", "#16a34a", "#9333ea", "#ca8a04", "#0891b2", "#db2777",
    "#4d7c0f", "#7c3aed", "#b91c1c", "#0f766e", "#a16207"];
  const chart = { plot: null, kitchen: null, layers: "" };

  // The series drawn for one kitchen: first-seen layers, the rest summed as "other".
  function chartSeries(s) {
    const named = s.layers.length > CHART_SERIES ? s.layers.slice(0, CHART_SERIES - 1) : s.layers.slice();
    const rest = s.layers.slice(named.length);
    const cols = named.map((l) => s.values.get(l));
    if (rest.length) {
      named.push("other");
      cols.push(s.x.map((_, i) => rest.reduce((sum, l) => sum + s.values.get(l)[i], 0)));
    }
    return { names: named, cols };
  }

  function renderProtocols() {
    const select = $("pc-kitchen");
    setOptions(select, Array.from(pc.keys()), null);
    if (!select.value && pc.size) select.value = pc.keys().next().value;
    const kitchen = select.value;
    const s = pc.get(kitchen);
    const box = $("pc-chart");
    if (!s || typeof uPlot === "undefined") return;
    const { names, cols } = chartSeries(s);
    // Stack: series i is the sum of layers i..n-1; drawn in order, each filled from zero,
    // later (smaller) ones paint over earlier ones, so each layer shows as its own band.
    const stacked = cols.map((_, i) => s.x.map((_, j) => {
      let sum = 0;
      for (let k = i; k < cols.length; k += 1) sum += cols[k][j];
      return sum;
    }));
    const data = [s.x.slice()].concat(stacked);
    const width = Math.max(280, box.clientWidth || 600);
    const key = kitchen + "\0" + names.join("\0");
    if (!chart.plot || chart.layers !== key) {
      if (chart.plot) chart.plot.destroy();
      box.replaceChildren();
      chart.plot = new uPlot({
        width, height: 320,
        series: [{}].concat(names.map((n, i) => ({
          label: n, stroke: COLORS[i % COLORS.length], fill: COLORS[i % COLORS.length] + "cc", width: 1,
          value: (u, v, si, idx) => idx === null || idx === undefined ? "" : fmtNum(unstackAt(u, si, idx)),
        }))),
        axes: [{}, { size: 60 }],
      }, data, box);
      chart.layers = key;
      chart.names = names;
    } else {
      if (Math.abs(chart.plot.width - width) > 4) chart.plot.setSize({ width, height: 320 });
      chart.plot.setData(data);
    }
    fillTable("pc-latest", names.map((n, i) => [n, fmtNum(cols[i][cols[i].length - 1])]));
  }
  function unstackAt(u, si, idx) {
    const here = u.data[si][idx];
    const below = si + 1 < u.data.length ? u.data[si + 1][idx] : 0;
    return here - below;
  }

  function renderDns() {
    // Plain comparisons: localeCompare (ICU) made sorting 5000 names cost ~200 ms.
    const rows = Array.from(dns.values()).sort((a, b) => (b.count || 0) - (a.count || 0) ||
      (b.latest || 0) - (a.latest || 0) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    fillTable("dns", rows.map((e) => [e.name, fmtNum(e.count), fmtTime(e.latest), e.kitchen]));
  }
  function renderArp() {
    const rows = Array.from(arp.values()).sort((a, b) => (b.last || 0) - (a.last || 0));
    fillTable("arp", rows.map((e) => [e.ip, e.mac, fmtTime(e.first), fmtTime(e.last), fmtNum(e.packets), e.kitchen]));
    fillTable("arp-changes", arpChanges.slice().reverse().map((c) => [fmtTime(c.time), c.ip, c.old, c.mac, c.kitchen]));
  }
  function renderTls() {
    const rows = Array.from(tls.values()).sort((a, b) => (b.count || 0) - (a.count || 0));
    fillTable("tls", rows.map((e) => [e.name, fmtNum(e.count), fmtTime(e.latest), e.client, e.server, e.version, e.alpn]));
  }
  function renderHttp() {
    fillTable("http", http.slice().reverse().map((r) => [fmtTime(r.time), r.method, r.host, r.path, r.user_agent, r.client, r.server]));
  }
  function renderDhcp() {
    const rows = [];
    for (const [kitchen, leases] of dhcpLeases) {
      for (const [mac, l] of Object.entries(leases)) {
        if (!l || typeof l !== "object") continue;
        rows.push([mac, l.ip, l.hostname, l.expires === null ? "never" : fmtTime(l.expires), kitchen]);
      }
    }
    fillTable("dhcp", rows);
    fillTable("dhcp-events", dhcpEvents.slice().reverse().map((e) => [fmtTime(e.time), e.event, e.client_hw, e.ip, e.hostname, e.server]));
  }
  function bars(id, items, label) {
    const box = $(id);
    const max = items.reduce((m, it) => Math.max(m, typeof it.bytes === "number" ? it.bytes : 0), 0) || 1;
    const frag = document.createDocumentFragment();
    for (const it of items.slice(0, 50)) {
      const row = document.createElement("div");
      row.className = "bar";
      const l = document.createElement("span");
      l.className = "label";
      l.textContent = label(it);
      l.title = label(it);
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = (100 * Math.max(0, Number(it.bytes) || 0) / max).toFixed(1) + "%";
      track.appendChild(fill);
      const v = document.createElement("span");
      v.className = "value";
      v.textContent = fmtBytes(it.bytes) + " / " + fmtNum(it.packets) + " pkts";
      row.append(l, track, v);
      frag.appendChild(row);
    }
    box.replaceChildren(frag);
  }
  function renderTalkers() {
    const t = talkers.latest;
    if (!t) return;
    $("talkers-summary").textContent = `kitchen ${talkers.kitchen}: ${fmtNum(t.packets)} packets, ` +
      `${fmtBytes(t.bytes)}, ${fmtNum(t.flows)} flows in the last ${text(t.interval)} s`;
    bars("talkers-hosts", Array.isArray(t.top_hosts) ? t.top_hosts : [], (h) => text(h.ip));
    bars("talkers-flows", Array.isArray(t.top_flows) ? t.top_flows : [], (f) => `${text(f.protocol)} ${text(f.src)} → ${text(f.dst)}`);
  }
  function renderOther() {
    const box = $("other");
    const frag = document.createDocumentFragment();
    if (!other.size) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No other chef has sent a dumpling yet.";
      frag.appendChild(p);
    }
    for (const e of other.values()) {
      const div = document.createElement("div");
      div.className = "generic";
      const h = document.createElement("h3");
      h.textContent = `${e.chef} (${e.kitchen || "hub"}, ${e.driver}, ${fmtTime(e.time)})`;
      div.appendChild(h);
      const table = document.createElement("table");
      const entries = e.payload && typeof e.payload === "object" && !Array.isArray(e.payload)
        ? Object.entries(e.payload).slice(0, 50) : [["payload", e.payload]];
      for (const [k, v] of entries) {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.textContent = k;
        const td = document.createElement("td");
        const s = typeof v === "object" && v !== null ? JSON.stringify(v, null, 1) : text(v);
        td.textContent = s.length > 2000 ? s.slice(0, 2000) + "…" : s;
        tr.append(th, td);
        table.appendChild(tr);
      }
      div.appendChild(table);
      frag.appendChild(div);
    }
    box.replaceChildren(frag);
  }

  const feedUi = { paused: false, pausedAt: 0, open: new Set() };
  function feedItems() {
    const k = $("f-kitchen").value, c = $("f-chef").value, d = $("f-driver").value;
    const q = $("f-search").value.trim().toLowerCase();
    const newest = feedUi.paused ? feedUi.pausedAt : feedNext;
    const out = [];
    for (let n = newest - 1; n >= 0 && n >= feedNext - FEED_MAX && out.length < FEED_SHOWN; n -= 1) {
      const it = feed[n % FEED_MAX];
      if (!it || it.n !== n) break;
      if (k && it.kitchen !== k) continue;
      if (c && it.chef !== c) continue;
      if (d && it.driver !== d) continue;
      if (q && !it.raw.toLowerCase().includes(q)) continue;
      out.push(it);
    }
    return out;
  }
  function renderFeed() {
    setOptions($("f-kitchen"), Array.from(seen.kitchens).sort(), "all kitchens");
    setOptions($("f-chef"), Array.from(seen.chefs).sort(), "all chefs");
    const items = feedItems();
    const frag = document.createDocumentFragment();
    for (const it of items) {
      const row = document.createElement("div");
      row.className = "feed-row";
      row.dataset.n = String(it.n);
      row.dataset.chef = it.chef;
      row.dataset.kitchen = it.kitchen;
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = `${fmtTime(it.time)} ${it.kitchen || "hub"} ${it.chef} ${it.driver}`;
      row.appendChild(meta);
      if (feedUi.open.has(it.n)) {
        const pre = document.createElement("pre");
        let pretty = it.raw;
        try { pretty = JSON.stringify(JSON.parse(it.raw), null, 2); } catch (_) { /* truncated: show as is */ }
        pre.textContent = pretty;
        row.appendChild(pre);
      } else {
        const body = document.createElement("span");
        body.textContent = it.raw.length > 300 ? it.raw.slice(0, 300) + "…" : it.raw;
        row.appendChild(body);
      }
      frag.appendChild(row);
    }
    $("feed").replaceChildren(frag);
    const kept = Math.min(feedNext, FEED_MAX);
    $("f-count").textContent = `${items.length} shown of the last ${fmtNum(kept)} kept` +
      (feedUi.paused ? ` (paused; ${fmtNum(feedNext - feedUi.pausedAt)} new)` : "");
  }

  const RENDERERS = { fleet: renderFleet, protocols: renderProtocols, dns: renderDns, arp: renderArp,
    tls: renderTls, http: renderHttp, dhcp: renderDhcp, talkers: renderTalkers, other: renderOther, feed: renderFeed };
  let active = "fleet";

  function render(force) {
    const t0 = performance.now();
    const secs = (t0 - stats.lastAt) / 1000;
    if (secs >= 1) {
      stats.rate = (stats.received - stats.lastCount) / secs;
      stats.lastCount = stats.received;
      stats.lastAt = t0;
    }
    $("st-received").textContent = fmtNum(stats.received);
    $("st-rate").textContent = fmtNum(Math.round(stats.rate));
    $("st-dropped").textContent = fmtNum(stats.pageDropped);
    $("st-lagged").textContent = fmtNum(stats.lagged);
    if (force || dirty.has(active)) {
      dirty.delete(active);
      if (!(active === "feed" && feedUi.paused && !force)) RENDERERS[active]();
    }
    diag.renders += 1;
    diag.renderMs += performance.now() - t0;
  }
  // Adaptive throttle: the next redraw waits at least RENDER_MS and at least ten times
  // what the last one cost, so a slow machine spends at most ~10% of its time drawing.
  let lastRenderMs = 0;
  function tick() {
    const t0 = performance.now();
    render(false);
    lastRenderMs = performance.now() - t0;
    setTimeout(tick, Math.max(RENDER_MS, 10 * lastRenderMs));
  }
  setTimeout(tick, RENDER_MS);

  function show(view) {
    if (!RENDERERS[view]) return;
    active = view;
    for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
    for (const s of document.querySelectorAll(".view")) s.classList.toggle("active", s.id === "view-" + view);
    if (location.hash !== "#" + view) history.replaceState(null, "", "#" + view);
    render(true);
  }
  $("tabs").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b) show(b.dataset.view);
  });
  for (const id of ["f-kitchen", "f-chef", "f-driver", "f-search"]) $(id).addEventListener("input", () => render(true));
  $("f-pause").addEventListener("click", () => {
    feedUi.paused = !feedUi.paused;
    feedUi.pausedAt = feedNext;
    $("f-pause").textContent = feedUi.paused ? "Resume" : "Pause";
    render(true);
  });
  $("feed").addEventListener("click", (e) => {
    const row = e.target.closest(".feed-row");
    if (!row) return;
    const n = Number(row.dataset.n);
    if (feedUi.open.has(n)) feedUi.open.delete(n); else if (feedUi.open.size < 20) feedUi.open.add(n);
    render(true);
  });
  $("pc-kitchen").addEventListener("change", () => render(true));
  window.addEventListener("resize", () => { if (active === "protocols") render(true); });

  // ---- connection ---------------------------------------------------------------------------
  const conn = { ws: null, backoff: 500, connects: 0, state: "connecting" };
  const decoder = new TextDecoder();
  function setConn(state, label) {
    conn.state = state;
    const el = $("conn");
    el.textContent = label;
    el.className = "conn " + (state === "up" ? "up" : "down");
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(scheme + "//" + location.host + "/" + location.search);
    } catch (e) {
      setConn("down", "cannot connect: " + String(e));
      setTimeout(connect, conn.backoff);
      return;
    }
    ws.binaryType = "arraybuffer";
    conn.ws = ws;
    ws.onopen = () => {
      conn.backoff = 500;
      conn.connects += 1;
      ws.send(JSON.stringify({ eater_name: "webview", eater_software: "netdumplings web view" }));
      setConn("up", "live");
    };
    ws.onmessage = (m) => onDumpling(typeof m.data === "string" ? m.data : decoder.decode(m.data));
    ws.onclose = (e) => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      const wait = conn.backoff;
      conn.backoff = Math.min(conn.backoff * 2, 5000);
      setConn("down", `hub connection lost (${e.code}); retrying in ${(wait / 1000).toFixed(1)} s`);
      setTimeout(connect, wait);
    };
    // onerror is always followed by onclose, which reconnects.
  }

  // What the browser tests (and the console) can ask.
  window.ndView = {
    stats: () => ({ hubStatuses: stats.hubStatuses, received: stats.received, pageDropped: stats.pageDropped, lagged: stats.lagged,
      badJson: stats.badJson, connected: conn.state === "up", connects: conn.connects,
      feedKept: Math.min(feedNext, FEED_MAX), dnsNames: dns.size }),
    diag: () => Object.assign({}, diag, { errors: diag.errors.slice() }),
    // Start a new measurement window for the longest task (the page load has its own).
    resetLongTaskMax: () => { diag.longTaskMax = 0; },
    // Latest value of each charted layer, read back from the plotted (stacked) data.
    chartLatest: () => {
      const u = chart.plot;
      if (!u || !u.data[0].length) return null;
      const last = u.data[0].length - 1;
      const out = {};
      chart.names.forEach((n, i) => { out[n] = unstackAt(u, i + 1, last); });
      return out;
    },
    show,
  };

  show(RENDERERS[location.hash.slice(1)] ? location.hash.slice(1) : "fleet");
  connect();
})();
