// Karaoke: an audio item's lyrics as lines that follow its <audio> player — the current line (and word, where the
// item has word timing) is highlighted, kept in view inside the lyrics box, and a click on a line seeks to it.
// The timing is what the APIs return per item when the request set align_lyrics:
//   aligned_lyrics  [{word, start_s, end_s, success, p_align}]  (Suno's shape; CJK: one character per word)
//   lrc             "[mm:ss.xx]line" per sung line, section tags as "# [Verse]" comment lines
// Lines come from the lrc (section tags become headers) and their words from aligned_lyrics, matched in order with
// the server's own word rule (model_repository/acestep15/alignment.py); without lrc the lines come from the lyrics
// text and start at their first word. An item with neither (instrumental, not timed) gets no view at all.
"use strict";

const KARAOKE_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";
const KARAOKE_WORD = new RegExp(`[${KARAOKE_CJK}]|[^\\s${KARAOKE_CJK}]+`, "gu");
const KARAOKE_TAG_LINE = /^\s*\[[^\]]*\]\s*$/;
const KARAOKE_BRACKETS = /\[[^\]]*\]/g;
const LRC_TIMED = /^\[(\d+):(\d+(?:\.\d+)?)\](.*)$/;

// "[01:02.50]text" -> {start: 62.5, text}; "# [Verse]" -> {tag: "Verse"}; anything else (LRC metadata such as
// "[ar:...]", blank lines) is left out.
function parseLrc(lrc) {
  const entries = [];
  for (const raw of String(lrc || "").split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#")) {
      const tag = line.slice(1).trim().replace(/^\[|\]$/g, "");
      if (tag) entries.push({ tag });
      continue;
    }
    const timed = LRC_TIMED.exec(line);
    if (timed && timed[3].trim()) {
      entries.push({ start: Number(timed[1]) * 60 + Number(timed[2]), text: timed[3].trim() });
    }
  }
  return entries;
}

// The lyrics text as entries without times (the lines get them from their words).
function linesFromLyrics(lyrics) {
  const entries = [];
  for (const raw of String(lyrics || "").split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    if (KARAOKE_TAG_LINE.test(line)) entries.push({ tag: line.replace(/^\[|\]$/g, "") });
    else entries.push({ start: null, text: line });
  }
  return entries;
}

// One line's text as pieces: {text} between words, {text, word} for a word matched to aligned_lyrics[word].
// ``cursor.next`` walks the aligned words in order; words the server did not time (cut off lines) are skipped.
function linePieces(text, words, cursor) {
  const pieces = [];
  const sung = text.replace(KARAOKE_BRACKETS, (m) => " ".repeat(m.length));
  let at = 0;
  for (const match of sung.matchAll(KARAOKE_WORD)) {
    if (match.index > at) pieces.push({ text: text.slice(at, match.index) });
    let k = cursor.next;
    while (k < words.length && words[k].word !== match[0]) k += 1;
    if (k < words.length) {
      pieces.push({ text: match[0], word: k });
      cursor.next = k + 1;
    } else {
      pieces.push({ text: match[0] });
    }
    at = match.index + match[0].length;
  }
  if (at < text.length) pieces.push({ text: text.slice(at) });
  return pieces;
}

// timing: an item's {lrc, aligned_lyrics}; lyrics: the song's lyrics (used only when there is no lrc).
// -> {lines: [{tag} | {start, end, text, pieces}], words} or null when nothing is timed.
function karaokeModel(timing, lyrics) {
  const words = Array.isArray(timing && timing.aligned_lyrics) ? timing.aligned_lyrics : [];
  let entries = parseLrc(timing && timing.lrc);
  if (!entries.some((e) => e.text) && words.length) entries = linesFromLyrics(lyrics);
  const cursor = { next: 0 };
  const lines = [];
  for (const entry of entries) {
    if (entry.tag !== undefined) { lines.push(entry); continue; }
    const pieces = linePieces(entry.text, words, cursor);
    const first = pieces.find((p) => p.word !== undefined);
    const start = entry.start ?? (first ? Number(words[first.word].start_s) : null);
    if (start === null) continue;
    lines.push({ start, end: Infinity, text: entry.text, pieces });
  }
  const sung = lines.filter((l) => l.tag === undefined);
  if (!sung.length) return null;
  for (let i = 0; i + 1 < sung.length; i += 1) sung[i].end = sung[i + 1].start;
  while (lines.length && lines[lines.length - 1].tag !== undefined) lines.pop();  // a trailing tag times nothing
  return { lines, words };
}

