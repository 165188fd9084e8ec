"""The Chinese site (``make book-zh-fast``: ``_build/fast/site/zh``) as a reader sees it, beside what
tests/test_site_browser.py checks on every site (``make browser-zh`` runs both files with ``NORMBOOK_SITE`` set to
the Chinese site; this file reuses that one's server, browser and page loader).

Fails on: a page without its language link, a language link that does not lead to the same page in the other
edition (and back), from ``file://`` too; a root page that does not send a reader to their language; raw MyST
markup, a backtick or a ``$`` left in the text of a page (a translation that broke a role, a code span or a
formula); a glued value rendered empty; a ``_toc.yml`` part caption left in English although the catalog
translates it; a Chinese word the search does not find (jieba missing).

Skips when ``NORMBOOK_SITE`` is not a translated edition (``<html lang>`` other than English).
"""
from __future__ import annotations

import json
import re
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from test_site_browser import SITE, _load, _pages, browser, server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import i18n  # noqa: E402

LANG_RE = re.compile(r'<html lang="([^"]+)"')


def _language() -> str | None:
    page = SITE / "intro.html"
    if not page.is_file():
        return None
    m = LANG_RE.search(page.read_text(encoding="utf-8"))
    return m.group(1).replace("-", "_") if m else None


LANG = _language()
pytestmark = pytest.mark.skipif(LANG in (None, "en"), reason=f"{SITE} is not a translated edition of the site")


def _language_links(page: Path) -> list[str]:
    html = page.read_text(encoding="utf-8")
    return re.findall(r'<a class="[^"]*normbook-language-link[^"]*" href="([^"]+)"', html)


def _target(page: Path, href: str) -> Path:
    return (page.parent / urllib.parse.unquote(urllib.parse.urlsplit(href).path)).resolve()


def test_every_page_links_to_itself_in_the_other_edition():
    problems = []
    (link,) = i18n.language_links(LANG)
    other_root = (SITE / link["prefix"]).resolve()
    pages = [p for p in _pages() if p.name != "index.html"] + [SITE / "genindex.html", SITE / "search.html"]
    for page in pages:
        rel = page.relative_to(SITE)
        links = _language_links(page)
        if len(links) != 1:
            problems.append(f"{rel}: {len(links)} language links")
            continue
        other = _target(page, links[0])
        if not other.is_file():
            problems.append(f"{rel}: language link {links[0]} leads nowhere")
            continue
        if other != other_root / rel:
            problems.append(f"{rel}: language link leads to {other}, not {other_root / rel}")
            continue
        back = _language_links(other)
        if not back or _target(other, back[0]) != page.resolve():
            problems.append(f"{rel}: {other} does not link back")
    assert not problems, "\n".join(problems)


def test_root_page_sends_readers_to_their_language(browser):  # noqa: F811
    root = SITE.parent / "index.html"
    assert root.is_file(), f"no root page at {root}"
    english = (SITE.parent / i18n.root_doc()).with_suffix(".html").resolve()
    translated = (SITE / i18n.root_doc()).with_suffix(".html").resolve()
    seen = {}
    for languages in (["zh-CN", "zh"], ["en-US", "en"], ["de-DE"]):
        script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
            "source": f"Object.defineProperty(navigator, 'languages', {{get: () => {languages!r}}});"
                      "try { localStorage.removeItem('normbook-language'); } catch (e) {}"})
        try:
            browser.get(root.as_uri())
            time.sleep(0.5)
            seen[languages[0]] = Path(urllib.parse.unquote(urllib.parse.urlsplit(browser.current_url).path))
        finally:
            browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    assert seen["zh-CN"].resolve() == translated, seen
    assert seen["en-US"].resolve() == english, seen
    assert seen["de-DE"].resolve() == english, seen


def test_language_link_works_from_file_url(browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    page = SITE / "chapters" / "01_why_normalize.html"
    if not page.is_file():
        page = SITE / "intro.html"
    browser.get(page.as_uri())
    browser.execute_script("arguments[0].click()",
                           browser.find_element(By.CSS_SELECTOR, "a.normbook-language-link"))
    time.sleep(1.0)
    there = Path(urllib.parse.unquote(urllib.parse.urlsplit(browser.current_url).path))
    assert there.name == page.name and there.resolve() != page.resolve() and there.is_file(), browser.current_url
    assert browser.execute_script("return document.documentElement.lang") != LANG.replace("_", "-")
    browser.execute_script("arguments[0].click()",
                           browser.find_element(By.CSS_SELECTOR, "a.normbook-language-link"))
    time.sleep(1.0)
    back = Path(urllib.parse.unquote(urllib.parse.urlsplit(browser.current_url).path))
    assert back.resolve() == page.resolve(), browser.current_url


RAW_JS = r"""
const out = [];
const article = document.querySelector('.bd-article') || document.body;
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {acceptNode(n) {
  const p = n.parentElement;
  if (!p || p.closest('pre, code, kbd, script, style, textarea, .highlight, mjx-container, .cell_output, .output'))
    return NodeFilter.FILTER_REJECT;
  return NodeFilter.FILTER_ACCEPT;
}});
const raw = /\{(glue|cite|numref|ref|doc|eq|term|math)[:}]|`|(^|[^\\])\$|:::|\]\(/;
let n;
while ((n = walker.nextNode())) {
  if (raw.test(n.textContent)) out.push('raw markup: ' + n.textContent.trim().slice(0, 100));
}
article.querySelectorAll('.pasted-text').forEach((e) => {
  if (!e.textContent.trim()) out.push('empty glued value');
});
return out;
"""


def test_no_raw_markup_or_empty_glue(server, browser):  # noqa: F811
    problems = []
    for page in _pages():
        rel = page.relative_to(SITE).as_posix()
        _load(browser, f"{server}/{rel}")
        problems += [f"{rel}: {p}" for p in browser.execute_script(RAW_JS)]
    assert not problems, "\n".join(problems)


def test_part_captions_translated():
    catalog = i18n.page_catalog(i18n.root_doc(), LANG)
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [p["caption"] for p in toc.get("parts", []) if p.get("caption")]
    html = (SITE / "intro.html").read_text(encoding="utf-8")
    shown = re.findall(r'<span class="caption-text">([^<]*)</span>', html)
    assert len(shown) == len(captions), shown
    for caption, text in zip(captions, shown):
        assert text == catalog.get(caption, caption), (caption, text)


def test_chinese_search(server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    text = (SITE / "searchindex.js").read_text(encoding="utf-8")
    terms = json.loads(text[text.index("(") + 1:text.rindex(")")])["terms"]
    words = [w for w in ("规范化", "标准化", "批量") if w in terms]
    assert words, "no Chinese term in the search index (is jieba installed?)"
    _load(browser, f"{server}/search.html?q={urllib.parse.quote(words[0])}")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results li, #search-results p.search-summary"))
    assert browser.find_elements(By.CSS_SELECTOR, "#search-results li"), f"the search for {words[0]} found nothing"
