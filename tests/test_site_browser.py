"""The built site as a reader's browser shows it: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium over the site served on 127.0.0.1.

Fails on: a JavaScript console error (a resource that does not load included), a formula left untypeset or a
MathJax error, an image that does not load, an internal link or anchor that does not resolve, a solution dropdown
that does not open, a page wider than a 400 px phone screen, a search snippet with download-button text or raw TeX,
an accessibility violation that axe-core rates critical or serious, and a stderr output block on a page (library
warnings are silenced at their source or in the set-up cell, tools/setup_cell.py).

Robust on a busy machine: every page is visited once (the checks share the visit), with explicit page-load and
script timeouts; MathJax, images, axe and dropdowns are awaited by bounded polling with short scripts (no long
asynchronous script); a page whose visit times out or finds a problem is visited once more before it fails.

The site: ``NORMBOOK_SITE`` (default ``_build/fast/_build/html``, what ``make book-fast`` builds). axe-core:
``NORMBOOK_AXE`` (default ``.node/node_modules/axe-core/axe.min.js``, which ``make browser`` installs with npm).
Without Chromium (or axe-core) the browser tests skip locally, saying how to install them; with ``CI`` set they
fail instead. The static checks (links, stderr blocks) need neither: ``NORMBOOK_SITE=_build/html`` checks the full
build with them (``make book-check`` runs the whole test on it).
"""
from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
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
AXE = Path(os.environ.get("NORMBOOK_AXE", ROOT / ".node" / "node_modules" / "axe-core" / "axe.min.js"))
AXE_FAIL = ("critical", "serious")  # axe's impact levels that fail the test
# Timeouts (seconds), generous for a machine whose cores are shared: nothing waits this long on a quiet one.
PAGE_LOAD_TIMEOUT = 180   # the driver's limit for one page load
SCRIPT_TIMEOUT = 120      # the driver's limit for one script: each is short, but it waits for the page's main thread
WAIT = 300                # bounded polls: MathJax typeset, images loaded, axe finished, search results shown
POLL = 0.2                # seconds between two polls


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


def test_no_stderr_output_on_a_page():
    """A cell's stderr (a library's warning, a log line) is bookkeeping, not the book: myst-nb renders it as a
    ``div.output.stderr`` block."""
    _site_or_skip()
    shown = [page.relative_to(SITE).as_posix() for page in _pages()
             if re.search(r'class="[^"]*\boutput stderr\b', page.read_text(encoding="utf-8"))]
    assert not shown, "pages showing a stderr output block: " + ", ".join(shown)


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


