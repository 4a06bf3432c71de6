// "Your library": the signed-in user's past songs (GET /v1/song/list — the song jobs, until a clip library exists)
// with play, download, cover, lyrics, their seeds, and the actions the service offers on them (make it again with
// the same settings and seed, or a variation with a new seed); "Samples": the operator's curated set
// (GET /v1/site/samples). Reusing a seed from a result or a library entry fills the form.
"use strict";

const library = { view: "mine", loaded: false };

function setFormValue(id, value) {
  const control = $(id);
  if (!control || value === undefined || value === null) return;
  if (control.type === "checkbox") control.checked = Boolean(value);
  else control.value = String(value);
  control.dispatchEvent(new Event("input", { bubbles: true }));
}

function reuseSeed(seed) {
  setFormValue("seed", seed);
  $("adv-audio").open = true;
  $("seed").scrollIntoView({ block: "center" });
}

// The request a library entry was made from, back in the form (new seed: null keeps the form's seed empty).
function reuseRequest(request, seed) {
  for (const [key, value] of Object.entries(request)) {
    if (key === "track_classes") {
      for (const box of document.querySelectorAll("input[name=track_classes]")) box.checked = value.includes(box.value);
    } else if (key !== "seed") {
      setFormValue(key, value);
    }
  }
  setFormValue("seed", seed === null ? "" : seed);
  $("theme").scrollIntoView({ block: "center" });
}

// An edit of a finished song through the ACE-Step API: its first item as the source (``<job id>/<file>``, one of
// the caller's own results), the song's caption and lyrics; the job is followed on GET /v1/jobs/{id}.
const EDIT_TEXT = { cover: "翻唱 Cover", repaint: "重绘片段 Repaint" };

