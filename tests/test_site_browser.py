"""The built site as a reader's browser shows it: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium over the site served on 127.0.0.1.

Fails on: a JavaScript console error (a resource that does not load included), a formula left untypeset or a
MathJax error, an image that does not load, an internal link or anchor that does not resolve, a solution dropdown
that does not open, a page wider than a 400 px phone screen, a search snippet with download-button text or raw TeX.

The site: ``NORMBOOK_SITE`` (default ``_build/fast/_build/html``, what ``make book-fast`` builds). Without Chromium
the test skips locally, saying how to install it; with ``CI`` set it fails instead.
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("NORMBOOK_SITE", ROOT / "_build" / "fast" / "_build" / "html"))
if not SITE.is_absolute():
    SITE = ROOT / SITE
IN_CI = bool(os.environ.get("CI"))
INSTALL = "install them with `sudo apt-get install chromium chromium-driver` (Debian/Ubuntu; `.ci/run` does this)"
PHONE_WIDTH = 400
SKIP_PAGES = {"genindex.html", "search.html"}  # generated indexes; the search page is tested on its own


def _unavailable(why: str, how: str = INSTALL):
    if IN_CI:
        pytest.fail(f"browser test cannot run in CI: {why}")
    pytest.skip(f"browser test skipped: {why}; {how}")


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name) or (name if os.path.isfile(name) else None)
        if path:
            return path
    return None


# --------------------------------------------------------------------------- static checks (no browser)

class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.srcs.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "icon", "preload"):
            self.srcs.append(a["href"])


@functools.lru_cache(maxsize=None)
def _parse(page: Path) -> _Links:
    p = _Links()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def _pages() -> list[Path]:
    return sorted(p for p in SITE.rglob("*.html")
                  if "_static" not in p.parts and "_sources" not in p.parts and p.name not in SKIP_PAGES)


def _site_or_skip():
    if not (SITE / "intro.html").is_file():
        _unavailable(f"no built site at {SITE}", "build it with `make book-fast` (or run `make browser`)")


def test_internal_links_and_anchors_resolve():
    _site_or_skip()
    broken = []
    for page in _pages() + [SITE / "genindex.html"]:
        parsed = _parse(page)
        for url in parsed.hrefs + parsed.srcs:
            u = urllib.parse.urlsplit(url)
            if u.scheme or u.netloc or url.startswith(("mailto:", "javascript:")):
                continue
            target = page if not u.path else (page.parent / urllib.parse.unquote(u.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(SITE)}: {url} (no such file)")
                continue
            if u.fragment and target.suffix == ".html" and u.fragment not in _parse(target).ids:
                broken.append(f"{page.relative_to(SITE)}: {url} (no anchor #{u.fragment})")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


# --------------------------------------------------------------------------- the browser

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    _site_or_skip()
    handler = functools.partial(_Quiet, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    _site_or_skip()
    chromium = _find("chromium", "chromium-browser", "/usr/bin/chromium", "google-chrome",
                     "google-chrome-stable")
    driver_path = _find("chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
    if not chromium or not driver_path:
        _unavailable("chromium or chromedriver not found")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed", "it is in requirements.txt: run `make setup`")
    profile = tempfile.mkdtemp(prefix="normbook-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _load(drv, url: str) -> list[str]:
    """Open url, wait for MathJax, return the console errors."""
    drv.get_log("browser")  # drop what earlier pages logged
    drv.get(url)
    drv.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const wait = (n) => {
          if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
            MathJax.startup.promise.then(() => done(true), () => done(false));
          } else if (n > 100 || (document.readyState === 'complete' && !document.querySelector('.math'))) {
            done(false);
          } else { setTimeout(() => wait(n + 1), 100); }
        };
        wait(0);""")
    # scroll through the page so that lazily loaded images load
    drv.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    time.sleep(0.2)
    return [f"{e['level']}: {e['message']}" for e in drv.get_log("browser") if e["level"] == "SEVERE"]


UNTYPESET_JS = r"""
const out = [];
document.querySelectorAll('mjx-merror, merror').forEach((e) => out.push('MathJax error: ' + e.textContent));
const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
if (doc && doc.getMathItemsWithin) {
  // \text{running\_mean} shows its backslash: inside \text{} an underscore is written unescaped
  for (const item of doc.getMathItemsWithin(document.body)) {
    if (/\\text\{[^}]*\\_/.test(item.math)) out.push('escaped underscore in \\text{}: ' + item.math.slice(0, 80));
  }
}
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode(n) {
  const p = n.parentElement;
  if (!p || p.closest('pre, code, script, style, textarea, .highlight, mjx-container, .cell_output'))
    return NodeFilter.FILTER_REJECT;
  return NodeFilter.FILTER_ACCEPT;
}});
const raw = /\\\(|\\\)|\\\[|\\\]|\$\$|\\(begin|frac|mathbf|text|gamma|beta|sigma|mu)\b/;
let n;
while ((n = walker.nextNode())) {
  if (raw.test(n.textContent)) out.push('raw TeX: ' + n.textContent.trim().slice(0, 80));
}
return out;
"""

