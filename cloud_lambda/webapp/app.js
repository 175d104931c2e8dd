// Edge Visual Search web app: polls the HTTP API, renders every string as text (never as HTML).
"use strict";

const POLL_MS = 1500;
const PAGE_SIZE = 200; // devices per /api/latest call
const MAX_PAGES = 25; // at most 5,000 cameras per poll
const HISTORY = 10; // recent records per camera, summarized by the API
const API_BASE = (document.querySelector('meta[name="api-base"]')?.content || "").replace(/\/$/, "");
const cards = new Map(); // device_id -> {root, key}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function safeImageUrl(url) {
  // Only same-origin paths, http(s) and data:image URLs reach an <img>; anything else is dropped.
  if (typeof url !== "string" || url === "") return null;
  if (url.startsWith("data:image/")) return url;
  // "//host/x" and "/\\host/x" look like paths but load from another host: only a single leading slash is ours.
  if (url.startsWith("/")) return /^\/[\/\\]/.test(url) ? null : url;
  try {
    const parsed = new URL(url, window.location.href);
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
    // A relative URL must stay on this origin ("\\\\host/x" resolves to another); an absolute one may be a CDN.
    return /^https?:\/\//i.test(url) || parsed.origin === window.location.origin ? parsed.href : null;
  } catch (_) {
    return null;
  }
}