function sourcePath(song) {
  const url = new URL(song.items[0].audio_url, window.location.href);
  return url.pathname.replace(/^\/v1\/files\//, "");
}

async function followEdit(jobId, box) {
  for (;;) {
    const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}`, { headers: authHeaders() });
    if (!response.ok) { box.textContent = (await readError(response)).message; return; }
    const payload = await response.json();
    const job = payload.data && payload.data.job_id ? payload.data : payload;
    box.dataset.status = job.status;
    box.textContent = `${job.status}${job.progress && job.progress.total ? ` ${job.progress.step}/${job.progress.total}` : ""}`;
    if (job.status === "succeeded") {
      job.result.audio_paths.forEach((path, i) => {
        const audio = el("audio", { controls: "", preload: "none", src: withToken(path), class: "player" });
        box.append(audio);
        const karaoke = karaokeView(audio, (job.result.alignment || [])[i], job.result.metas?.lyrics, { hidden: true });
        if (karaoke) box.append(karaoke);
      });
      return;
    }
    if (["failed", "cancelled"].includes(job.status)) { box.textContent = `${job.status}: ${job.error || ""}`; return; }
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

async function startEdit(song, task, start, end, box) {
  const request = song.request || {};
  const body = {
    task_type: task,
    src_audio_path: sourcePath(song),
    caption: song.metadata?.caption || request.style || request.theme,
    lyrics: song.lyrics || "",
    audio_format: request.audio_format || "flac",
    inference_steps: request.inference_steps,
  };
  if (request.model) body.model = request.model;
  if (song.items[0].lrc) body.align_lyrics = true;  // the source was timed (so its model can time): time the edit
  if (task === "repaint") Object.assign(body, { repainting_start: Number(start), repainting_end: Number(end) });
  box.textContent = "…";
  const response = await fetch("/v1/music/generate", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify(body),
  });
  if (!response.ok) { box.textContent = (await readError(response)).message; return; }
  const payload = await response.json();
  const created = payload.data && payload.data.job_id ? payload.data : payload;  // the ACE-Step API answers bare
  box.dataset.job = created.job_id;
  await followEdit(created.job_id, box);
}

function editControls(song) {
  const tasks = (site.data && site.data.limits.edit_tasks) || [];
  if (!tasks.length || !(song.items || []).length) return null;
  const duration = Math.round(song.items[0].duration || 10);
  const select = el("select", { class: "edit-task" });
  for (const task of tasks) select.append(el("option", { value: task, text: EDIT_TEXT[task] || task }));
  const start = el("input", { type: "number", class: "edit-start", min: "0", step: "1", value: "0", title: "start s" });
  const end = el("input", { type: "number", class: "edit-end", min: "1", step: "1", value: String(Math.max(1, Math.floor(duration / 2))), title: "end s" });
  const box = el("div", { class: "edit-result muted" });
  const go = el("button", { type: "button", class: "secondary edit-go", text: "编辑 Edit" });
  const sync = () => { start.hidden = end.hidden = select.value !== "repaint"; };
  select.addEventListener("change", sync);
  sync();
  go.addEventListener("click", () => startEdit(song, select.value, start.value, end.value, box).catch((e) => { box.textContent = e.message; }));
  return el("div", { class: "library-edit" }, select, start, end, go, box);
}

function songEntry(song) {
  const li = el("li", { class: "library-item", "data-intent": song.intent_id });
  if (song.cover_url) li.append(el("img", { class: "library-cover", src: withToken(song.cover_url), alt: "cover" }));
  const body = el("div", { class: "library-body" });
  const when = new Date(song.created_at * 1000).toLocaleString();
  body.append(el("h4", { text: song.title || song.request.theme || song.intent_id }),
    el("div", { class: "muted", text: `${when} · ${song.status} · ${song.request.model || ""}` }));
  for (const warning of song.warnings || []) body.append(el("p", { class: "warning", text: `⚠ ${warning}` }));
  for (const item of song.items || []) {
    const src = withToken(item.audio_url);
    const name = `${safeName(song.title)}-${item.index + 1}.${item.format === "wav32" ? "wav" : item.format}`;
    const row = el("div", { class: "library-track" });
    const reuse = el("button", { type: "button", class: "link reuse-seed", "data-seed": String(item.seed),
      text: `↻ seed ${item.seed}` });
    const audio = el("audio", { controls: "", preload: "none", src, class: "player" });
    row.append(audio, el("a", { href: src, download: name, class: "download", text: `⬇ ${name}` }), reuse);
    body.append(row, stemsControl(song.intent_id, item.index));  // stems.js: the Stems button
    const karaoke = karaokeView(audio, item, song.lyrics, { hidden: true });  // shown once the player plays
    if (karaoke) body.append(karaoke);
  }
  if (song.lyrics) {
    const details = el("details", { class: "library-lyrics" });
    details.append(el("summary", { text: "歌词 lyrics" }), el("pre", { class: "lyrics", text: song.lyrics }));
    body.append(details);
  }
  const again = el("button", { type: "button", class: "secondary", text: "再来一首(同参数同种子) same settings + seed" });
  again.addEventListener("click", () => reuseRequest(song.request, song.metadata?.seeds?.[0] ?? null));
  const vary = el("button", { type: "button", class: "link", text: "换个种子 variation (new seed)" });
  vary.addEventListener("click", () => reuseRequest(song.request, null));
  body.append(el("div", { class: "library-actions" }, again, vary));
  const edit = editControls(song);
  if (edit) body.append(edit);
  li.append(body);
  return li;
}

async function loadLibrary() {
  const list = $("library-list");
  const empty = $("library-empty");
  if (!state.token) {
    list.replaceChildren();
    empty.hidden = false;
    return;
  }
  const response = await fetch("/v1/song/list?status=succeeded&limit=20", { headers: authHeaders() });
  if (response.status === 401) { await readError(response); return; }  // a stale token: shown as signed out
  if (!response.ok) return;
  const data = (await response.json()).data;
  list.replaceChildren(...data.songs.map(songEntry));
  list.dataset.total = String(data.total);
  empty.hidden = data.songs.length > 0;
  if (!data.songs.length) empty.replaceChildren(bilingual("还没有歌曲:在上面生成第一首。", "No songs yet: make the first one above."));
  library.loaded = true;
}

async function loadSamples() {
  const list = $("samples-list");
  const response = await fetch("/v1/site/samples");
  if (!response.ok) return;
  const samples = (await response.json()).data.samples;
  list.replaceChildren(...samples.map((s) => el("li", { class: "library-item" },
    el("div", { class: "library-body" }, el("h4", { text: s.title }),
      el("div", { class: "muted", text: s.caption || "" }),
      el("audio", { controls: "", preload: "none", src: s.url, class: "player" }),
      el("a", { href: s.url, download: s.file, class: "download", text: `⬇ ${s.file}` })))));
  if (!samples.length) list.replaceChildren(el("li", { class: "idle" }, bilingual("运维尚未提供示例(TRITONE_SAMPLES_DIR)。", "No samples configured (TRITONE_SAMPLES_DIR).")));
}

function showView(view) {
  library.view = view;
  for (const tab of document.querySelectorAll("#library-tabs [role=tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === view));
  }
  $("library-list").hidden = view !== "mine";
  $("library-empty").hidden = view !== "mine" || $("library-list").children.length > 0;
  $("samples-list").hidden = view !== "samples";
  (view === "mine" ? loadLibrary() : loadSamples()).catch(() => {});
}

function initLibrary() {
  for (const tab of document.querySelectorAll("#library-tabs [role=tab]")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  $("library-refresh").addEventListener("click", () => showView(library.view));
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".reuse-seed");
    if (button) reuseSeed(button.dataset.seed);
  });
  document.addEventListener("tritone:auth", () => loadLibrary().catch(() => {}));
  document.addEventListener("tritone:site", () => loadLibrary().catch(() => {}));
  // A song that just finished belongs in the library.
  new MutationObserver(() => {
    if (document.body.dataset.songStatus === "succeeded") loadLibrary().catch(() => {});
  }).observe(document.body, { attributes: true, attributeFilter: ["data-song-status"] });
  loadLibrary().catch(() => {});
}

document.addEventListener("DOMContentLoaded", initLibrary);
