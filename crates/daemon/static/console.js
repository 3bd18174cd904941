// vfpool console: forms as JSON to the REST API, errors beside their field, live regions
// re-read when /api/v1/events says something changed. No framework, no build step.
"use strict";

const status = (msg, bad) => {
  const s = document.getElementById("status");
  if (s) { s.textContent = msg; s.className = bad ? "bad" : "ok"; }
};

// The API's error body: {"error": {"kind", "message", "field"?}}.
async function call(method, url, body) {
  const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty or not JSON */ }
  if (!r.ok) {
    const e = (data && data.error) || { kind: String(r.status), message: r.statusText || "request failed" };
    throw e;
  }
  return data;
}

// Sets obj[a][0][b] = v for "a.0.b".
function put(obj, path, v) {
  const keys = path.split(".");
  let o = obj;
  keys.forEach((k, i) => {
    const last = i === keys.length - 1;
    const nextIsIndex = !last && /^\d+$/.test(keys[i + 1]);
    if (last) { o[k] = v; return; }
    if (o[k] === undefined) o[k] = nextIsIndex ? [] : {};
    o = o[k];
  });
}

function formBody(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    let v;
    if (el.type === "checkbox") {
      if (el.dataset.on !== undefined) v = el.checked && !el.disabled ? el.dataset.on : el.dataset.off;
      else v = el.checked && !el.disabled;
    } else if (el.value === "") {
      continue; // optional and empty: left out
    } else if (el.type === "number") {
      v = Number(el.value);
    } else if (el.dataset.list !== undefined) {
      v = el.value.split(",").map((x) => x.trim()).filter((x) => x !== "");
    } else {
      v = el.value;
    }
    put(body, el.name, v);
  }
  return body;
}

function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-error").forEach((e) => { e.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
}

// The input an error's field names: its name (or last part of it), or a data-field alias.
function fieldFor(form, field) {
  const f = field.replace(/-/g, "_");
  for (const el of form.elements) {
    if (!el.name) continue;
    const last = el.name.split(".").pop();
    const aliases = (el.dataset.field || "").split(/\s+/);
    if (el.name === f || last === f || aliases.includes(f) || aliases.includes(field)) return el;
  }
  return null;
}

function showError(form, e) {
  const el = e.field ? fieldFor(form, e.field) : null;
  let slot = null;
  if (el) {
    el.setAttribute("aria-invalid", "true");
    // The .field-error that follows the input (or its label) in the form.
    let n = el.closest("label") || el;
    while (n && !(n.classList && n.classList.contains("field-error"))) n = n.nextElementSibling;
    slot = n;
    if (slot) el.setAttribute("aria-describedby", slot.id || (slot.id = "err-" + Math.random().toString(36).slice(2)));
  }
  if (!slot) slot = form.querySelector(".form-error");
  if (slot) slot.textContent = e.message;
  status(e.message, true);
}

async function submitForm(form) {
  clearErrors(form);
  const busy = form.dataset.busy;
  const bar = form.querySelector("progress");
  const btn = form.querySelector("button[type=submit]");
  if (btn) btn.disabled = true;
  if (bar) bar.hidden = false;
  form.setAttribute("aria-busy", "true");
  if (busy) status(busy + "…");
  try {
    await call(form.dataset.method || "POST", form.dataset.api, formBody(form));
    status("Done.");
    form.dispatchEvent(new CustomEvent("vfpool:done"));
    await refresh();
  } catch (e) {
    showError(form, e);
  } finally {
    if (btn) btn.disabled = false;
    if (bar) bar.hidden = true;
    form.removeAttribute("aria-busy");
  }
}

async function button(b) {
  if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
  b.disabled = true;
  try {
    const body = b.dataset.body ? JSON.parse(b.dataset.body) : undefined;
    await call(b.dataset.method || "POST", b.dataset.api, body);
    status("Done.");
    await refresh();
  } catch (e) {
    status(e.message, true);
  } finally {
    b.disabled = false;
  }
}

// Restore: ask which leases it detaches, name them, then restore (forced when there are any).
async function restore(b) {
  const nic = b.dataset.restore;
  try {
    const leases = (await call("GET", "/api/v1/leases")) || [];
    const held = leases.filter((l) => l.pf === nic);
    const what = held.length
      ? "It detaches " + held.length + " leased VF(s): " +
        held.map((l) => l.owner + " (" + l.vf_pci + ")").join(", ") + "."
      : "No VF of it is leased.";
    if (!window.confirm("Restore " + nic + " (remove all its VFs)? " + what)) return;
    b.disabled = true;
    status("Restoring " + nic + "…");
    await call("POST", "/api/v1/nics/" + encodeURIComponent(nic) + "/restore", { force: held.length > 0 });
    status("Restored " + nic + ".");
    await refresh();
  } catch (e) {
    status(e.message, true);
  } finally {
    b.disabled = false;
  }
}

// A checkbox greyed out unless the selected option says data-sriov="true".
function gate(select) {
  const box = document.getElementById(select.dataset.sriovGate);
  if (!box) return;
  const opt = select.selectedOptions[0];
  const ok = !!opt && opt.dataset.sriov === "true";
  box.disabled = !ok;
  if (!ok) box.checked = false;
}