IMAGES_JS = """
return Array.from(document.images)
  .filter((img) => !(img.complete && img.naturalWidth > 0))
  .map((img) => img.getAttribute('src'));
"""

OVERFLOW_JS = r"""
const w = document.documentElement.clientWidth;
const out = [];
if (document.documentElement.scrollWidth > w + 1) {
  const culprits = [];
  for (const el of document.querySelectorAll('.bd-main *')) {
    const r = el.getBoundingClientRect();
    if (r.right <= w + 1 || r.width === 0) continue;
    let p = el.parentElement, scrolls = false;
    while (p) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) { scrolls = true; break; }
      p = p.parentElement;
    }
    if (!scrolls) culprits.push(el.tagName.toLowerCase() + ' "' + (el.textContent || '').trim().slice(0, 50) + '"');
  }
  out.push('page width ' + document.documentElement.scrollWidth + ' (' + culprits.slice(-3).join('; ') + ')');
}
return out;
"""


def test_pages_in_chromium(server, browser):
    pages = _pages()
    assert pages, f"no pages in {SITE}"
    problems = []
    for page in pages:
        rel = page.relative_to(SITE).as_posix()
        for err in _load(browser, f"{server}/{rel}"):
            problems.append(f"{rel}: console {err}")
        for what in browser.execute_script(UNTYPESET_JS):
            problems.append(f"{rel}: {what}")
        for src in browser.execute_script(IMAGES_JS):
            problems.append(f"{rel}: image does not load: {src}")
    assert not problems, "\n".join(problems)


def test_solution_dropdowns_open(server, browser):
    from selenium.webdriver.common.by import By

    opened = 0
    problems = []
    for page in _pages():
        rel = page.relative_to(SITE).as_posix()
        if "dropdown" not in page.read_text(encoding="utf-8"):
            continue
        _load(browser, f"{server}/{rel}")
        dropdowns = browser.find_elements(By.CSS_SELECTOR, ".admonition.dropdown, details.dropdown")
        for dd in dropdowns[:3]:
            body = dd.find_elements(By.CSS_SELECTOR, "p:not(.admonition-title), .highlight, ul, ol")
            if not body:
                continue
            if body[0].is_displayed():
                problems.append(f"{rel}: a solution is visible before it is opened")
                continue
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", dd)
            toggle = dd.find_elements(By.CSS_SELECTOR, "button.toggle-button, summary, .admonition-title")
            if not toggle:
                problems.append(f"{rel}: dropdown without a toggle")
                continue
            browser.execute_script("arguments[0].click()", toggle[0])
            time.sleep(0.3)
            if body[0].is_displayed():
                opened += 1
            else:
                problems.append(f"{rel}: a solution dropdown does not open")
    assert not problems, "\n".join(problems)
    if any("Solution" in p.read_text(encoding="utf-8") for p in _pages()):
        assert opened > 0, "no solution dropdown found to open"


def test_no_horizontal_overflow_on_a_phone(server, browser):
    problems = []
    browser.set_window_size(PHONE_WIDTH, 900)
    try:
        for page in _pages():
            rel = page.relative_to(SITE).as_posix()
            _load(browser, f"{server}/{rel}")
            width = browser.execute_script("return document.documentElement.clientWidth")
            for what in browser.execute_script(OVERFLOW_JS):
                problems.append(f"{rel}: {what} > viewport {width}")
    finally:
        browser.set_window_size(1280, 900)
    assert not problems, "\n".join(problems)


def test_search_snippets(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    errors = _load(browser, f"{server}/search.html?q=normalization")
    WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#search-results p.search-summary, #search-results li"))
    time.sleep(1.0)
    errors += [f"{e['level']}: {e['message']}" for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    snippets = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#search-results p.search-summary")]
    assert not errors, "\n".join(errors)
    assert snippets, "the search returned no snippets"
    bad = [s for s in snippets if ".pdf" in s or ".ipynb" in s or "\\(" in s or "\\frac" in s]
    assert not bad, "search snippets with button text or raw TeX:\n" + "\n".join(bad)
