// recsvc demo page: plain JavaScript, no build step, no dependencies.
// Every value from the service is put into the page with textContent (never as HTML).
"use strict";

const ALL_MODES = ["dense", "generative", "hybrid"];
const state = {
  config: null,
  history: [], // {kind: "item", item_id, title} | {kind: "new", item, title}
  categories: new Set(),
  recSeq: 0, // the latest /recommend round: older answers are dropped, not rendered
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (kind || "");
}

// One call to the API: {ok, status, data, requestId}; errors are shown in the status line.
async function api(method, path, body, headers) {
  const init = { method, headers: Object.assign({ Accept: "application/json" }, headers || {}) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    setStatus(`${method} ${path}: the service did not answer (${err.message})`, "error");
    return { ok: false, status: 0, data: null, requestId: null };
  }
  const requestId = resp.headers.get("X-Request-ID");
  let data = null;
  try {
    data = await resp.json();
  } catch (err) {
    data = null;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    const code = e.code ? `${e.code}: ` : "";
    setStatus(`${method} ${path} → ${resp.status} ${code}${e.message || ""} (request ${requestId || "?"})`, "error");
  }
  return { ok: resp.ok, status: resp.status, data, requestId };
}

function filters() {
  const f = {};
  const cat = $("f-category").value.trim();
  if (cat) f.categories = [cat];
  const lo = $("f-price-min").value;
  const hi = $("f-price-max").value;
  if (lo !== "") f.price_min = Number(lo);
  if (hi !== "") f.price_max = Number(hi);
  return Object.keys(f).length ? f : null;
}

function remember(payload) {
  for (const c of payload.categories || []) {
    if (!state.categories.has(c)) {
      state.categories.add(c);
      $("categories").append(el("option", { value: c }));
    }
  }
}

function priceText(p) {
  return typeof p === "number" ? `$${p.toFixed(2)}` : "no price";
}

// One result row: title, facts, score, buttons (+ history, similar), the payload on demand.
function itemRow(item) {
  const p = item.payload || {};
  remember(p);
  const title = p.title || item.item_id;
  const facts = [p.brand, (p.categories || []).join(" › "), priceText(p.price)].filter(Boolean).join(" · ");
  const pre = el("pre", { class: "payload" }, JSON.stringify(p, null, 2));
  const details = el("details", {}, el("summary", {}, "payload"), pre);
  return el(
    "li",
    { class: "item", "data-item-id": item.item_id },
    el(
      "div",
      { class: "item-head" },
      el("button", { type: "button", class: "add", title: "add to history", onclick: () => addToHistory(item.item_id, title) }, "+"),
      el("span", { class: "title" }, title),
      el("span", { class: "score", title: "score" }, item.score.toFixed(3))
    ),
    el("div", { class: "facts muted small" }, `${item.item_id} · ${facts}`),
    el(
      "div",
      { class: "item-actions" },
      el("button", { type: "button", class: "link similar", onclick: () => similar(item.item_id, title) }, "items like this"),
      details
    )
  );
}

function renderList(list, items, empty) {
  list.replaceChildren(...(items.length ? items.map(itemRow) : [el("li", { class: "muted empty" }, empty)]));
}

async function search(event) {
  if (event) event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  const body = { query, k: 10 };
  const f = filters();
  if (f) body.filters = f;
  const r = await api("POST", "/search", body);
  if (!r.ok) return;
  $("search-meta").textContent = `“${query}”: ${r.data.items.length} items from ${r.data.index_version}`;
  renderList($("search-results"), r.data.items, "nothing matches these filters");
  setStatus(`search: ${r.data.items.length} items`, "ok");
}

async function similar(itemId, title) {
  const body = { item_id: itemId, k: 10 };
  const f = filters();
  if (f) body.filters = f;
  const r = await api("POST", "/search", body);
  if (!r.ok) return;
  $("search-meta").textContent = `items like “${title}”: ${r.data.items.length}`;
  renderList($("search-results"), r.data.items, "nothing matches these filters");
}

function addToHistory(itemId, title) {
  state.history.push({ kind: "item", item_id: itemId, title });
  renderHistory();
  recommend();
}

function renderHistory() {
  const chips = state.history.map((h, i) =>
    el(
      "li",
      { class: "chip" + (h.kind === "new" ? " new" : ""), "data-item-id": h.item_id || "" },
      el("span", {}, h.kind === "new" ? `new: ${h.title}` : h.title),
      el("button", { type: "button", class: "remove", title: "remove", onclick: () => removeFromHistory(i) }, "×")
    )
  );
  $("history").replaceChildren(...(chips.length ? chips : [el("li", { class: "muted empty" }, "empty: add items from the search results")]));
}

function removeFromHistory(i) {
  state.history.splice(i, 1);
  renderHistory();
  recommend();
}

function historyEntries() {
  return state.history.map((h) => (h.kind === "item" ? h.item_id : { item: h.item }));
}

function modeColumn(mode) {
  let col = document.querySelector(`.mode[data-mode="${mode}"]`);
  if (!col) {
    col = el("div", { class: "mode", "data-mode": mode }, el("h3", {}, mode), el("div", { class: "meta muted small" }), el("ol", { class: "results" }));
    $("modes").append(col);
  }
  return col;
}

