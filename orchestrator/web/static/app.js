// Tritone "Try it" page: log in, create a song, watch the lyrics arrive and the audio progress, play and download.
// Plain JS, no build step. Talks to the song API exactly as any client would:
//   POST /auth/login            {username, password}      -> {access_token, token_type, expires_in}
//   POST /v1/song/create        SongCreate                -> {code, data: {intent_id, status, next_step}, error}
//   GET  /v1/song/events?intent_id=&access_token=         -> server-sent events (live lyrics, progress)
//   GET  /v1/song/status?intent_id=                       -> the whole state; polled every poll_interval_sec
// Errors come as {code, data: null, error: {message, field?}}.
"use strict";

const TRACKS = [
  ["drums", "鼓"], ["bass", "贝斯"], ["guitar", "吉他"], ["keyboard", "键盘"], ["strings", "弦乐"], ["synth", "合成器"],
  ["brass", "铜管"], ["woodwinds", "木管"], ["percussion", "打击乐"], ["fx", "音效"], ["vocals", "主唱"],
  ["backing_vocals", "和声"],
];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STATUS_TEXT = {
  lyrics_pending: "写词中 writing lyrics",
  lyrics_ready: "歌词完成 lyrics ready",
  audio_pending: "生成音频 making audio",
  succeeded: "完成 done",
  failed: "失败 failed",
  cancelled: "已取消 cancelled",
};
const STAGE_TEXT = {
  lyrics: "歌词 lyrics", expand: "扩写 expanding theme", plan: "写词 writing lyrics", metadata: "编曲参数 metadata",
  thinking: "构思 planning audio", encode: "编码 encoding", diffusion: "扩散 diffusion", decode: "解码 decoding",
  post: "后期 post-processing", cover: "封面 cover", done: "完成 done",
};
const TOKEN_KEY = "tritone.token";
const USER_KEY = "tritone.user";

const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  user: sessionStorage.getItem(USER_KEY),
  intentId: null,
  events: null,
  pollTimer: null,
  pollInterval: 5,
  lyrics: "",
  renderedItems: "",
  coverUrl: null,
};

// ------------------------------------------------------------------------------------------------ helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

// Media elements and EventSource cannot send headers, and the bearer token never goes into a URL: the server's
// links are signed already (expires + sig); anything else gets a short-lived token for that one job and purpose
// from POST /auth/url-token.
async function urlToken(jobId, purpose) {
  const response = await fetch("/auth/url-token", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ job_id: jobId, purpose }),
  });
  if (!response.ok) return null;
  const body = await response.json();
  return body.access_token || null;
}

function withToken(url) {
  // Signed links are used as they are; no credential is ever appended to a URL here.
  return url;
}

// Turn any failed response into one readable sentence (+ the field it is about, when the server names one).
async function readError(response) {
  let message = `HTTP ${response.status} ${response.statusText}`;
  let field = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      field = body.error.field || null;
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    } else if (body && Array.isArray(body.detail) && body.detail.length) {
      const first = body.detail[0];
      field = (first.loc || []).filter((p) => p !== "body").join(".") || null;
      message = first.msg || message;
    }
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) {
    message = `${message} — 请先登录 please log in`;
    setLoggedOut();
  }
  return { status: response.status, message, field };
}

function fieldLabel(field) {
  if (!field) return null;
  // "body.theme" / "theme" / "track_classes[0]" -> the form control's id.
  const name = String(field).split(".").pop().replace(/\[\d+\]$/, "");
  return name;
}

function clearFieldErrors() {
  for (const node of document.querySelectorAll("[aria-invalid=true]")) node.removeAttribute("aria-invalid");
}

function showError(message, field) {
  const box = $("error");
  const name = fieldLabel(field);
  $("error-message").textContent = name && !message.includes(name) ? `${name}: ${message}` : message;
  box.hidden = false;
  $("idle").hidden = true;
  clearFieldErrors();
  if (name && $(name)) {
    const control = $(name);
    control.setAttribute("aria-invalid", "true");
    const details = control.closest("details");
    if (details) details.open = true;
    control.focus({ preventScroll: false });
  }
}

