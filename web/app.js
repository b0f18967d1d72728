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
  const KITCHEN_MAX = 300;      // kitchens whose latest KitchenStatusChef is kept
  const KITCHEN_CHEFS = 32;     // chefs kept of one kitchen's status
  const SEEN_MAX = 200;         // kitchen and chef names offered by the feed filters
  const TEXT_MAX = 256;         // characters kept of any one name or text a peer sends
  const VALUE_MAX = 2000;       // characters kept of one value of an unknown chef's payload
  const CELL_MAX = 500;         // characters drawn in one table cell (the rest in its title)
  const LABEL_MAX = 60;         // characters of a name in a filter option or a chart legend
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
  // A number as sent, or undefined: a store keeps no other value where a number belongs
  // (a 1 MB string there would be kept, and drawn as nothing).
  function num(v) { return typeof v === "number" ? v : undefined; }
  // `s` cut to `max` characters, marked "…". The kept part is copied: V8 makes a slice a
  // view of its parent, so `s.slice(0, max)` alone would keep the whole message alive in
  // every store entry made from it (measured: 300 slices of 100 characters of 1 MB strings
  // kept 301 MB).
  function cut(s, max = TEXT_MAX) {
    if (s.length <= max) return s;
    return JSON.parse(JSON.stringify(s.slice(0, max))) + "…";
  }
  function cutText(v, max) { return cut(text(v), max); }
  // A Map that forgets its oldest-inserted entry past `max` (bounded memory).
  function boundedSet(map, key, value, max) {
    if (!map.has(key) && map.size >= max) map.delete(map.keys().next().value);
    map.set(key, value);
  }
  // A Map (or Set) that forgets its least recently updated entry past `max`: a peer that
  // keeps reporting (a live kitchen, a chef) outlives any burst of one-off names a peer
  // makes up. An update moves the key to the end of the iteration order; views that list
  // these sort them, so rows do not move about.
  function recentSet(map, key, value, max) {
    map.delete(key);
    if (map.size >= max) map.delete(map.keys().next().value);
    map.set(key, value);
  }
  function recentAdd(set, value, max) {
    set.delete(value);
    if (set.size >= max) set.delete(set.values().next().value);
    set.add(value);
  }
  function byName(a, b) { return a < b ? -1 : a > b ? 1 : 0; }
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
        // Cells from the hub's status (kitchen hellos) can be long: drawn cut, longer in
        // the title; the stores keep their own texts within TEXT_MAX.
        const s = text(c);
        td.textContent = cut(s, CELL_MAX);
        if (s.length > CELL_MAX) td.title = cut(s, 4 * CELL_MAX);
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
      // A long name would make the select (and the page) as wide as itself.
      o.textContent = v === "" ? allLabel : cut(v, LABEL_MAX);
      if (v.length > LABEL_MAX) o.title = v;
      select.appendChild(o);
    }
    if (want.includes(current)) select.value = current;
  }

  // ---- stores -------------------------------------------------------------------------------
  const stats = { hubStatuses: 0, received: 0, pageDropped: 0, lagged: 0, badJson: 0, rate: 0, lastCount: 0, lastAt: performance.now() };
  const dirty = new Set();
  // Every store is bounded in entries, and every entry in size: a peer chooses the names
  // (kitchens, chefs, layers, payload keys) and sends up to the hub's message size, so an
  // entry keeps only what its view draws, each text cut to TEXT_MAX.
  // fleet.kstatus: kitchen -> {packets, drops, names: [chef], chefs: [[chef, state, ...]]}
  const fleet = { hub: null, prevIn: new Map(), rates: new Map(), kstatus: new Map() };
  const pc = new Map();           // kitchen -> {layers: [], x: [], values: Map(layer -> []), rest: [] | null}
  const dns = new Map();          // kitchen\0name -> {name, count, latest, kitchen}
  const arp = new Map();          // kitchen\0ip -> {ip, mac, first, last, packets, kitchen}
  const arpChanges = [];
  const tls = new Map();          // name -> {...}
  const http = [];
  const dhcpLeases = new Map();   // kitchen -> [[mac, ip, hostname, expires]] (drawn rows)
  const dhcpEvents = [];
  const talkers = { latest: null };  // {kitchen, packets, bytes, flows, interval, hosts, flowList}
  const other = new Map();        // kitchen\0chef -> {kitchen, chef, driver, time, rows: [[key, value]]}
  const feed = new Array(FEED_MAX);
  let feedNext = 0;               // total feed items ever stored
  const seen = { kitchens: new Set(), chefs: new Set() };

  function onDumpling(raw) {
    stats.received += 1;
    let d;
    try { d = JSON.parse(raw); } catch (_) { stats.badJson += 1; return; }
    const meta = (d && typeof d.metadata === "object" && d.metadata) || {};
    const payload = d ? d.payload : undefined;
    // Names are cut once here: every store and filter uses the same (cut) name.
    const chef = cutText(meta.chef);
    const kitchen = meta.kitchen === null || meta.kitchen === undefined ? "" : cutText(meta.kitchen);
    const driver = cutText(meta.driver);
    const time = typeof meta.creation_time === "number" ? meta.creation_time : Date.now() / 1000;

    // Raw feed: a ring; what falls off is counted as dropped by the page.
    if (feedNext >= FEED_MAX) stats.pageDropped += 1;
    feed[feedNext % FEED_MAX] = { n: feedNext, kitchen, chef, driver, time, raw: cut(raw, RAW_MAX) };
    feedNext += 1;
    dirty.add("feed");
    // The filters offer the names seen most recently: names made up by a peer can push
    // out a quiet one for a while, but never keep a newcomer out.
    if (kitchen) recentAdd(seen.kitchens, kitchen, SEEN_MAX);
    recentAdd(seen.chefs, chef, SEEN_MAX);

    if (!payload || typeof payload !== "object") return;
    switch (chef) {
      case "SystemStatusChef": stats.hubStatuses += 1; onHubStatus(payload); break;
      case "KitchenStatusChef": onKitchenStatus(kitchen, payload); break;
      case "HubNoticeChef":
        // A count as the Rust eaters read it (a u64): a negative, fractional or huge number
        // would make the "hub dropped" figure meaningless for good.
        if (Number.isSafeInteger(payload.lagged) && payload.lagged >= 0) stats.lagged += payload.lagged;
        break;
      case "PacketCountChef": onPacketCounts(kitchen, time, payload.packet_counts); break;
      case "DNSLookupChef": onDns(kitchen, payload); break;
      case "ARPChef": onArp(kitchen, payload); break;
      case "TLSServerNameChef": onTls(kitchen, payload); break;
      case "HTTPRequestChef":
        if (payload.http_request && typeof payload.http_request === "object") {
          const r = payload.http_request;
          pushBounded(http, { time: num(r.time), method: cutText(r.method), host: cutText(r.host), path: cutText(r.path),
            user_agent: cutText(r.user_agent), client: cutText(r.client), server: cutText(r.server) }, LIST_MAX);
          dirty.add("http");
        }
        break;
      case "DHCPLeaseChef": onDhcp(kitchen, payload); break;
      case "TopTalkersChef":
        if (payload.top_talkers && typeof payload.top_talkers === "object") onTalkers(kitchen, payload.top_talkers);
        break;
      default: break;
    }
    if (!KNOWN.has(chef)) {
      boundedSet(other, kitchen + "\0" + chef, { kitchen, chef, driver, time, rows: otherRows(payload) }, LIST_MAX);
      dirty.add("other");
    }
  }

  // What the Other chefs view draws of a payload: its first 50 keys and their values as
  // text, each cut (the payload itself may be 1 MB, and there are LIST_MAX entries).
  function otherRows(payload) {
    const rows = [];
    const show = (v) => {
      let s;
      try {
        s = typeof v === "object" && v !== null ? JSON.stringify(v, null, 1) : text(v);
      } catch (_) {
        s = "(too deeply nested to show)";  // JSON.stringify recurses: a stack overflow
      }
      return cut(s, VALUE_MAX);
    };
    if (Array.isArray(payload)) return [["payload", show(payload)]];
    for (const k in payload) {
      if (rows.length >= 50) break;
      rows.push([cut(k), show(payload[k])]);
    }
    return rows;
  }

  // Only what the Fleet view draws of a KitchenStatusChef is kept (the payload can be 1 MB),
  // for the KITCHEN_MAX kitchens updated most recently.
  function onKitchenStatus(kitchen, p) {
    const cap = p.capture && typeof p.capture === "object" ? p.capture : {};
    const names = [];
    const chefs = [];
    if (p.chefs && typeof p.chefs === "object") {
      for (const name in p.chefs) {
        if (names.length >= KITCHEN_CHEFS) break;
        names.push(cut(name));
        const c = p.chefs[name];
        if (!c || typeof c !== "object") continue;
        chefs.push([cut(name), cutText(c.state), num(c.packets_offered), num(c.dumplings),
          num(c.traps), num(c.timeouts), num(c.restarts), cutText(c.version)]);
      }
    }
    recentSet(fleet.kstatus, kitchen, { packets: num(cap.packets),
      drops: (num(cap.kernel_dropped) || 0) + (num(cap.queue_dropped) || 0), names, chefs }, KITCHEN_MAX);
    dirty.add("fleet");
  }

  function onTalkers(kitchen, t) {
    const list = (items, label) => {
      const all = Array.isArray(items) ? items : [];
      const max = all.reduce((m, it) => Math.max(m, it && typeof it.bytes === "number" ? it.bytes : 0), 0) || 1;
      return { max, items: all.slice(0, 50).map((it) => ({ label: cut(label(it || {})), bytes: num(it && it.bytes), packets: num(it && it.packets) })) };
    };
    talkers.latest = { kitchen, packets: num(t.packets), bytes: num(t.bytes), flows: num(t.flows), interval: cutText(t.interval),
      hosts: list(t.top_hosts, (h) => text(h.ip)),
      flowList: list(t.top_flows, (f) => `${text(f.protocol)} ${text(f.src)} → ${text(f.dst)}`) };
    dirty.add("talkers");
  }

  function onHubStatus(p) {
    const uptime = typeof p.server_uptime === "number" ? p.server_uptime : 0;
    for (const k of Array.isArray(p.dumpling_kitchens) ? p.dumpling_kitchens : []) {
      const hub = (k && k.info_from_hub) || {};
      const key = text(hub.host) + ":" + text(hub.port);
      const prev = fleet.prevIn.get(key);
      if (prev && uptime > prev.uptime && typeof hub.dumplings_in === "number") {
        // Bounded like prevIn: every new connection of a kitchen comes from a new port.
        boundedSet(fleet.rates, key, (hub.dumplings_in - prev.count) / (uptime - prev.uptime), 1000);
      }
      if (typeof hub.dumplings_in === "number") boundedSet(fleet.prevIn, key, { uptime, count: hub.dumplings_in }, 1000);
    }
    fleet.hub = p;
    dirty.add("fleet");
  }

  // Only the columns the chart draws are kept: up to CHART_SERIES layers by first sight,
  // and once a layer more comes, the first CHART_SERIES - 1 plus one column summing all
  // the others (a peer may send any number of layer names).
  function onPacketCounts(kitchen, time, counts) {
    if (!counts || typeof counts !== "object") return;
    let s = pc.get(kitchen);
    if (!s || (s.x.length && time < s.x[s.x.length - 1])) {
      // First sight, or a new run under the same name (time went backwards): start over.
      s = { layers: [], x: [], values: new Map(), rest: null };
      boundedSet(pc, kitchen, s, 100);
    }
    const point = new Map();
    let rest = 0;
    for (const key in counts) {
      const layer = cut(key);
      const v = Number.isFinite(counts[key]) ? counts[key] : 0;
      if (!s.values.has(layer)) {
        if (!s.rest && s.layers.length < CHART_SERIES) {
          s.layers.push(layer);
          s.values.set(layer, new Array(s.x.length).fill(0));
        } else {
          if (!s.rest) {
            // One layer too many: the last named one becomes the start of "other".
            const last = s.layers.pop();
            s.rest = s.values.get(last);
            s.values.delete(last);
            rest += point.get(last) || 0;
            point.delete(last);
          }
          rest += v;
          continue;
        }
      }
      point.set(layer, (point.get(layer) || 0) + v);
    }
    s.x.push(time);
    for (const layer of s.layers) s.values.get(layer).push(point.get(layer) || 0);
    if (s.rest) s.rest.push(rest);
    if (s.x.length > CHART_POINTS) {
      const over = s.x.length - CHART_POINTS;
      s.x.splice(0, over);
      for (const arr of s.values.values()) arr.splice(0, over);
      if (s.rest) s.rest.splice(0, over);
    }
    dirty.add("protocols");
  }

  function onDns(kitchen, p) {
    if (p.lookup && typeof p.lookup === "object") {
      const name = cutText(p.lookup.hostname);
      const key = kitchen + "\0" + name;
      const e = dns.get(key);
      if (!e) boundedSet(dns, key, { name, count: 1, latest: num(p.lookup.when), kitchen }, MAP_MAX);
      else if (typeof p.lookup.when === "number" && !(e.latest >= p.lookup.when)) e.latest = p.lookup.when;
      dirty.add("dns");
    }
    if (p.lookups_seen && typeof p.lookups_seen === "object") {
      // The chef's own totals are authoritative: they replace the page's running guess.
      for (const [full, v] of Object.entries(p.lookups_seen)) {
        if (!v || typeof v !== "object") continue;
        const name = cut(full);
        boundedSet(dns, kitchen + "\0" + name, { name, count: num(v.count), latest: num(v.latest), kitchen }, MAP_MAX);
      }
      dirty.add("dns");
    }
  }

  function onArp(kitchen, p) {
    const ip = cutText(p.src_ip);
    const mac = cutText(p.src_hw);
    const time = num(p.time);
    if (!ip || ip === "0.0.0.0") return;
    const key = kitchen + "\0" + ip;
    const e = arp.get(key);
    if (!e) {
      boundedSet(arp, key, { ip, mac, first: time, last: time, packets: 1, kitchen }, MAP_MAX);
    } else {
      if (e.mac !== mac) {
        pushBounded(arpChanges, { time, ip, old: e.mac, mac, kitchen }, LIST_MAX);
        e.mac = mac;
      }
      e.last = time;
      e.packets += 1;
    }
    dirty.add("arp");
  }

  function onTls(kitchen, p) {
    if (p.tls && typeof p.tls === "object") {
      const name = cutText(p.tls.server_name);
      const e = tls.get(name) || { name, count: 0, latest: null };
      e.count = Math.max(e.count || 0, 1);
      e.latest = num(p.tls.time);
      e.client = cutText(p.tls.client); e.server = cutText(p.tls.server); e.version = cutText(p.tls.version);
      e.alpn = Array.isArray(p.tls.alpn) ? cut(p.tls.alpn.map(text).join(", ")) : "";
      boundedSet(tls, name, e, MAP_MAX);
      dirty.add("tls");
    }
    if (p.server_names_seen && typeof p.server_names_seen === "object") {
      for (const [full, v] of Object.entries(p.server_names_seen)) {
        if (!v || typeof v !== "object") continue;
        const name = cut(full);
        const e = tls.get(name) || { name };
        e.count = num(v.count); e.latest = num(v.latest);
        boundedSet(tls, name, e, MAP_MAX);
      }
      dirty.add("tls");
    }
  }

  function onDhcp(kitchen, p) {
    if (p.dhcp && typeof p.dhcp === "object") {
      const e = p.dhcp;
      pushBounded(dhcpEvents, { time: num(e.time), event: cutText(e.event), client_hw: cutText(e.client_hw),
        ip: cutText(e.ip), hostname: cutText(e.hostname), server: cutText(e.server) }, LIST_MAX);
      dirty.add("dhcp");
    }
    if (p.leases && typeof p.leases === "object") {
      // The rows the table draws (at most TABLE_ROWS), not the chef's whole table.
      const rows = [];
      for (const mac in p.leases) {
        if (rows.length >= TABLE_ROWS) break;
        const l = p.leases[mac];
        if (!l || typeof l !== "object") continue;
        rows.push([cut(mac), cutText(l.ip), cutText(l.hostname), l.expires === null ? "never" : fmtTime(l.expires)]);
      }
      boundedSet(dhcpLeases, kitchen, rows, 100);
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
      // Cut as the statuses' kitchen names are, so the two meet.
      const name = cutText(info.kitchen_name);
      listed.add(name);
      const ks = fleet.kstatus.get(name);
      const rate = fleet.rates.get(text(from.host) + ":" + text(from.port));
      rows.push([name, info.interface, info.filter,
        Array.isArray(info.chefs) ? info.chefs.map(text).join(", ") : text(info.chefs),
        info.read_file ? "file " + text(info.read_file) : info.source,
        fmtNum(from.dumplings_in), rate === undefined ? "" : rate.toFixed(1),
        fmtNum(ks && ks.packets), fmtNum(ks ? ks.drops : ""), fmtNum(from.dumplings_invalid),
        text(from.host) + ":" + text(from.port)]);
    }
    // The store is in least-recently-updated order: listed by name, so rows stay put.
    const statuses = Array.from(fleet.kstatus).sort((a, b) => byName(a[0], b[0]));
    // Kitchens that report status but are beyond the hub's list cap (or not yet listed).
    for (const [name, ks] of statuses) {
      if (listed.has(name)) continue;
      rows.push([name, "", "", ks.names.join(", "), "", "", "", fmtNum(ks.packets), fmtNum(ks.drops), "", ""]);
    }
    fillTable("kitchens", rows);
    const chefRows = [];
    for (const [kitchen, ks] of statuses) {
      for (const [name, state, offered, dumplings, traps, timeouts, restarts, version] of ks.chefs) {
        chefRows.push([kitchen, name, state, fmtNum(offered), fmtNum(dumplings),
          fmtNum(traps), fmtNum(timeouts), fmtNum(restarts), version]);
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
        `up ${Math.round(hub.server_uptime || 0)} s` + natsSummary(hub.fleet)
      : "waiting for the hub's status…";
  }

  // A federated hub (`nd-hub --nats`) delivers nothing while NATS is away: say so where
  // the hub is summed up, with how long and what waits. Empty for a hub without a fleet.
  function natsSummary(f) {
    const nats = f && typeof f === "object" && f.nats && typeof f.nats === "object" ? f.nats : null;
    if (!nats) return "";
    if (nats.connected === false) {
      const down = typeof nats.down_for === "number" ? ` for ${Math.round(nats.down_for)} s` : "";
      const waiting = typeof nats.unpublished === "number" ? `, ${fmtNum(nats.unpublished)} dumplings waiting` : "";
      return ` — NATS down${down}: nothing is delivered until it is back${waiting}`;
    }
    return `, fleet of ${fmtNum(f.hub_count)} hubs over NATS`;
  }

  const COLORS = ["#c2410c", "#2563eb", "#16a34a", "#9333ea", "#ca8a04", "#0891b2", "#db2777",
    "#4d7c0f", "#7c3aed", "#b91c1c", "#0f766e", "#a16207"];
  const chart = { plot: null, kitchen: null, layers: "" };

  // The series drawn for one kitchen: first-seen layers, the rest summed as "other"
  // (onPacketCounts keeps exactly these columns).
  function chartSeries(s) {
    const names = s.layers.slice();
    const cols = names.map((l) => s.values.get(l));
    if (s.rest) {
      names.push("other");
      cols.push(s.rest);
    }
    return { names, cols };
  }

  function renderProtocols() {
    const select = $("pc-kitchen");
    setOptions(select, Array.from(pc.keys()).sort(byName), null);
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
          label: cut(n, LABEL_MAX), stroke: COLORS[i % COLORS.length], fill: COLORS[i % COLORS.length] + "cc", width: 1,
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
      for (const l of leases) rows.push(l.concat(kitchen));
    }
    fillTable("dhcp", rows);
    fillTable("dhcp-events", dhcpEvents.slice().reverse().map((e) => [fmtTime(e.time), e.event, e.client_hw, e.ip, e.hostname, e.server]));
  }
  function bars(id, list) {
    const box = $(id);
    const max = list.max;
    const frag = document.createDocumentFragment();
    for (const it of list.items) {
      const row = document.createElement("div");
      row.className = "bar";
      const l = document.createElement("span");
      l.className = "label";
      l.textContent = it.label;
      l.title = it.label;
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
    $("talkers-summary").textContent = `kitchen ${t.kitchen}: ${fmtNum(t.packets)} packets, ` +
      `${fmtBytes(t.bytes)}, ${fmtNum(t.flows)} flows in the last ${t.interval} s`;
    bars("talkers-hosts", t.hosts);
    bars("talkers-flows", t.flowList);
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
      for (const [k, v] of e.rows) {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.textContent = k;
        const td = document.createElement("td");
        td.textContent = v;
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
  // The names a filter offers: those seen most recently, and the one chosen even when it
  // has not been seen for a while (so a flood of other names never undoes a choice).
  function filterNames(select, names) {
    const list = Array.from(names);
    if (select.value && !names.has(select.value)) list.push(select.value);
    return list.sort(byName);
  }
  function renderFeed() {
    setOptions($("f-kitchen"), filterNames($("f-kitchen"), seen.kitchens), "all kitchens");
    setOptions($("f-chef"), filterNames($("f-chef"), seen.chefs), "all chefs");
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
    // Entries per store: the tests check that names a peer makes up stay within bounds.
    sizes: () => ({ kitchenStatuses: fleet.kstatus.size, rates: fleet.rates.size, prevIn: fleet.prevIn.size,
      charts: pc.size, dns: dns.size, arp: arp.size, tls: tls.size, dhcpLeases: dhcpLeases.size, other: other.size,
      seenKitchens: seen.kitchens.size, seenChefs: seen.chefs.size }),
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
