// Quark Plugin Hub dashboard: renders the `snapshot` events of GET /api/v1/hub/stream (Server-Sent Events).
// Plain DOM building with textContent only, so nothing a module registers can inject markup.
"use strict";

(function () {
  const STREAM_URL = "/api/v1/hub/stream";
  let snapshot = null;
  let clockSkew = 0; // server time - browser time, in seconds
  let source = null;
  let lostAt = null; // when the stream dropped; streams end every few tens of seconds by design

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const now = () => Date.now() / 1000 + clockSkew;
  const epoch = (iso) => (iso ? Date.parse(iso) / 1000 : null);

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function ago(ts) {
    if (ts === null) return "–";
    const delta = now() - ts;
    return delta < 1 ? "just now" : `${duration(delta)} ago`;
  }

  function timeLabel(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function pill(health) {
    return el("span", { class: `pill ${health}`, "data-role": "health", text: health });
  }

  function setConnection(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text;
  }

  function matchesFilter(module, term) {
    if (!term) return true;
    const haystack = [module.name, module.description, ...module.api, ...module.publishes, ...module.consumes]
      .join(" ").toLowerCase();
    return haystack.includes(term);
  }

  function chips(label, values) {
    if (!values.length) return null;
    return el("span", {}, `${label}:`, el("span", { class: "chips" }, ...values.map((v) => el("code", { class: "chip", text: v }))));
  }

  function instanceRow(inst) {
    const probe = inst.latency_ms === null || inst.latency_ms === undefined ? "–" : `${Math.round(inst.latency_ms)} ms`;
    return el("tr", { "data-instance-id": inst.instance_id, "data-health": inst.health },
      el("td", {}, pill(inst.health),
        inst.last_error ? el("div", { class: "error", text: inst.last_error }) : null),
      el("td", {}, el("code", { class: "mono", title: inst.instance_id, text: inst.instance_id.slice(0, 12) })),
      el("td", {}, el("code", { class: "mono", text: inst.instance_url })),
      el("td", {}, inst.version),
      el("td", { "data-since": epoch(inst.registered_at), "data-format": "duration" }, duration(now() - epoch(inst.registered_at))),
      el("td", { "data-since": epoch(inst.last_heartbeat), "data-format": "ago" }, ago(epoch(inst.last_heartbeat))),
      el("td", {}, probe, inst.consecutive_failures ? ` · ${inst.consecutive_failures} failed` : ""),
    );
  }

  function moduleCard(module) {
    const head = el("div", { class: "module-head" },
      el("h3", { text: module.name }),
      el("span", { class: "version", text: `v${module.version}` }),
      el("span", { class: "type", text: module.type }),
      el("span", { class: "spacer" }),
      el("span", { class: "count", text: `${module.instances.length} instance${module.instances.length === 1 ? "" : "s"}` }),
      pill(module.health),
    );
    const meta = el("div", { class: "meta" },
      chips("routes", module.api), chips("publishes", module.publishes), chips("consumes", module.consumes));
    const table = el("table", { class: "instances" },
      el("thead", {}, el("tr", {}, ...["Health", "Instance", "URL", "Version", "Uptime", "Last heartbeat", "Probe"]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, ...module.instances.map(instanceRow)),
    );
    return el("article", { class: "module", "data-module": module.name, "data-health": module.health },
      head, module.description ? el("p", { class: "module-desc", text: module.description }) : null, meta, table);
  }

  function eventItem(ev) {
    const kind = ev.type.split(".").pop();
    const ts = epoch(ev.time);
    return el("li", { class: "event", "data-kind": kind, "data-current": ev.data && ev.data.current },
      el("span", { class: "when", title: ev.time, text: `${timeLabel(ts)} · ${kind.replace("_", " ")}` }),
      el("span", { class: "what", text: ev.summary }));
  }

  function render() {
    if (!snapshot) return;
    const modules = snapshot.modules;
    const instances = modules.flatMap((m) => m.instances);
    const count = (state) => instances.filter((i) => i.health === state).length;
    $("stat-modules").textContent = modules.length;
    $("stat-instances").textContent = instances.length;
    $("stat-healthy").textContent = count("healthy");
    $("stat-degraded").textContent = count("degraded");
    $("stat-unhealthy").textContent = count("unhealthy");

    const term = $("filter").value.trim().toLowerCase();
    const shown = modules.filter((m) => matchesFilter(m, term));
    const list = $("modules");
    if (!shown.length) {
      list.replaceChildren(el("p", { class: "empty", id: "empty",
        text: modules.length ? "No module matches the filter." : "No module is docked yet. Start one with the SDK and it appears here." }));
    } else {
      list.replaceChildren(...shown.map(moduleCard));
    }

    const events = $("events");
    events.replaceChildren(...snapshot.events.map(eventItem));
    if (!snapshot.events.length) events.append(el("li", { class: "empty", text: "No hub events yet." }));

    const sup = snapshot.supervisor;
    $("supervisor-box").hidden = !sup;
    if (sup) {
      $("supervisor").replaceChildren(...Object.entries(sup.children).map(([name, c]) =>
        el("tr", { "data-state": c.state },
          el("td", { text: name }), el("td", { class: "state", text: c.state }),
          el("td", { text: c.pid == null ? "–" : String(c.pid) }), el("td", { text: String(c.restarts) }),
          el("td", { text: c.last_exit == null ? "–" : String(c.last_exit) }))));
    }

    const hub = snapshot.hub;
    $("hub-info").textContent =
      `Monitor every ${hub.monitor_interval}s · leases ${hub.lease_ttl}s` + (hub.monitor_leader ? " · this hub probes" : "");
    tick();
  }

  function tick() {
    for (const cell of document.querySelectorAll("[data-since]")) {
      const since = Number(cell.dataset.since);
      cell.textContent = cell.dataset.format === "ago" ? ago(since) : duration(now() - since);
    }
    if (snapshot) $("updated").textContent = ago(snapshot.generated_at);
    if (lostAt !== null && Date.now() - lostAt > 3000) setConnection("connecting", "reconnecting…");
  }

  function connect() {
    if (source) source.close();
    setConnection("connecting", "connecting…");
    source = new EventSource(STREAM_URL);
    source.addEventListener("open", () => setConnection("live", "live"));
    source.addEventListener("snapshot", (message) => {
      snapshot = JSON.parse(message.data);
      lostAt = null;
      clockSkew = snapshot.generated_at - Date.now() / 1000;
      setConnection("live", "live");
      render();
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setConnection("offline", "offline — retrying");
        setTimeout(connect, 2000);
      } else if (lostAt === null) {
        lostAt = Date.now(); // EventSource reconnects by itself; only say so if it takes a while
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("filter").addEventListener("input", render);
    setInterval(tick, 1000);
    connect();
  });
})();