function hideError() {
  $("error").hidden = true;
  clearFieldErrors();
}

// ------------------------------------------------------------------------------------------------ login
function setLoggedIn(user, token) {
  state.token = token;
  state.user = user;
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(USER_KEY, user);
  $("login-form").hidden = true;
  $("login-done").hidden = false;
  $("login-user").textContent = user;
  document.dispatchEvent(new CustomEvent("tritone:auth", { detail: { user } }));  // library.js, site.js
}

function setLoggedOut() {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  $("login-form").hidden = false;
  $("login-done").hidden = true;
  document.dispatchEvent(new CustomEvent("tritone:auth", { detail: { user: null } }));
}

async function login(event) {
  event.preventDefault();
  const error = $("login-error");
  error.hidden = true;
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    error.textContent = "请输入用户名和密码 enter a username and a password";
    error.hidden = false;
    return;
  }
  $("login-button").disabled = true;
  try {
    const response = await fetch("/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (!response.ok) {
      const problem = await readError(response);
      error.textContent = problem.message;
      error.hidden = false;
      return;
    }
    const body = await response.json();
    const token = body.access_token || (body.data && body.data.access_token);
    setLoggedIn(username, token);
    $("password").value = "";
  } catch (err) {
    error.textContent = `无法连接服务器 cannot reach the server: ${err.message}`;
    error.hidden = false;
  } finally {
    $("login-button").disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ form
function buildChips() {
  const box = $("track_classes");
  for (const [name, zh] of TRACKS) {
    const input = el("input", { type: "checkbox", name: "track_classes", value: name, id: `track-${name}` });
    box.append(el("label", { class: "chip", for: `track-${name}` }, input, el("span", { text: `${zh} ${name}` })));
  }
}

function bindOutputs() {
  const outputs = [
    ["duration_hint", (v) => `${v} s`],
    ["temperature", (v) => Number(v).toFixed(2)],
    ["guidance_scale", (v) => Number(v).toFixed(1)],
  ];
  for (const [id, fmt] of outputs) {
    const update = () => { $(`${id}_out`).textContent = fmt($(id).value); };
    $(id).addEventListener("input", update);
    update();
  }
}

// The request body: every field the page shows; blanks are left out so the server's defaults apply.
function collectRequest() {
  const text = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : v; };
  const number = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };
  const body = {
    theme: $("theme").value,
    language: $("language").value,
    style: text("style"),
    vocal_mode: $("vocal_mode").value,
    vocal_gender: $("vocal_gender").value,
    duration_hint: number("duration_hint"),
    rhyme: text("rhyme"),
    additional_instructions: text("additional_instructions"),
    temperature: number("temperature"),
    bpm: number("bpm"),
    key_scale: text("key_scale"),
    duration: number("duration"),
    audio_format: $("audio_format").value,
    inference_steps: number("inference_steps"),
    guidance_scale: number("guidance_scale"),
    use_adg: $("use_adg").checked,
    batch_size: number("batch_size"),
    generate_cover: $("generate_cover").checked,
    cover_size: text("cover_size"),
    seed: number("seed"),
    model: text("model"),
    expand_theme: $("expand_theme").checked,
    // Asked for explicitly (the karaoke view needs it), for sung songs only: an instrumental has nothing to time.
    align_lyrics: $("align_lyrics").checked && $("vocal_mode").value === "sing",
  };
  const tracks = [...document.querySelectorAll("input[name=track_classes]:checked")].map((i) => i.value);
  if (tracks.length) body.track_classes = tracks;
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return body;
}

