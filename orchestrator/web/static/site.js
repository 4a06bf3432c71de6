// The page's reference sections (seed 000), all filled from the live service:
//   GET  /v1/site            limits, performance, the request fields table, statuses, error codes, the AI prompt
//   POST /v1/site/examples   curl / Python / JavaScript for the request the form describes now
//   GET  /v1/models          the model selector (after login: it needs a token)
// The form's ranges and lengths are set from the same schema the API validates with, so they cannot disagree.
"use strict";

const site = { data: null, codeLang: "curl", examples: null, timer: null };

function tile(value, zh, en, extra) {
  const box = el("div", { class: "tile" });
  box.append(el("div", { class: "tile-value", text: value }), bilingual(zh, en, "div"));
  if (extra) box.append(el("div", { class: "muted", text: extra }));
  return box;
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  return value >= 90 ? `${(value / 60).toFixed(1)} min` : `${value.toFixed(1)} s`;
}

function renderLimits(limits) {
  const grid = $("limits-grid");
  grid.replaceChildren(
    tile(`${limits.audio_duration.min} ~ ${limits.audio_duration.max} s`, "audio_duration 范围", "Audio duration"),
    tile(`${limits.inference_steps.min} ~ ${limits.inference_steps.max} (rec ${limits.inference_steps.recommended})`,
      "inference_steps", "Inference steps"),
    tile(`${limits.batch_size.min} ~ ${limits.batch_size.max} (rec ${limits.batch_size.recommended})`, "batch_size",
      "Batch size"),
    tile(limits.audio_formats.join(" / "), "audio_format", "Audio format"),
    tile(String(limits.queue_max), "作业队列上限", "Job queue size", `每用户 per user ${limits.user_queue_max}`),
    tile(limits.rhymes.join(" "), "推荐韵脚", "Rhymes"),
  );
  grid.removeAttribute("aria-busy");
}

function renderPerformance(perf) {
  const m = perf.measured, ref = perf.reference;
  const grid = $("performance-grid");
  grid.replaceChildren(
    tile(ref.post_response, "POST 返回", "POST response"),
    tile(seconds(m.lyrics), "Lyrics 阶段(实测)", "Lyrics phase (measured)", `参考 ref ${ref.lyrics}`),
    tile(seconds(m.audio), "Audio 阶段(实测)", "Audio phase (measured)", `参考 ref ${ref.audio}`),
    tile(seconds(perf.measured_total_s), "总时长(实测)", "Total wall time (measured)", `参考 ref ${ref.total}`),
    tile(`${perf.jobs.queued} / ${perf.jobs.running}`, "排队 / 运行中", "Queued / running",
      `${perf.workers} workers · max ${perf.queue_max}`),
    tile(ref.get_status, "GET status", "GET status"),
  );
  grid.dataset.measured = String(Object.keys(m).length);
  grid.removeAttribute("aria-busy");
}

function renderFields(fields) {
  const body = $("fields-table").querySelector("tbody");
  body.replaceChildren();
  for (const f of fields) {
    const name = el("td", {}, el("code", { text: f.name }));
    if (f.required) name.append(el("span", { class: "req", text: " *" }));
    const kind = f.enum ? `${f.type}: ${f.enum.join(" | ")}` : f.type;
    const dflt = f.required ? "必填 required" : JSON.stringify(f.default);
    const desc = el("td", {}, bilingual(f.description_zh || f.description, f.description));
    body.append(el("tr", { "data-field": f.name }, name, el("td", { text: kind }), el("td", { text: dflt }),
      el("td", { text: f.range || "" }), desc));
  }
}

// The form's controls take their bounds from the schema rows (exclusive bounds step inside the range).
function applyBounds(fields) {
  for (const f of fields) {
    const control = $(f.name);
    if (!control) continue;
    if (f.max_length !== undefined && "maxLength" in control) control.maxLength = f.max_length;
    if (control.type === "number" || control.type === "range") {
      const step = Number(control.step) || 1;
      if (f.min !== undefined) control.min = String(f.min);
      if (f.gt !== undefined) control.min = String(Number(f.gt) + step);
      if (f.max !== undefined) control.max = String(f.max);
      if (f.lt !== undefined) control.max = String(Number(f.lt) - step);
    }
  }
}

function renderErrors(errors) {
  const list = $("errors-list");
  list.replaceChildren();
  for (const e of errors) {
    list.append(el("div", { class: "error-row", "data-code": String(e.code) },
      el("div", { class: "error-code", text: String(e.code) }),
      el("div", {}, bilingual(e.title_zh, e.title_en, "strong"), bilingual(e.todo_zh, e.todo_en, "p"))));
  }
}

