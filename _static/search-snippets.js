// Search result snippets: the page's text without the download buttons and navigation, and with formulas as
// plain symbols instead of raw TeX. Replaces Sphinx's Search.htmlToText once searchtools.js has loaded.
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || !Search.htmlToText) return;
  const texToText = (tex) => tex
    .replace(/^\\\(|\\\)$|^\\\[|\\\]$/g, "")
    .replace(/\\(?:text|mathrm|mathbf|operatorname)\{([^}]*)\}/g, "$1")
    .replace(/\\([A-Za-z]+)/g, "$1")
    .replace(/[{}_^]/g, "")
    .replace(/\s+/g, " ").trim();
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    const drop = [".headerlink", "script", "style", ".bd-header-article", ".header-article-items",
                  ".prev-next-area", ".bd-sidebar-secondary", ".bd-footer-content", "div.math"];
    for (const q of drop) doc.querySelectorAll(q).forEach((el) => el.remove());
    doc.querySelectorAll("span.math").forEach((el) => { el.textContent = texToText(el.textContent); });
    const main = doc.querySelector('[role="main"]');
    if (!main) return "";
    if (anchor) {
      const part = main.querySelector(anchor);
      if (part) return part.textContent;
    }
    return main.textContent;
  };
});