// ------------------------------------------------------------------------------------------------ job view
function resetJobView() {
  stopWatching();
  state.intentId = null;
  state.lyrics = "";
  state.renderedItems = "";
  state.coverUrl = null;
  $("lyrics").textContent = "";
  $("song-title").textContent = "";
  $("items").replaceChildren();
  $("metadata").replaceChildren();
  $("metadata").hidden = true;
  $("cover-box").hidden = true;
  $("cover").removeAttribute("src");
  setProgress({ stage: "lyrics", step: 0, total: 0 });
}

function setStatus(status) {
  const pill = $("status");
  pill.textContent = STATUS_TEXT[status] || status;
  pill.dataset.status = status;
  $("cancel").hidden = TERMINAL.has(status);
  $("lyrics-live").hidden = status !== "lyrics_pending";
  document.body.dataset.songStatus = status;  // handy for tests and user styles
}

function setProgress(progress, status) {
  if (!progress) return;
  const step = Number(progress.step || 0);
  const total = Number(progress.total || 0);
  let fraction = total > 0 ? Math.min(1, step / total) : 0;
  if (status === "succeeded") fraction = 1;
  const percent = Math.round(fraction * 100);
  $("progress-fill").style.width = `${percent}%`;
  const bar = $("progress");
  bar.setAttribute("aria-valuenow", String(percent));
  bar.dataset.step = String(step);
  bar.dataset.total = String(total);
  const stage = status === "succeeded" ? "done" : progress.stage || "lyrics";
  $("progress-stage").textContent = STAGE_TEXT[stage] || stage;
  $("progress-count").textContent = total > 0 && status !== "succeeded" ? `${step} / ${total}` : "";
}

function setLyrics(text) {
  if (typeof text !== "string" || text === state.lyrics) return;
  state.lyrics = text;
  const pre = $("lyrics");
  pre.textContent = text;
  pre.scrollTop = pre.scrollHeight;
}

