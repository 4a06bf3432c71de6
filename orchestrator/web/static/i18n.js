// The page is bilingual like seed 000: Chinese text with its English beside it in <span class="en">. The switch in
// the hero shows both, or one language only (zh / en); the choice is remembered per browser (localStorage).
// Chinese text next to an English span is wrapped in <span class="zh"> here, so either language can be hidden.
"use strict";

const LANG_KEY = "tritone.lang";
const LANGS = ["both", "zh", "en"];

function wrapChinese(root = document.body) {
  const parents = new Set([...root.querySelectorAll(".en")].map((node) => node.parentElement).filter(Boolean));
  for (const parent of parents) {
    if (parent.closest("option, textarea, pre")) continue;
    for (const child of [...parent.childNodes]) {
      if (child.nodeType === Node.TEXT_NODE && child.textContent.trim()) {
        const span = document.createElement("span");
        span.className = "zh";
        span.textContent = child.textContent;
        child.replaceWith(span);
      }
    }
  }
}

function setLanguage(lang) {
  const chosen = LANGS.includes(lang) ? lang : "both";
  document.body.dataset.lang = chosen;
  document.documentElement.lang = chosen === "en" ? "en" : "zh";
  localStorage.setItem(LANG_KEY, chosen);
  for (const button of document.querySelectorAll("#lang-switch button")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === chosen));
  }
}

function bilingual(zh, en, tag = "span") {
  // A zh/en pair as the page writes it (used by site.js and library.js for generated content).
  const node = document.createElement(tag);
  const a = document.createElement("span");
  a.className = "zh";
  a.textContent = zh;
  const b = document.createElement("span");
  b.className = "en";
  b.textContent = en;
  node.append(a, " ", b);
  return node;
}

// Strings that scripts add to the page (zh, en), shown through bilingual() like the page's own text.
const I18N_TEXT = {
  karaoke_title: ["逐字歌词", "Karaoke"],
  karaoke_score: ["对齐分", "alignment"],
  karaoke_hint: ["点击一行跳到该处", "click a line to jump there"],
};

function i18nText(key, tag = "span") {
  const [zh, en] = I18N_TEXT[key] || [key, key];
  return bilingual(zh, en, tag);
}

document.addEventListener("DOMContentLoaded", () => {
  wrapChinese();
  setLanguage(localStorage.getItem(LANG_KEY) || "both");
  for (const button of document.querySelectorAll("#lang-switch button")) {
    button.addEventListener("click", () => setLanguage(button.dataset.lang));
  }
});