def _start_chromium(chromium: str, driver_path: str, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    drv.set_script_timeout(SCRIPT_TIMEOUT)
    return drv


@pytest.fixture(scope="module")
def browser():
    _site_or_skip()
    chromium = _find("chromium", "chromium-browser", "/usr/bin/chromium", "google-chrome",
                     "google-chrome-stable")
    driver_path = _find("chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
    if not chromium or not driver_path:
        _unavailable("chromium or chromedriver not found")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed", "it is in requirements.txt: run `make setup`")
    from selenium.common.exceptions import WebDriverException

    profile = tempfile.mkdtemp(prefix="normbook-chromium-")
    try:
        drv = _start_chromium(chromium, driver_path, profile)
    except WebDriverException:  # a driver that did not come up in time on a busy machine: once more
        drv = _start_chromium(chromium, driver_path, profile)
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


class PageTimeout(Exception):
    """A bounded wait on a page ran out."""


def _poll(drv, script: str, done, what: str, timeout: float = WAIT):
    """Run a short synchronous script every POLL seconds until ``done(result)``; its last result, or PageTimeout.

    A script that times out waited for the page's main thread (MathJax or axe at work on a busy machine): the poll
    goes on until the deadline."""
    from selenium.common.exceptions import TimeoutException

    deadline = time.monotonic() + timeout
    result = "(no answer: the page was busy)"
    while True:
        try:
            result = drv.execute_script(script)
        except TimeoutException:
            pass
        else:
            if done(result):
                return result
        if time.monotonic() > deadline:
            raise PageTimeout(f"{what} after {timeout:.0f} s (last state: {result!r})")
        time.sleep(POLL)


MATH_STATE_JS = """
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  if (!window.__normbookMath) {
    window.__normbookMath = 'typesetting';
    MathJax.startup.promise.then(() => { window.__normbookMath = 'done'; },
                                 (e) => { window.__normbookMath = 'failed: ' + e; });
  }
  return window.__normbookMath;
}
if (document.readyState === 'complete' && !document.querySelector('.math')) return 'no math';
return 'loading';
"""


def _load(drv, url: str) -> list[str]:
    """Open url and wait (bounded polling) until MathJax has typeset the page; return the console errors so far."""
    drv.get_log("browser")  # drop what earlier pages logged
    drv.get(url)
    state = _poll(drv, MATH_STATE_JS, lambda s: s in ("done", "no math") or s.startswith("failed"),
                  "MathJax did not finish typesetting")
    errors = [] if state in ("done", "no math") else [f"MathJax: {state}"]
    # scroll through the page so that lazily loaded images load
    drv.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    return errors + _console_errors(drv)


def _console_errors(drv) -> list[str]:
    return [f"console {e['level']}: {e['message']}" for e in drv.get_log("browser") if e["level"] == "SEVERE"]


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
  out.push('page width ' + document.documentElement.scrollWidth + ' (' + culprits.slice(-3).join('; ') + ')'
           + ' > viewport ' + w);
}
return out;
"""

# axe-core runs asynchronously and starts with seconds of synchronous work on a long page: start it in a task of
# its own (this script returns at once), then poll for its result (a list of violations, or an error string).
AXE_START_JS = """
window.__normbookAxe = null;
setTimeout(() => axe.run(document, {resultTypes: ['violations']}).then(
  (r) => { window.__normbookAxe = r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5), count: v.nodes.length})); },
  (e) => { window.__normbookAxe = 'axe failed: ' + e; }), 0);