function formatDuration(seconds) {
  if (!seconds && seconds !== 0) return "";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function safeName(text) {
  return (text || "song").replace(/[\\/:*?"<>|\s]+/g, "_").slice(0, 60) || "song";
}

function renderItems(data) {
  const items = data.items || [];
  // The links are signed afresh on every status read: the path alone says whether the items changed (a re-render
  // would stop a player that is playing, and its karaoke view).
  const key = JSON.stringify(items.map((i) => [i.index, String(i.audio_url).split("?")[0]]));
  if (key === state.renderedItems) return;
  state.renderedItems = key;
  const list = $("items");
  list.replaceChildren();
  for (const item of items) {
    const src = withToken(item.audio_url);
    const format = item.format || "flac";
    const filename = `${safeName(data.title || data.metadata?.title)}-${item.index + 1}.${format === "wav32" ? "wav" : format}`;
    const audio = el("audio", { controls: "", preload: "metadata", src, class: "player" });
    const link = el("a", { href: src, download: filename, class: "download" });
    link.textContent = `⬇ ${filename}`;
    const meta = el("span", { class: "muted", text: `${formatDuration(item.duration)} · 48 kHz · seed ${item.seed}` });
    const reuse = el("button", { type: "button", class: "link reuse-seed", "data-seed": String(item.seed), text: "↻ 用此种子 reuse seed" });
    const row = el("li", { class: "item" }, el("div", { class: "item-head" }, `♪ #${item.index + 1} `, meta), audio);
    const karaoke = karaokeView(audio, item, data.lyrics);  // karaoke.js; null when the item has no lyric timing
    if (karaoke) row.append(karaoke);
    row.append(link, reuse, stemsControl(data.intent_id || state.intentId, item.index));  // stems.js
    list.append(row);
  }
}

function renderMetadata(meta) {
  if (!meta) return;
  const rows = [
    ["BPM", meta.bpm], ["调性 key", meta.key_scale], ["拍号 time", meta.time_signature],
    ["时长 duration", meta.duration ? `${Math.round(meta.duration)} s` : null], ["caption", meta.caption],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  const box = $("metadata");
  box.replaceChildren();
  for (const [k, v] of rows) box.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  box.hidden = rows.length === 0;
}

function renderCover(url) {
  if (!url || url === state.coverUrl) return;
  state.coverUrl = url;
  const img = $("cover");
  img.src = withToken(url);
  img.onload = () => { $("cover-box").hidden = false; };
  img.onerror = () => { $("cover-box").hidden = true; };
}

// One status object (from GET /v1/song/status or a full-state event) → the whole view.
function applyStatus(data) {
  if (!data || (data.intent_id && data.intent_id !== state.intentId)) return;
  if (data.status && STATUS_TEXT[data.status]) setStatus(data.status);
  if (typeof data.lyrics === "string" && data.lyrics.length >= state.lyrics.length) setLyrics(data.lyrics);
  const title = data.title || data.metadata?.title;
  if (title) $("song-title").textContent = title;
  if (data.progress) setProgress(data.progress, data.status);
  if (data.metadata) renderMetadata(data.metadata);
  if (data.items && data.items.length) renderItems(data);
  if (data.cover_url) renderCover(data.cover_url);
  const queue = $("queue");
  queue.textContent = data.status === "lyrics_pending" && data.queue_position > 0
    ? `排队 queue #${data.queue_position}` : "";
  if (Array.isArray(data.warnings)) {  // e.g. guidance not applied on a turbo checkpoint
    $("warnings").textContent = data.warnings.map((m) => `⚠ ${m}`).join("\n");
    $("warnings").hidden = data.warnings.length === 0;
  }
  if (data.status === "failed") showError(data.error || "生成失败 generation failed", null);
  if (TERMINAL.has(data.status)) {
    stopWatching();
    $("submit").disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ live updates
// The event stream carries the job's events (kinds: lyrics {text, final?, title?}, progress {stage, step, total},
// status {status, stage?}, done, failed {message|error}). Shapes are read loosely so the page keeps working as the
// API evolves: a full status object or {lyrics_so_far} / {delta} are understood as well.
function applyEvent(type, raw) {
  let data;
  try { data = JSON.parse(raw); } catch (_) { return; }
  if (data && data.data && typeof data.data === "object" && !Array.isArray(data.data)) data = data.data;
  if (!data || typeof data !== "object") return;
  if (data.intent_id && data.intent_id !== state.intentId) return;
  const kind = data.kind || data.type || type;

  const full = data.lyrics_so_far ?? data.lyrics ?? (kind === "lyrics" ? data.text : undefined);
  if (typeof full === "string") setLyrics(full);
  else if (kind === "delta" && typeof (data.delta ?? data.text) === "string") setLyrics(state.lyrics + (data.delta ?? data.text));
  if (data.title) $("song-title").textContent = data.title;

  const progress = data.progress || (data.total !== undefined ? data : null);
  if (progress && progress.total !== undefined) setProgress(progress, data.status);
  else if (data.stage && kind === "status") $("progress-stage").textContent = STAGE_TEXT[data.stage] || data.stage;

  if (data.status && STATUS_TEXT[data.status]) applyStatus({ intent_id: state.intentId, ...data });
  else if (data.items || data.cover_url || data.metadata) applyStatus({ intent_id: state.intentId, ...data, status: undefined });

  if (kind === "failed" || kind === "error") {
    const e = data.error && typeof data.error === "object" ? data.error : data;
    const message = e.message || (typeof data.error === "string" ? data.error : null);
    if (message) showError(message, e.field);
  }
  if (TERMINAL.has(data.status) || ["done", "end", "failed", "cancelled"].includes(kind)) pollOnce();  // final state
}

async function openEvents() {
  if (!window.EventSource) return;
  const intent = state.intentId;
  const token = state.token ? await urlToken(intent, "events") : null;
  if (state.token && !token) return;  // polling carries on alone
  if (intent !== state.intentId) return;  // another song was started meanwhile
  let url = `/v1/song/events?intent_id=${encodeURIComponent(intent)}`;
  if (token) url += `&access_token=${encodeURIComponent(token)}`;
  const source = new EventSource(url);
  state.events = source;
  const types = ["message", "lyrics", "delta", "progress", "status", "stage", "metadata", "item", "items", "cover", "done",
    "end", "failed", "cancelled", "error"];
  for (const type of types) {
    source.addEventListener(type, (event) => { if (event.data) applyEvent(type, event.data); });
  }
  source.onerror = () => {
    // Stream closed or not available: polling carries on alone; EventSource would otherwise retry forever.
    if (source.readyState === EventSource.CLOSED || source.readyState === EventSource.CONNECTING) {
      source.close();
      if (state.events === source) state.events = null;
    }
  };
}

async function pollOnce() {
  const intent = state.intentId;
  if (!intent) return;
  try {
    const response = await fetch(`/v1/song/status?intent_id=${encodeURIComponent(intent)}`, { headers: authHeaders() });
    if (intent !== state.intentId) return;
    if (!response.ok) {
      const problem = await readError(response);
      showError(problem.message, problem.field);
      if (response.status === 401 || response.status === 404) stopWatching();
      return;
    }
    const body = await response.json();
    applyStatus(body.data);
  } catch (err) {
    $("queue").textContent = `重试中 retrying (${err.message})`;
  }
}

function startWatching() {
  openEvents().catch(() => {});  // the stream is a bonus: polling carries on without it
  const tick = async () => {
    await pollOnce();
    if (state.intentId && !TERMINAL.has(document.body.dataset.songStatus)) {
      // Faster while the SSE stream is down, so the lyrics still move.
      const seconds = state.events ? state.pollInterval : Math.min(state.pollInterval, 2);
      state.pollTimer = setTimeout(tick, seconds * 1000);
    }
  };
  state.pollTimer = setTimeout(tick, 300);
}

function stopWatching() {
  if (state.events) { state.events.close(); state.events = null; }
  if (state.pollTimer) { clearTimeout(state.pollTimer); state.pollTimer = null; }
}

// ------------------------------------------------------------------------------------------------ submit / cancel
async function submit(event) {
  event.preventDefault();
  hideError();
  if (!state.token) {
    showError("请先登录 please log in first (POST /auth/login)", "username");
    return;
  }
  resetJobView();
  const button = $("submit");
  button.disabled = true;
  try {
    const response = await fetch("/v1/song/create", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(collectRequest()),
    });
    if (!response.ok) {
      const problem = await readError(response);
      showError(problem.message, problem.field);
      button.disabled = false;
      return;
    }
    const body = await response.json();
    const data = body.data;
    state.intentId = data.intent_id;
    state.pollInterval = (data.next_step && data.next_step.poll_interval_sec) || 5;
    $("idle").hidden = true;
    $("job").hidden = false;
    document.body.dataset.intentId = data.intent_id;
    setStatus(data.status);
    startWatching();
  } catch (err) {
    showError(`无法连接服务器 cannot reach the server: ${err.message}`, null);
    button.disabled = false;
  }
}

async function cancel() {
  if (!state.intentId) return;
  const response = await fetch("/v1/song/cancel", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ intent_id: state.intentId }),
  });
  if (!response.ok) {
    const problem = await readError(response);
    showError(problem.message, problem.field);
    return;
  }
  pollOnce();
}

// ------------------------------------------------------------------------------------------------ start
function init() {
  buildChips();
  bindOutputs();
  if (state.token && state.user) setLoggedIn(state.user, state.token);
  $("login-form").addEventListener("submit", login);
  $("logout-button").addEventListener("click", setLoggedOut);
  $("song-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  for (const control of document.querySelectorAll("#song-form input, #song-form textarea, #song-form select")) {
    control.addEventListener("input", () => control.removeAttribute("aria-invalid"));
  }
}

document.addEventListener("DOMContentLoaded", init);