async function api(path, options) {
  const response = await fetch(API_BASE + path, Object.assign({ cache: "no-store" }, options || {}));
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

function formatAge(seconds) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 1) return "just now";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function renderMatches(list, matches) {
  list.replaceChildren();
  (matches || []).forEach((match, index) => {
    const item = el("li", index === 0 ? "match top" : "match");
    item.dataset.testid = "match";
    const src = safeImageUrl(match.image_url);
    if (src) {
      const img = el("img");
      img.src = src;
      img.alt = String(match.title || match.id || "");
      img.loading = "lazy";
      item.append(img);
    }
    item.append(el("div", "title", match.title || match.id || "(untitled)"));
    const score = typeof match.score === "number" ? match.score.toFixed(3) : "?";
    item.append(el("div", "score", `score ${score} · ${match.id ?? ""}`));
    list.append(item);
  });
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

function deviceCard(deviceId) {
  let card = cards.get(deviceId);
  if (!card) {
    const root = document.getElementById("device-template").content.firstElementChild.cloneNode(true);
    root.dataset.device = deviceId;
    root.querySelector(".device-id").textContent = deviceId;
    document.getElementById("devices").append(root);
    card = { root, key: null, record: null, thumbnailSeq: null };
    cards.set(deviceId, card);
  }
  return card;
}

function isRefused(device) {
  // A refusal newer than the newest accepted record: the camera's messages are being turned away now.
  const refusal = device.rejection;
  if (!refusal || typeof refusal.at !== "number") return false;
  const newest = device.record && typeof device.record.searched_at === "number" ? device.record.searched_at : 0;
  return refusal.at > newest;
}

function renderRefusal(card, device) {
  const box = card.root.querySelector(".refusal");
  if (!isRefused(device)) {
    box.hidden = true;
    return;
  }
  const refusal = device.rejection;
  const reason = String(refusal.reason || "refused").replace(/_/g, " ");
  card.root.querySelector(".refusal-title").textContent = `Messages refused (${reason}):`;
  card.root.querySelector(".refusal-hint").textContent = refusal.hint || "";
  const when = typeof refusal.at === "number" ? `last ${formatAge(Date.now() / 1000 - refusal.at)} — ` : "";
  const detail = card.root.querySelector(".refusal-message");
  detail.textContent = `${when}${refusal.message || ""}`;
  detail.title = refusal.message || ""; // the whole message on hover; one line on the card
  box.hidden = false;
}

function renderStatus(card, device) {
  const status = device.status || {};
  let state = ["online", "degraded", "offline"].includes(status.state) ? status.state : "unknown";
  if (isRefused(device) && state !== "offline") state = "refused";
  const pill = card.root.querySelector(".state");
  pill.textContent = state;
  pill.className = `pill state ${state}`;
  const parts = [];
  if (typeof status.fps === "number") parts.push(`${status.fps.toFixed(1)} fps`);
  if (status.backend) parts.push(`${status.backend}${status.device ? " on " + status.device : ""}`);
  if (status.model_id) parts.push(status.model_id);
  if (typeof device.last_seen === "number") parts.push(`seen ${formatAge(Date.now() / 1000 - device.last_seen)}`);
  if (status.last_error) parts.push(`last error: ${status.last_error}`);
  card.root.querySelector(".status-line").textContent = parts.join(" · ");
}

function renderThumbnail(card, device) {
  // The newest query thumbnail (opt-in on the camera): fetched again only when its seq changes.
  const figure = card.root.querySelector(".seen");
  const thumb = device.thumbnail;
  if (!thumb || typeof thumb.seq !== "number") {
    figure.hidden = true;
    return;
  }
  if (thumb.seq !== card.thumbnailSeq) {
    const id = encodeURIComponent(device.device_id);
    card.root.querySelector(".thumbnail").src = `${API_BASE}/api/devices/${id}/thumbnail?seq=${thumb.seq}`;
    card.thumbnailSeq = thumb.seq;
  }
  card.root.querySelector(".seen-age").textContent = formatAge(Date.now() / 1000 - thumb.ts);
  figure.hidden = false;
}

function renderScores(card, record) {
  // Every top-k score of the newest frame as a bar: how clear the winner is, at a glance.
  const box = card.root.querySelector(".scores");
  const list = card.root.querySelector(".topk");
  const matches = (record && record.matches) || [];
  box.hidden = matches.length === 0;
  list.replaceChildren();
  matches.forEach((match) => {
    const score = typeof match.score === "number" ? match.score : 0;
    const row = el("li", "score-row");
    row.append(el("span", "score-title", match.title || match.id || "(untitled)"));
    const bar = el("span", "score-bar");
    const fill = el("span", "score-fill");
    fill.style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
    bar.append(fill);
    row.append(bar, el("span", "score-value", score.toFixed(2)));
    list.append(row);
  });
}

function renderHistory(card, history) {
  // The last frames this camera sent, newest first, with what each matched and how long ago.
  const box = card.root.querySelector(".recent");
  const list = card.root.querySelector(".history");
  const entries = Array.isArray(history) ? history : [];
  box.hidden = entries.length === 0;
  list.replaceChildren();
  const now = Date.now() / 1000;
  entries.forEach((entry) => {
    const top = entry.top;
    const item = el("li", top ? "hit" : "miss");
    item.append(el("span", "history-title", top ? top.title || top.id || "(untitled)" : "no match"));
    if (top && typeof top.score === "number") item.append(el("span", "history-score", top.score.toFixed(2)));
    item.append(el("span", "muted history-age", formatAge(now - entry.searched_at)));
    list.append(item);
  });
}

function renderRecord(card, record) {
  const empty = card.root.querySelector(".no-matches");
  const line = card.root.querySelector(".match-line");
  const list = card.root.querySelector(".matches");
  if (!record) {
    empty.hidden = false;
    line.textContent = "";
    list.replaceChildren();
    renderScores(card, null);
    card.key = null;
    return;
  }
  empty.hidden = true;
  const key = `${record.seq}/${record.searched_at}`;
  if (key !== card.key) {
    renderMatches(list, record.matches);
    renderScores(card, record);
    card.key = key;
    if (!record.matches || record.matches.length === 0) {
      list.append(el("li", "empty", "Nothing in the catalog looks like this frame."));
    }
  }
  const latencyMs = (record.searched_at - record.ts) * 1000;
  const age = Date.now() / 1000 - record.searched_at;
  // A device clock far off gives a negative or absurd figure: show none rather than a wrong one.
  const plausible = Number.isFinite(latencyMs) && latencyMs >= 0 && latencyMs < 3_600_000;
  const latency = plausible ? `frame-to-match ${Math.round(latencyMs)} ms` : "";
  line.textContent = `frame #${record.seq} · matched ${formatAge(age)} · ${latency}`;
}

async function latestOfEveryDevice() {
  // One call per page of devices (status + newest record each), not one call per camera.
  const devices = [];
  let cursor = null;
  for (let page = 0; page < MAX_PAGES; page += 1) {
    const query = `limit=${PAGE_SIZE}&history=${HISTORY}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const body = await api(`/api/latest?${query}`);
    devices.push(...body.devices);
    if (!body.next) break;
    cursor = body.next;
  }
  return devices;
}

async function refresh() {
  const apiState = document.getElementById("api-state");
  try {
    const devices = await latestOfEveryDevice();
    document.getElementById("no-devices").hidden = devices.length > 0;
    for (const device of devices) {
      const card = deviceCard(device.device_id);
      renderStatus(card, device);
      renderRefusal(card, device);
      renderThumbnail(card, device);
      renderRecord(card, device.record);
      renderHistory(card, device.history);
    }
    apiState.textContent = "live";
    apiState.className = "pill ok";
  } catch (error) {
    apiState.textContent = `API unreachable: ${error.message}`;
    apiState.className = "pill error";
  } finally {
    window.setTimeout(refresh, POLL_MS);
  }
}

async function searchPhoto(event) {
  event.preventDefault();
  const file = document.getElementById("photo-file").files[0];
  const message = document.getElementById("photo-message");
  const results = document.getElementById("photo-results");
  if (!file) {
    message.textContent = "Choose a JPEG or PNG photo first.";
    return;
  }
  message.textContent = "Searching…";
  results.replaceChildren();
  try {
    const body = await api("/api/search?k=5", {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    renderMatches(results, body.matches);
    const stages = Object.values(body.timing_ms || {}).filter((v) => typeof v === "number");
    const total = stages.length ? ` in ${Math.round(stages.reduce((a, b) => a + b, 0))} ms` : "";
    message.textContent = body.matches.length
      ? `${plural(body.matches.length, "match", "matches")}${total}`
      : "No catalog item looks like this photo.";
  } catch (error) {
    message.textContent = `Search failed: ${error.message}`;
  }
}

document.getElementById("photo-form").addEventListener("submit", searchPhoto);
refresh();