function karaokeHead(timing) {
  const head = el("div", { class: "karaoke-head" }, i18nText("karaoke_title"));
  if (typeof timing.alignment_score === "number") {
    head.append(el("span", { class: "muted karaoke-score" }, i18nText("karaoke_score"),
      ` ${timing.alignment_score.toFixed(2)}`));
  }
  head.append(el("span", { class: "muted karaoke-hint" }, i18nText("karaoke_hint")));
  return head;
}

// The view of one item bound to its player; null (nothing to show) when the item has no timing.
// options.hidden: stay hidden until the player first plays (the library's long list).
function karaokeView(audio, timing, lyrics, options = {}) {
  const model = timing ? karaokeModel(timing, lyrics) : null;
  if (!model) return null;
  const list = el("ol", { class: "karaoke", "aria-label": "karaoke" });
  const rows = [];  // [{node, line, words: [{node, start, end}]}] for the sung lines, in order
  for (const line of model.lines) {
    if (line.tag !== undefined) { list.append(el("li", { class: "karaoke-tag", text: line.tag })); continue; }
    const node = el("li", { class: "karaoke-line", tabindex: "0", "data-start": String(line.start) });
    const words = [];
    for (const piece of line.pieces) {
      if (piece.word === undefined) { node.append(piece.text); continue; }
      const w = model.words[piece.word];
      const span = el("span", { class: "karaoke-word", text: piece.text, "data-index": String(piece.word),
        "data-start": String(w.start_s), "data-end": String(w.end_s) });
      if (w.success === false) span.classList.add("unsure");
      node.append(span);
      words.push({ node: span, start: Number(w.start_s), end: Number(w.end_s) });
    }
    list.append(node);
    rows.push({ node, line, words });
  }
  const box = el("div", { class: "karaoke-box" }, karaokeHead(timing), list);
  let current = -1;
  let scrolled = -1;  // the line the box was last scrolled to (it can only scroll once it is on the page and shown)

  const scrollTo = (node) => {
    const top = node.offsetTop - (list.clientHeight - node.offsetHeight) / 2;
    list.scrollTo({ top: Math.max(0, top), behavior: "smooth" });
  };
  const update = () => {
    const t = audio.currentTime;
    let index = -1;
    for (let i = 0; i < rows.length && rows[i].line.start <= t; i += 1) index = i;
    if (index >= 0 && t >= rows[index].line.end) index = -1;
    if (index !== current) {
      rows.forEach((row, i) => {
        row.node.classList.toggle("current", i === index);
        row.node.classList.toggle("past", index >= 0 && i < index);
      });
      if (current >= 0 && rows[current]) {
        for (const w of rows[current].words) w.node.classList.remove("current", "sung");
      }
      current = index;
      list.dataset.line = String(index);
    }
    if (index >= 0 && index !== scrolled && list.clientHeight > 0) {
      scrolled = index;
      scrollTo(rows[index].node);
    }
    // The word being sung: the last one of the line whose [start, end) holds t (neighbours can share a patch).
    const words = index >= 0 ? rows[index].words : [];
    let on = null;
    for (const w of words) if (w.start <= t && t < w.end) on = w;
    for (const w of words) {
      w.node.classList.toggle("current", w === on);
      w.node.classList.toggle("sung", w !== on && w.end <= t);
    }
    list.dataset.word = on ? on.node.dataset.index : "";
  };

  let frame = 0;
  const loop = () => {
    update();
    frame = audio.paused || audio.ended || !box.isConnected ? 0 : requestAnimationFrame(loop);
  };
  audio.addEventListener("timeupdate", update);
  audio.addEventListener("seeked", update);
  audio.addEventListener("play", () => {
    box.hidden = false;
    if (!frame) frame = requestAnimationFrame(loop);
  });
  const seek = (node) => {
    const row = rows.find((r) => r.node === node);
    if (!row) return;
    audio.currentTime = row.line.start;
    update();
  };
  list.addEventListener("click", (event) => seek(event.target.closest(".karaoke-line")));
  list.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    seek(event.target.closest(".karaoke-line"));
  });
  box.hidden = Boolean(options.hidden);
  update();
  return box;
}