function renderResponse(data) {
  $("status-machine").textContent = data.statuses.join(" → ");
  const example = {
    code: 200,
    data: {
      intent_id: "abc-...-uuid",
      status: data.statuses[0],
      next_step: { method: "GET", url: "/v1/song/status?intent_id=abc-...",
        poll_interval_sec: data.limits.poll_interval_sec },
    },
    error: null,
  };
  $("response-example").textContent = JSON.stringify(example, null, 2);
}

function renderPrompt(prompt) {
  $("prompt-text").textContent = prompt.text;
  $("prompt-tokens").textContent = `~${prompt.tokens} tokens`;
  $("prompt-tokens").dataset.tokens = String(prompt.tokens);
}

// ------------------------------------------------------------------------------------------------ models
function fillModels(entries, defaultModel) {
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: `部署默认 deployment default (${defaultModel})` }));
  for (const entry of entries) {
    const sets = entry.version_sets || [];
    if (!sets.length) {
      const option = el("option", { value: entry.name, text: entry.name });
      if (entry.served === false) option.disabled = true;
      select.append(option);
      continue;
    }
    for (const vs of sets) {
      const option = el("option", { value: vs.model, text: `${vs.model}${vs.variant ? ` · ${vs.variant}` : ""}` });
      if (vs.variant === "turbo") option.dataset.turbo = "true";
      select.append(option);
    }
  }
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  select.dispatchEvent(new Event("change"));
}

async function loadModels() {
  if (!state.token) return;
  try {
    const response = await fetch("/v1/models", { headers: authHeaders() });
    if (!response.ok) return;
    const body = await response.json();
    // model_listing's families (name, served, version_sets: [{model, variant}]); older shapes: models
    fillModels(body.data.families || body.data.models || [], body.data.default_model);
  } catch (_) { /* the family list from /v1/site stays */ }
}

// ------------------------------------------------------------------------------------------------ examples
function exampleBody() {
  const body = collectRequest();
  if (!String(body.theme || "").trim()) body.theme = $("theme").placeholder;
  return body;
}

async function refreshExamples() {
  const auth = $("code-api-key").checked ? "api_key" : "login";
  try {
    const response = await fetch("/v1/site/examples", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ body: exampleBody(), auth }),
    });
    if (!response.ok) return;
    site.examples = (await response.json()).data;
    showExample();
  } catch (_) { /* keep the last ones */ }
}

function showExample() {
  if (!site.examples) return;
  $("code-example").textContent = site.examples[site.codeLang];
  $("code-example").dataset.lang = site.codeLang;
  for (const tab of document.querySelectorAll("#code-tabs [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.lang === site.codeLang));
  }
}

function scheduleExamples() {
  clearTimeout(site.timer);
  site.timer = setTimeout(refreshExamples, 250);
}

// ------------------------------------------------------------------------------------------------ copy
async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const area = el("textarea", { class: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  button.dataset.copied = "true";
  setTimeout(() => { delete button.dataset.copied; }, 1500);
}

async function loadSite() {
  const response = await fetch("/v1/site");
  if (!response.ok) throw new Error(`GET /v1/site: ${response.status}`);
  const data = (await response.json()).data;
  site.data = data;
  renderLimits(data.limits);
  renderPerformance(data.performance);
  renderFields(data.fields);
  applyBounds(data.fields);
  renderErrors(data.errors);
  renderResponse(data);
  renderPrompt(data.prompt);
  fillModels(Object.keys(data.limits.families).map((name) => ({ name })), data.limits.default_model);
  document.body.dataset.siteLoaded = "true";
  document.dispatchEvent(new CustomEvent("tritone:site", { detail: data }));  // library.js: the edit tasks
}

function initSite() {
  loadSite().then(refreshExamples).catch((err) => { document.body.dataset.siteError = err.message; });
  $("song-form").addEventListener("input", scheduleExamples);
  $("song-form").addEventListener("change", scheduleExamples);
  $("code-api-key").addEventListener("change", refreshExamples);
  for (const tab of document.querySelectorAll("#code-tabs [role=tab]")) {
    tab.addEventListener("click", () => { site.codeLang = tab.dataset.lang; showExample(); });
  }
  $("copy-code").addEventListener("click", (e) => copyText($("code-example").textContent, e.currentTarget));
  $("copy-prompt").addEventListener("click", (e) => copyText($("prompt-text").textContent, e.currentTarget));
  $("model").addEventListener("change", () => {
    const option = $("model").selectedOptions[0];
    document.body.dataset.turbo = option && option.dataset.turbo ? "true" : "false";
  });
  document.addEventListener("tritone:auth", (event) => { if (event.detail.user) loadModels(); });
  if (state.token) loadModels();
}

document.addEventListener("DOMContentLoaded", initSite);