async function recommend(event) {
  if (event) event.preventDefault();
  const modes = (state.config && state.config.modes) || ["dense"];
  const seq = ++state.recSeq;
  const current = () => seq === state.recSeq;
  if (!state.history.length) {
    for (const mode of ALL_MODES) {
      const col = modeColumn(mode);
      col.querySelector(".meta").textContent = modes.includes(mode) ? "add items to the history" : "not available in this artifact set";
      col.querySelector(".results").replaceChildren();
    }
    $("modes").dataset.historyLen = "0";
    $("modes").dataset.seq = String(seq);
    return;
  }
  const k = Math.max(1, Math.min(Number($("f-k").value) || 8, (state.config && state.config.max_k) || 100));
  const base = { history: historyEntries(), k, exclude_history: $("f-exclude").checked };
  const f = filters();
  if (f) base.filters = f;
  await Promise.all(
    ALL_MODES.map(async (mode) => {
      const col = modeColumn(mode);
      const meta = col.querySelector(".meta");
      const list = col.querySelector(".results");
      if (!modes.includes(mode)) {
        col.classList.add("unavailable");
        meta.textContent = "not available in this artifact set (needs semantic IDs and the generative model)";
        list.replaceChildren();
        return;
      }
      col.classList.remove("unavailable");
      meta.textContent = "…";
      const r = await api("POST", "/recommend", Object.assign({ mode }, base));
      if (!current()) return;
      if (!r.ok) {
        meta.textContent = `error ${r.status}: ${(r.data && r.data.error && r.data.error.message) || ""}`;
        list.replaceChildren();
        return;
      }
      meta.textContent = `${r.data.items.length} items · ranking ${r.data.ranking}${r.data.cached ? " · cached" : ""}`;
      renderList(list, r.data.items, "nothing matches these filters");
    })
  );
  if (!current()) return;
  $("modes").dataset.historyLen = String(base.history.length);
  $("modes").dataset.seq = String(seq);
  setStatus(`recommended from ${state.history.length} history items`, "ok");
}

function newItem() {
  const title = $("a-title").value.trim();
  if (!title) {
    setStatus("give the new item a title", "error");
    return null;
  }
  const item = { title };
  const brand = $("a-brand").value.trim();
  const description = $("a-description").value.trim();
  const categories = $("a-categories").value.split(",").map((c) => c.trim()).filter(Boolean);
  if (brand) item.brand = brand;
  if (description) item.description = description;
  if (categories.length) item.categories = categories;
  return item;
}

async function embedNew(event) {
  if (event) event.preventDefault();
  const item = newItem();
  if (!item) return;
  const r = await api("POST", "/embed", { items: [item], return_payload: true });
  if (!r.ok) return;
  const v = r.data.vectors[0];
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const head = v.slice(0, 8).map((x) => x.toFixed(4)).join(", ");
  $("embed-result").replaceChildren(
    el("div", {}, `model ${r.data.model} · dim ${r.data.dim} · norm ${norm.toFixed(4)}`),
    el("div", { class: "mono small" }, `[${head}, …]`),
    el("div", { class: "muted small" }, `encoder text: ${r.data.payloads[0].text}`)
  );
  setStatus("embedded the new item", "ok");
}

function useNew() {
  const item = newItem();
  if (!item) return;
  state.history.push({ kind: "new", item, title: item.title });
  renderHistory();
  recommend();
}

async function reindex(event) {
  if (event) event.preventDefault();
  const token = $("admin-token").value.trim(); // read when clicked, kept nowhere else
  if (!token) {
    setStatus("type the admin token to start a reindex", "error");
    return;
  }
  const auth = { Authorization: `Bearer ${token}` };
  const r = await api("POST", "/admin/reindex", {}, auth);
  if (!r.ok) return;
  const out = $("admin-result");
  const jobId = r.data.job_id;
  out.textContent = `reindex ${jobId}: queued`;
  for (;;) {
    await new Promise((res) => setTimeout(res, 500));
    const j = await api("GET", `/admin/reindex/${encodeURIComponent(jobId)}`, undefined, auth);
    if (!j.ok) return;
    out.textContent = `reindex ${jobId}: ${j.data.status} (${j.data.stage}, ${Math.round(j.data.progress * 100)}%)`;
    if (j.data.status === "succeeded" || j.data.status === "failed") break;
  }
  await loadConfig();
}

async function loadConfig() {
  const r = await api("GET", "/ui/config.json");
  if (!r.ok) return false;
  state.config = r.data;
  setStatus(`ready · ${r.data.model} · ${r.data.index_version} (${r.data.items} items) · modes: ${r.data.modes.join(", ")}`, "ok");
  $("admin-form").hidden = !r.data.admin;
  return true;
}

document.addEventListener("DOMContentLoaded", async () => {
  $("search-form").addEventListener("submit", search);
  $("filter-form").addEventListener("submit", recommend);
  $("clear-history").addEventListener("click", () => {
    state.history = [];
    renderHistory();
    recommend();
  });
  $("add-form").addEventListener("submit", embedNew);
  $("use-new-btn").addEventListener("click", useNew);
  $("admin-form").addEventListener("submit", reindex);
  renderHistory();
  if (await loadConfig()) {
    recommend();
    document.body.dataset.ready = "true";
  }
});