// A form's choices (select[data-options]) follow the page too, keeping what is chosen.
async function refreshOptions(page) {
  const selects = [...document.querySelectorAll("select[data-options]")];
  if (!selects.length) return;
  const url = location.pathname;
  try {
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok) return;
    page[url] = new DOMParser().parseFromString(await resp.text(), "text/html");
  } catch (_) { return; }
  for (const sel of selects) {
    const fresh = page[url].getElementById(sel.id);
    if (!fresh) continue;
    const chosen = sel.value;
    sel.innerHTML = fresh.innerHTML;
    if ([...sel.options].some((o) => o.value === chosen)) sel.value = chosen;
    if (sel.dataset.sriovGate) gate(sel);
  }
}

// "Add another NIC": a copy of the form's last NIC, numbered next (ids, names, its gate).
function addNic(btn) {
  const sets = btn.form.querySelectorAll("fieldset[data-nic]");
  const last = sets[sets.length - 1];
  const n = sets.length;
  const copy = last.cloneNode(true);
  const renum = (v) => v.replace(/nic\d+/, "nic" + n);
  copy.querySelector("legend").textContent = "NIC " + n;
  copy.querySelectorAll("[id]").forEach((el) => { el.id = renum(el.id); });
  copy.querySelectorAll("label[for]").forEach((el) => { el.htmlFor = renum(el.htmlFor); });
  copy.querySelectorAll("[data-sriov-gate]").forEach((el) => { el.dataset.sriovGate = renum(el.dataset.sriovGate); });
  copy.querySelectorAll("[name]").forEach((el) => { el.name = el.name.replace(/^nics\.\d+\./, "nics." + n + "."); });
  copy.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
  copy.querySelectorAll("input[type=checkbox]").forEach((el) => { el.checked = false; });
  last.after(copy);
  copy.querySelectorAll("select[data-sriov-gate]").forEach(gate);
}

// Live regions: each [data-live] is replaced from its URL, or from a fresh copy of the page.
let refreshing = null;
let again = false;
async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      const regions = [...document.querySelectorAll("[data-live]")];
      if (!regions.length) break;
      const page = {};
      await refreshOptions(page);
      for (const r of regions) {
        const url = r.dataset.live || location.pathname;
        try {
          if (!(url in page)) {
            const resp = await fetch(url, { credentials: "same-origin" });
            if (!resp.ok) continue;
            page[url] = new DOMParser().parseFromString(await resp.text(), "text/html");
          }
          const fresh = page[url].getElementById(r.id);
          if (fresh) r.replaceWith(document.importNode(fresh, true));
        } catch (_) { /* the next change tries again */ }
      }
    } while (again);
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  })();
  try { await refreshing; } finally { refreshing = null; }
}

// One event stream per browser, not per tab: the tab holding the Web Lock "vfpool-events"
// keeps it open and passes each change to the other tabs over a BroadcastChannel. A browser
// holds about six HTTP/1.1 connections per host, so seven tabs each with a stream would
// starve every other request. Where those APIs are missing (plain HTTP to another host is
// no secure context) each tab keeps its own stream.
let channel = null;

// A change: the page re-reads unless it was read at that generation already (the page's
// body carries the generation it was read at).
function changed(g) {
  if (g !== null && g !== undefined && String(g) === document.body.dataset.generation) return;
  document.body.dataset.generation = String(g);
  refresh();
}

function stream() {
  const es = new EventSource("/api/v1/events");
  es.addEventListener("change", (ev) => {
    let g = null;
    try { g = JSON.parse(ev.data).generation; } catch (_) { /* ignore */ }
    if (channel) channel.postMessage({ generation: g });
    changed(g);
  });
  es.onopen = () => { document.body.dataset.live = "connected"; };
  es.onerror = () => { document.body.dataset.live = "reconnecting"; };
  return es;
}

function live() {
  if (!window.EventSource || !document.querySelector("[data-live]")) return;
  if (channel) channel.close();
  channel = null;
  if (window.BroadcastChannel && navigator.locks) {
    channel = new BroadcastChannel("vfpool-events");
    channel.onmessage = (m) => changed(m.data && m.data.generation);
    document.body.dataset.live = "shared";
    navigator.locks.request("vfpool-events", () => new Promise((release) => {
      const es = stream();
      // A page left behind (navigation, the back-forward cache) hands the stream on.
      window.addEventListener("pagehide", () => { es.close(); release(); }, { once: true });
    }));
    return;
  }
  const es = stream();
  window.addEventListener("pagehide", () => es.close(), { once: true });
}

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.dataset && form.dataset.api) { ev.preventDefault(); submitForm(form); }
});
document.addEventListener("click", (ev) => {
  const add = ev.target.closest("button[data-add-nic]");
  if (add) { ev.preventDefault(); addNic(add); return; }
  const b = ev.target.closest("button[data-api], button[data-restore]");
  if (!b) return;
  ev.preventDefault();
  if (b.dataset.restore) restore(b); else button(b);
});
document.addEventListener("change", (ev) => {
  if (ev.target.dataset && ev.target.dataset.sriovGate) gate(ev.target);
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("select[data-sriov-gate]").forEach(gate);
  live();
});
window.addEventListener("pageshow", (ev) => { if (ev.persisted) { live(); refresh(); } });
