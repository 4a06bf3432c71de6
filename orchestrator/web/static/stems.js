// The "Stems" button on each finished song (the current result and the library): POST /v1/stems with the song's
// job id and item index (one of the caller's own results), the job followed on GET /v1/jobs/{id} with its progress,
// then a link to the zip and one to each stem's 48 kHz WAV (signed links, so plain <a download>).
"use strict";

const STEM_SETS = { 2: "2 人声+伴奏 vocals + instrumental", 4: "4 鼓/贝斯/其他/人声 drums, bass, other, vocals",
  6: "6 +吉他/钢琴 guitar, piano" };

function stemsLinks(result) {
  const links = el("div", { class: "stems-links" });
  links.append(el("a", { href: result.zip_url, download: result.zip_file, class: "download stems-zip",
    text: `⬇ ${result.zip_file}` }));
  for (const stem of result.items) {
    links.append(el("a", { href: stem.url, download: stem.file, class: "download stem", "data-stem": stem.name,
      text: `⬇ ${stem.file}` }));
  }
  return links;
}

async function followStems(jobId, box) {
  for (;;) {
    const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}`, { headers: authHeaders() });
    if (!response.ok) { box.textContent = (await readError(response)).message; return; }
    const job = await response.json();
    box.dataset.status = job.status;
    if (job.status === "succeeded") { box.replaceChildren(stemsLinks(job.result)); return; }
    if (["failed", "cancelled"].includes(job.status)) { box.textContent = `${job.status}: ${job.error || ""}`; return; }
    const p = job.progress || {};
    box.textContent = p.total ? `${job.status} ${p.stage || ""} ${p.step}/${p.total}` : job.status;
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

async function startStems(jobId, index, stems, box) {
  box.textContent = "…";
  const response = await fetch("/v1/stems", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ job_id: jobId, item: index, stems: Number(stems) }),
  });
  if (!response.ok) { box.textContent = (await readError(response)).message; return; }
  const created = await response.json();
  box.dataset.job = created.job_id;
  await followStems(created.job_id, box);
}

// The control for item ``index`` of the finished job ``jobId``.
function stemsControl(jobId, index) {
  const select = el("select", { class: "stems-set", title: "stems" });
  for (const [value, label] of Object.entries(STEM_SETS)) select.append(el("option", { value, text: label }));
  select.value = "4";
  const box = el("div", { class: "stems-result muted" });
  const go = el("button", { type: "button", class: "secondary stems-go", text: "分轨 Stems" });
  go.addEventListener("click", () => startStems(jobId, index, select.value, box).catch((e) => { box.textContent = e.message; }));
  return el("div", { class: "stems" }, select, go, box);
}