"""

DROPDOWNS_JS = """
return Array.from(document.querySelectorAll('.admonition.dropdown, details.dropdown')).slice(0, 3);
"""


@dataclass
class PageReport:
    """What one visit of a page found, by check."""
    problems: list = field(default_factory=list)      # console errors, untypeset math, images, timeouts
    overflow: list = field(default_factory=list)      # wider than a phone
    dropdowns: list = field(default_factory=list)     # solutions visible before opening, or not opening
    opened: int = 0                                   # solution dropdowns that opened
    axe: list = field(default_factory=list)           # critical and serious axe violations
    attempts: int = 1

    def failed(self) -> bool:
        return bool(self.problems or self.overflow or self.dropdowns or self.axe)


def _axe_source() -> str | None:
    return AXE.read_text(encoding="utf-8") if AXE.is_file() else None


def _check_dropdowns(drv, report: PageReport) -> None:
    from selenium.webdriver.common.by import By

    for dd in drv.execute_script(DROPDOWNS_JS):
        body = dd.find_elements(By.CSS_SELECTOR, "p:not(.admonition-title), .highlight, ul, ol")
        if not body:
            continue
        if body[0].is_displayed():
            report.dropdowns.append("a solution is visible before it is opened")
            continue
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", dd)
        toggle = dd.find_elements(By.CSS_SELECTOR, "button.toggle-button, summary, .admonition-title")
        if not toggle:
            report.dropdowns.append("dropdown without a toggle")
            continue
        drv.execute_script("arguments[0].click()", toggle[0])
        deadline = time.monotonic() + 10
        while not body[0].is_displayed() and time.monotonic() < deadline:
            time.sleep(POLL)
        if body[0].is_displayed():
            report.opened += 1
        else:
            report.dropdowns.append("a solution dropdown does not open")


def _check_page(drv, url: str, axe_source: str | None) -> PageReport:
    report = PageReport()
    report.problems += _load(drv, url)
    report.problems += drv.execute_script(UNTYPESET_JS)
    try:
        _poll(drv, IMAGES_JS, lambda missing: not missing, "images still loading", timeout=30)
    except PageTimeout:
        pass
    report.problems += [f"image does not load: {src}" for src in drv.execute_script(IMAGES_JS)]
    if axe_source is not None:
        drv.execute_script(axe_source)
        drv.execute_script(AXE_START_JS)
        result = _poll(drv, "return window.__normbookAxe", lambda r: r is not None, "axe did not finish")
        if isinstance(result, str):
            report.axe.append(result)
        else:
            report.axe += [f"axe {v['impact']} {v['id']} ({v['count']}x): {v['help']}; {', '.join(v['nodes'])}"
                           for v in result if v["impact"] in AXE_FAIL]
    _check_dropdowns(drv, report)
    # the same page on a phone: the layout follows the window at once (CSS media queries)
    drv.set_window_size(PHONE_WIDTH, 900)
    try:
        report.overflow += drv.execute_script(OVERFLOW_JS)
    finally:
        drv.set_window_size(1280, 900)
    report.problems += _console_errors(drv)
    return report


def _visit(drv, url: str, axe_source: str | None) -> PageReport:
    """Check one page; a visit that times out or finds a problem is repeated once, and the second one counts."""
    from selenium.common.exceptions import TimeoutException, WebDriverException

    for attempt in (1, 2):
        try:
            report = _check_page(drv, url, axe_source)
        except (PageTimeout, TimeoutException, WebDriverException) as exc:
            report = PageReport(problems=[f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"])
            drv.set_window_size(1280, 900)
        report.attempts = attempt
        if not report.failed():
            break
    return report


@pytest.fixture(scope="module")
def visits(server, browser) -> dict:
    """Every page visited once (twice if the first visit failed): page -> PageReport."""
    pages = _pages()
    assert pages, f"no pages in {SITE}"
    axe_source = _axe_source()
    return {page.relative_to(SITE).as_posix(): _visit(browser, f"{server}/{page.relative_to(SITE).as_posix()}",
                                                      axe_source)
            for page in pages}


def _listed(visits: dict, what: str) -> list[str]:
    return [f"{rel}: {item}" + (" (on both visits)" if report.attempts == 2 else "")
            for rel, report in visits.items() for item in getattr(report, what)]


def test_pages_in_chromium(visits):
    problems = _listed(visits, "problems")
    assert not problems, "\n".join(problems)


def test_solution_dropdowns_open(visits):
    problems = _listed(visits, "dropdowns")
    assert not problems, "\n".join(problems)
    if any("Solution" in p.read_text(encoding="utf-8") for p in _pages()):
        assert sum(r.opened for r in visits.values()) > 0, "no solution dropdown found to open"


def test_no_horizontal_overflow_on_a_phone(visits):
    problems = _listed(visits, "overflow")
    assert not problems, "\n".join(problems)


def test_accessibility_axe(visits):
    """axe-core (the engine of Lighthouse's and Chrome's accessibility audits) on every page: no violation rated
    critical or serious (moderate and minor ones are reported by axe but do not fail)."""
    if _axe_source() is None:
        _unavailable(f"axe-core not found at {AXE}",
                     "install it with `make axe` (npm install axe-core into .node/, git-ignored)")
    problems = _listed(visits, "axe")
    assert not problems, "\n".join(problems)


def test_search_snippets(server, browser):
    from selenium.webdriver.common.by import By

    errors = []
    for attempt in (1, 2):
        try:
            errors = _load(browser, f"{server}/search.html?q=normalization")
            _poll(browser, "return document.querySelectorAll("
                           "'#search-results p.search-summary, #search-results li').length",
                  lambda n: n > 0, "no search results shown")
            break
        except PageTimeout:
            if attempt == 2:
                raise
    time.sleep(1.0)  # snippets are filled in after the result list appears
    errors += _console_errors(browser)
    snippets = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#search-results p.search-summary")]
    assert not errors, "\n".join(errors)
    assert snippets, "the search returned no snippets"
    bad = [s for s in snippets if ".pdf" in s or ".ipynb" in s or "\\(" in s or "\\frac" in s]
    assert not bad, "search snippets with button text or raw TeX:\n" + "\n".join(bad)
