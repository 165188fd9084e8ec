"""The whole book as one PDF: a single-page HTML build printed by the system Chromium once MathJax has typeset.

    python tools/make_pdf.py [--fast | --stored] [--student] [--out _build/pdf/normbook.pdf]

1. ``jupyter-book build . --builder singlehtml`` into ``_build/pdf`` (the executions come from the same cache as
   ``make book``, so after a ``make book`` nothing is re-executed; ``--fast`` uses the FAST cache instead;
   ``--stored`` executes nothing and prints the outputs stored in the chapters). ``--student`` builds from a
   copy of the sources whose chapters have their solutions and rubrics removed (tools/student_edition.py), into
   ``_build/pdf-student``: the solution-free PDF of ``make student``.
2. The page is served on 127.0.0.1 and opened in headless Chromium (Debian's ``chromium`` and
   ``chromium-driver``, through Selenium); the script waits for MathJax, then lays the book out for print:
   each chapter on a new page under "Chapter N"; a contents list with page numbers; code lines that wrap keep
   their indentation (continuation lines are indented further); tables wider than the page get a smaller font and
   wrapped cells; an empty run-time table is filled from the run times stored in the executed chapters; the
   solution dropdowns are open (the full book) or gone (``--student``).
3. It prints to A4 with page numbers (Chrome DevTools ``Page.printToPDF``) in passes: after each pass,
   a page left more than a third blank because the figure that follows did not fit gets that figure scaled down
   to fit (never below 55 % of its height); then the contents list gets the pages the headings landed on, and the
   final pass is printed. ``pdftoppm``/``pdftotext``/``pdfimages`` (poppler-utils) read the passes.
4. The page count is printed, with the pages still more than a third blank before a figure (if any);
   ``pdftoppm -r 50 -png <pdf> page`` renders pages to check by eye.

``--lang zh_CN`` prints the Chinese edition (tools/i18n.py builds its single page, from the same executions) into
``_build/pdf-zh/normbook-zh.pdf``; Chromium needs a CJK font (Debian: ``fonts-wqy-microhei``, which ``.ci/run``
installs), otherwise the Chinese text prints as boxes.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

PAGE_MM = (210.0, 297.0)
MARGIN_MM = (18.0, 16.0, 18.0, 16.0)  # top, right, bottom, left
PX_PER_MM = 96 / 25.4
BODY_WIDTH_PX = round((PAGE_MM[0] - MARGIN_MM[1] - MARGIN_MM[3]) * PX_PER_MM)
BLANK_SHARE = 1 / 3      # a page whose bottom third (or more) is empty before a figure is "half blank"
MIN_SCALE = 0.55         # a figure is scaled down to fit the gap before it, but never below this share

PRINT_CSS = """
@page { size: A4; margin: 18mm 16mm 18mm 16mm; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article-items, .bd-footer,
.bd-footer-article, .prev-next-area, .headerlink, .toggle-button, #pst-back-to-top, .bd-search,
.search-button-field, .skip-link { display: none !important; }
.bd-main, .bd-content, .bd-article-container, .bd-page-width { max-width: 100% !important; width: 100% !important; }
.bd-container__inner { display: block !important; }
html, body, .bd-page-width, .bd-container, .bd-main, .bd-content, .bd-article-container, .bd-article {
  min-width: 0 !important; max-width: 100% !important; width: auto !important;
  margin-left: 0 !important; margin-right: 0 !important; padding-left: 0 !important; padding-right: 0 !important; }
div.cell, div.cell_input, div.highlight, div.cell_output, div.output { max-width: 100% !important; }
body { font-size: 10.5pt; }
pre, .highlight pre { white-space: pre-wrap; word-break: break-word; font-size: 8.5pt; }
pre .pdf-line { display: block; white-space: pre-wrap; overflow-wrap: anywhere; break-inside: avoid; }
pre, div.highlight, div.cell_input, div.cell_output, div.output { break-inside: auto !important; }
/* tables: wrap cells, break across pages between rows, never scroll */
.pst-scrollable-table-container, .table-wrapper, div.output_html, div.output.text_html, .cell_output, .output_area {
  overflow: visible !important; max-width: 100% !important; }
table, .pst-scrollable-table-container, .table-wrapper { break-inside: auto !important; }
table { max-width: 100% !important; }
table th, table td { white-space: normal !important; overflow-wrap: anywhere; word-break: normal; }
tr { break-inside: avoid; }
thead { display: table-header-group; }
figure, img, .math, mjx-container[display="true"] { break-inside: avoid; }
img { max-height: 175mm; width: auto; max-width: 100%; object-fit: contain; }
h1, h2, h3, h4 { break-after: avoid; }
h2 + *, h3 + * { break-before: avoid; }
.pdf-chapter-start { break-before: page; }
.pdf-chapter-label { display: block; font-size: 12pt; font-weight: 600; color: #555; letter-spacing: 0.05em;
  margin: 0 0 0.2em 0; text-transform: uppercase; }
section > section#references, section#references { break-before: page; }
.toggle-hidden, .admonition.dropdown > :not(.admonition-title) { display: block !important; visibility: visible !important; }
#pdf-contents { break-after: page; }
#pdf-contents ol { list-style: none; padding-left: 0; margin: 0.2em 0 0.6em 0; }
#pdf-contents li { display: flex; align-items: baseline; margin: 0.12em 0; }
#pdf-contents li.pdf-toc-section { padding-left: 2.2em; font-size: 9.5pt; color: #333; }
#pdf-contents li.pdf-toc-part { font-weight: 600; margin-top: 0.7em; }
#pdf-contents .pdf-toc-title { flex: 0 1 auto; }
#pdf-contents .pdf-toc-dots { flex: 1 1 auto; border-bottom: 1px dotted #999; margin: 0 0.4em; min-width: 1em;
  transform: translateY(-0.25em); }
#pdf-contents .pdf-toc-page { flex: 0 0 2.2em; text-align: right; font-variant-numeric: tabular-nums; }
.pdf-marker { position: absolute; left: 0; font-size: 4px; line-height: 4px; color: #fff; white-space: nowrap; }
* { box-shadow: none !important; text-shadow: none !important; }
table.pdf-measure th, table.pdf-measure td { overflow-wrap: normal !important; }
#jb-print-toc { display: none !important; }
"""

# The book laid out for print, in the browser (one argument: the run-time rows for an empty run-time table).
PREPARE_JS = r"""
const rows = arguments[0], student = arguments[1];
const article = document.querySelector('article.bd-article') || document.body;
const markers = [];
let next = 0;
const mark = (el) => { const s = document.createElement('span'); s.className = 'pdf-marker';
  s.textContent = 'QZXPDF' + next + 'XZQ'; el.prepend(s); markers.push(next); return next++; };

// 1. chapters: a new page and "Chapter N" above the title; every document starts on a new page
const docs = Array.from(document.querySelectorAll('span[id^="document-"]'));
const entries = [];  // the contents list: {kind, title, marker}
const parts = {'notation': 'Front matter', 'syllabus': 'Front matter', 'references': 'Back matter'};
let lastPart = null;
for (const span of docs) {
  const doc = span.id.slice('document-'.length);
  const section = span.nextElementSibling;
  if (!section) continue;
  const heading = section.querySelector('h1, h2');
  if (!heading) continue;
  section.classList.add('pdf-chapter-start');
  const m = doc.match(/^chapters\/(\d\d)_/);
  const part = m ? 'Chapters' : (parts[doc] || null);
  if (part && part !== lastPart) { entries.push({kind: 'part', title: part}); lastPart = part; }
  let title = heading.textContent.replace(/#$/, '').trim();
  if (m) {
    const label = document.createElement('span');
    label.className = 'pdf-chapter-label';
    label.textContent = 'Chapter ' + parseInt(m[1], 10);
    heading.prepend(label);
    title = parseInt(m[1], 10) + '. ' + title;
  }
  entries.push({kind: 'doc', title: title, marker: mark(heading)});
  if (m) {
    for (const sub of section.querySelectorAll(':scope > section > h3')) {
      entries.push({kind: 'section', title: sub.textContent.replace(/#$/, '').trim(), marker: mark(sub)});
    }
  }
}

// 2. the contents list (page numbers filled in later), in place of the theme's print contents
const toc = document.createElement('div');
toc.id = 'pdf-contents';
toc.innerHTML = '<h2>Contents</h2>';
let list = document.createElement('ol');
toc.appendChild(list);
for (const e of entries) {
  const li = document.createElement('li');
  li.className = 'pdf-toc-' + e.kind;
  if (e.kind === 'part') { li.textContent = e.title; list.appendChild(li); continue; }
  li.innerHTML = '<span class="pdf-toc-title"></span><span class="pdf-toc-dots"></span>' +
                 '<span class="pdf-toc-page" data-marker="' + e.marker + '">000</span>';
  li.querySelector('.pdf-toc-title').textContent = e.title;
  list.appendChild(li);
}
const title = article.querySelector('h1');
if (title && title.parentElement) title.parentElement.insertBefore(toc, title.nextSibling);
const firstToctree = article.querySelector('.toctree-wrapper');

// 3. code: one block per line, continuation lines indented past the line's own indentation
for (const pre of article.querySelectorAll('pre')) {
  if (pre.closest('mjx-container')) continue;
  const lines = [document.createElement('span')];
  const walk = (node, wrap) => {
    if (node.nodeType === 3) {
      node.textContent.split('\n').forEach((part, i) => {
        if (i > 0) lines.push(document.createElement('span'));
        if (part) lines[lines.length - 1].appendChild(wrap(document.createTextNode(part)));
      });
    } else if (node.nodeType === 1) {
      const el = node;
      for (const child of Array.from(el.childNodes)) {
        walk(child, (t) => { const c = el.cloneNode(false); c.appendChild(t); return wrap(c); });
      }
    }
  };
  for (const child of Array.from(pre.childNodes)) walk(child, (t) => t);
  while (lines.length && !lines[lines.length - 1].textContent.length) lines.pop();
  pre.textContent = '';
  for (const line of lines) {
    const text = line.textContent.replace(/\t/g, '    ');
    const indent = text.length - text.replace(/^ +/, '').length;
    line.className = 'pdf-line';
    line.style.paddingLeft = (indent + 4) + 'ch';
    line.style.textIndent = '-' + (indent + 4) + 'ch';
    if (!text.length) line.textContent = '\u200b';
    pre.appendChild(line);
  }
}

// 4. an empty run-time table (a build that executed nothing) gets the run times stored in the chapters
for (const table of article.querySelectorAll('#run-times-of-this-build table, table')) {
  const head = table.querySelector('thead');
  const body = table.querySelector('tbody');
  if (!head || !body || body.rows.length || !/Run Time/.test(head.textContent)) continue;
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const v of [r.document, r.modified, r.method, r.seconds, r.status]) {
      const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  const note = document.createElement('p');
  note.textContent = 'This copy was printed from the outputs stored in the chapters; the run times are those of ' +
                     'the executions that stored them (first cell started to last cell finished).';
  table.parentElement.after(note);
}

// 5. solutions: open (the full book) or removed (the student edition's sources have none left)
document.querySelectorAll('.toggle-hidden').forEach((e) => e.classList.remove('toggle-hidden'));
document.querySelectorAll('details').forEach((d) => d.open = true);
document.querySelectorAll('img[loading="lazy"]').forEach((i) => i.loading = 'eager');
return {markers: markers.length, entries: entries.length, toctree: !!firstToctree};
"""

# Wide tables get a smaller font until they fit without breaking words (run under print emulation, at the
# printed width); what still does not fit wraps anywhere (the print CSS).
FIT_TABLES_JS = r"""
const width = arguments[0];
let fitted = 0;
for (const table of document.querySelectorAll('article table')) {
  table.classList.add('pdf-measure');
  const room = Math.min(width, table.parentElement.clientWidth || width);
  let size = parseFloat(getComputedStyle(table).fontSize);
  const start = size;
  while (table.scrollWidth > room + 1 && size > 8) {
    size -= 0.5;
    table.style.fontSize = size + 'px';
  }
  table.classList.remove('pdf-measure');
  if (size < start) fitted++;
}
return fitted;
"""

MEASURE_JS = r"""
// the visible images in document order, with the height (CSS px, print layout) of the image and of its block
const out = [];
for (const img of document.querySelectorAll('article img')) {
  const style = getComputedStyle(img);
  if (style.display === 'none' || style.visibility === 'hidden' || img.closest('.bd-header')) continue;
  const block = img.closest('figure') || img;
  out.push({img: img.getBoundingClientRect().height, block: block.getBoundingClientRect().height,
            maxHeight: img.style.maxHeight || ''});
}
return out;
"""

SHRINK_JS = r"""
const plan = arguments[0];
const imgs = Array.from(document.querySelectorAll('article img')).filter((img) => {
  const s = getComputedStyle(img); return s.display !== 'none' && s.visibility !== 'hidden' && !img.closest('.bd-header');
});
for (const [k, mm] of Object.entries(plan)) {
  const img = imgs[parseInt(k, 10)];
  if (img) { img.style.maxHeight = mm + 'mm'; img.style.width = 'auto'; img.style.maxWidth = '100%'; }
}
return imgs.length;
"""

FINISH_JS = r"""
const pages = arguments[0];
document.querySelectorAll('#pdf-contents .pdf-toc-page').forEach((el) => {
  const p = pages[el.dataset.marker];
  el.textContent = p ? String(p) : '';
});
document.querySelectorAll('.pdf-marker').forEach((m) => m.remove());
"""


def chromium_paths():
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if not chromium or not driver:
        raise SystemExit("make pdf needs chromium and chromedriver: sudo apt-get install chromium chromium-driver")
    return chromium, driver


def poppler() -> None:
    missing = [t for t in ("pdftoppm", "pdftotext", "pdfimages") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"make pdf needs {', '.join(missing)}: sudo apt-get install poppler-utils")


# --------------------------------------------------------------------------- the sources and the HTML build

def student_sources(dest: Path, root: Path = ROOT) -> Path:
    """A copy of the book's sources whose chapters have no solutions or rubrics left (links to everything else)."""
    import student_edition

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name in ("chapters", "_build", ".git", ".venv", "data") or entry.name.startswith("."):
            continue
        (dest / entry.name).symlink_to(entry)
    (dest / "chapters").mkdir()
    for path in sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")):
        nb, _ = student_edition.student(nbformat.read(path, as_version=4))
        nbformat.write(nb, dest / "chapters" / path.name)
    return dest


def build_singlehtml(fast: bool, source: Path = ROOT, out: Path | None = None) -> Path:
    env = dict(os.environ)
    if fast:
        env["NORMBOOK_FAST"] = "1"
    else:
        env.pop("NORMBOOK_FAST", None)
    # reuse the executions of `make book` (or of the fast build) instead of executing every chapter again
    env["NORMBOOK_CACHE_DIR"] = str(ROOT / "_build" / ("fast/_build/.jupyter_cache" if fast else ".jupyter_cache"))
    out = out or ROOT / "_build" / ("pdf-fast" if fast else "pdf")
    subprocess.run([str(ROOT / ".venv" / "bin" / "jupyter-book"), "build", str(source), "--builder", "singlehtml",
                    "--path-output", str(out), "-n", "--keep-going"], check=True, env=env)
    return out / "_build" / "singlehtml"


def stored_run_times(root: Path = ROOT) -> list:
    """Rows for the run-time table from the executions stored in the chapters (cell timestamps)."""
    rows = []
    for path in sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        stamps = [c.metadata.get("execution", {}) for c in nb.cells if c.cell_type == "code"]
        starts = [s.get("iopub.execute_input") for s in stamps if s.get("iopub.execute_input")]
        ends = [s.get("shell.execute_reply") for s in stamps if s.get("shell.execute_reply")]
        if not starts or not ends:
            continue
        t0 = datetime.datetime.fromisoformat(min(starts).replace("Z", "+00:00"))
        t1 = datetime.datetime.fromisoformat(max(ends).replace("Z", "+00:00"))
        rows.append({"document": f"chapters/{path.stem}", "modified": t0.strftime("%Y-%m-%d %H:%M"),
                     "method": "stored", "seconds": f"{(t1 - t0).total_seconds():.1f}", "status": "ok"})
    return rows


# --------------------------------------------------------------------------- reading a printed pass

def marker_pages(pdf: Path) -> dict:
    """marker -> page (1-based) from the text of each page."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    pages = {}
    for number, page in enumerate(text.split("\f"), 1):
        for m in re.finditer(r"QZXPDF(\d+)XZQ", page):
            pages.setdefault(int(m.group(1)), number)
    return pages


def page_fill(pdf: Path, pages, dpi: int = 30) -> dict:
    """``{page: share of the text area left blank at the bottom}`` (0: full, 1: empty) for the given pages
    (1-based); only those are rendered (a run of consecutive pages in one ``pdftoppm`` call)."""
    from PIL import Image
    import numpy as np

    wanted = sorted(set(pages))
    runs = []
    for page in wanted:
        if runs and page == runs[-1][1] + 1:
            runs[-1][1] = page
        else:
            runs.append([page, page])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for first, last in runs:
            subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", "-f", str(first), "-l", str(last),
                            str(pdf), f"{tmp}/p"], check=True)
        for png in Path(tmp).glob("p-*.png"):
            a = np.asarray(Image.open(png).convert("L"))
            h = a.shape[0]
            top, bottom = int(h * MARGIN_MM[0] / PAGE_MM[1]), int(h * (1 - MARGIN_MM[2] / PAGE_MM[1]))
            body = a[top:bottom]
            ink = (body < 248).any(axis=1).nonzero()[0]  # light backgrounds (code cells) count as filled
            out[int(png.stem.rsplit("-", 1)[1])] = 1.0 - (ink.max() + 1) / len(body) if len(ink) else 1.0
    return out


def image_pages(pdf: Path) -> list:
    """The page of each image drawn, in order (pdfimages -list)."""
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    out = []
    for line in listing.splitlines()[2:]:
        cols = line.split()
        # the book's figures are PNG (Flate, "image"); Chromium's rasterized decorations are JPEG
        if len(cols) > 8 and cols[0].isdigit() and cols[2] == "image" and cols[8] != "jpeg":
            out.append(int(cols[0]))
    return out


def first_text_top(pdf: Path, page: int) -> float:
    """Where (share of the page height) the first text of a page starts; 1.0 when it has none."""
    xml = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(pdf), "-"],
                         capture_output=True, text=True, check=True).stdout
    height = re.search(r'<page width="[\d.]+" height="([\d.]+)"', xml)
    tops = [float(m) for m in re.findall(r'<word xMin="[\d.]+" yMin="([\d.]+)"', xml)]
    if not height or not tops:
        return 1.0
    return min(tops) / float(height.group(1))


def half_blank_before_figures(pdf: Path, fill: dict, images: list) -> list:
    """[(page, blank share, index of the image that opens the next page)]: pages left at least BLANK_SHARE blank
    because the next page opens with a figure (an image above its first text). ``fill``: ``page_fill`` of (at
    least) the pages before the images' pages."""
    out = []
    first_image = {}
    for k, page in enumerate(images):
        first_image.setdefault(page, k)
    for page, blank in sorted(fill.items()):
        if blank < BLANK_SHARE or page + 1 not in first_image:
            continue
        top_text = first_text_top(pdf, page + 1)
        if top_text > MARGIN_MM[0] / PAGE_MM[1] + 0.08:  # the next page opens with something that is not text
            out.append((page, blank, first_image[page + 1]))
    return out


# --------------------------------------------------------------------------- printing


def build_singlehtml_translated(lang: str, fast: bool) -> Path:
    """The single page of a translated edition, through tools/i18n.py (Jupyter Book's command line cannot set the
    language), into ``_build/pdf-<language>[-fast]/singlehtml``."""
    sys.path.insert(0, str(ROOT / "tools"))
    import i18n

    short = lang.split("_")[0]
    out = ROOT / "_build" / (f"pdf-{short}-fast" if fast else f"pdf-{short}") / "singlehtml"
    rc = i18n.sphinx_build("singlehtml", out, lang=lang, fast=fast, strict=False)
    if rc:
        raise SystemExit(f"the {lang} single-page build failed ({rc})")
    return out


def has_cjk_font() -> bool:
    try:
        res = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return True  # cannot tell
    return bool(res.stdout.strip())


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _print(drv) -> bytes:
    footer = ('<div style="font-size:8pt;width:100%;text-align:center;color:#555">'
              '<span class="pageNumber"></span></div>')
    result = drv.execute_cdp_cmd("Page.printToPDF", {
        "printBackground": True, "preferCSSPageSize": True, "displayHeaderFooter": True,
        "headerTemplate": "<div></div>", "footerTemplate": footer,
    })
    return base64.b64decode(result["data"])


def print_pdf(site: Path, target: Path, student: bool = False, max_passes: int = 3) -> dict:
    """Lay the single page out for print and print it in passes (see the module docstring); returns a report."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chromium_paths()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="normbook-pdf-")
    work = Path(tempfile.mkdtemp(prefix="normbook-pdf-pass-"))
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1100,1400"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    report = {"passes": 0, "scaled": {}, "tables_fitted": 0}
    try:
        drv.set_page_load_timeout(300)
        drv.set_script_timeout(300)
        page = "intro.html" if (site / "intro.html").exists() else "index.html"
        drv.get(f"http://127.0.0.1:{httpd.server_address[1]}/{page}")
        drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
              ? MathJax.startup.promise.then(() => done(true)) : setTimeout(wait, 200);
            wait();""")
        drv.execute_script("""
            const style = document.createElement('style');
            style.textContent = arguments[0];
            document.head.appendChild(style);""", PRINT_CSS)
        report["layout"] = drv.execute_script(PREPARE_JS, stored_run_times(), student)
        drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            Promise.all(Array.from(document.images).map((img) => img.complete ? null :
              new Promise((r) => { img.onload = img.onerror = r; }))).then(() => setTimeout(done, 500));""")
        # measure and fit at the printed width, with print styles
        drv.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": BODY_WIDTH_PX, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        time.sleep(0.5)
        report["tables_fitted"] = drv.execute_script(FIT_TABLES_JS, BODY_WIDTH_PX)
        scaled: dict = {}
        original: list = []
        for n in range(1, max_passes + 1):
            drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": BODY_WIDTH_PX, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
            sizes = drv.execute_script(MEASURE_JS)
            original = original or [s["img"] for s in sizes]
            drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            pdf = work / f"pass{n}.pdf"
            pdf.write_bytes(_print(drv))
            report["passes"] = n
            images = image_pages(pdf)
            fill = page_fill(pdf, [page - 1 for page in images if page > 1])  # the pages a figure may follow
            gaps = half_blank_before_figures(pdf, fill, images) if len(images) == len(sizes) else []
            report["half_blank"] = [(p, round(b, 2)) for p, b, _ in gaps]
            report["image_mismatch"] = len(images) != len(sizes)
            body_mm = PAGE_MM[1] - MARGIN_MM[0] - MARGIN_MM[2]
            plan = {}
            for _, blank, k in gaps:
                img_mm, block_mm = sizes[k]["img"] / PX_PER_MM, sizes[k]["block"] / PX_PER_MM
                room = blank * body_mm - (block_mm - img_mm) - 6
                if 0 < room < img_mm and room >= MIN_SCALE * original[k] / PX_PER_MM:
                    plan[k] = round(room, 1)
            if not plan or n == max_passes:
                break
            scaled.update(plan)
            drv.execute_script(SHRINK_JS, {str(k): v for k, v in plan.items()})
        report["scaled"] = scaled
        pages = marker_pages(pdf)
        report["contents"] = len(pages)
        drv.execute_script(FINISH_JS, {str(k): v for k, v in pages.items()})
        data = _print(drv)
    finally:
        drv.quit()
        httpd.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return report


def page_count(pdf: Path) -> int:
    data = pdf.read_bytes()
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", data, re.S)]
    return max(counts) if counts else len(re.findall(rb"/Type\s*/Page\b", data))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="use the FAST-mode executions")
    ap.add_argument("--stored", action="store_true",
                    help="execute nothing: use the outputs stored in the chapter notebooks (executed in full mode)")
    ap.add_argument("--student", action="store_true", help="the solution-free variant (no solutions, no rubrics)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--optional", action="store_true",
                    help="without chromium or poppler-utils, say so and stop without an error (not in CI)")
    ap.add_argument("--lang", default="en", help="a translated edition (tools/i18n.py): zh_CN")
    args = ap.parse_args(argv)
    try:
        chromium_paths()
        poppler()
    except SystemExit as missing:
        if args.optional and not os.environ.get("CI"):
            print(f"PDF skipped: {missing}")
            return 0
        raise
    if args.stored:
        os.environ["NORMBOOK_EXECUTE"] = "off"
    if args.lang != "en":
        if args.lang.startswith("zh") and not has_cjk_font():
            raise SystemExit("no Chinese font: sudo apt-get install fonts-wqy-microhei (.ci/run installs it)")
        site = build_singlehtml_translated(args.lang, args.fast)
        target = args.out or site.parent / f"normbook-{args.lang.split('_')[0]}.pdf"
        print_pdf(site, target)
        print(f"{target}: {page_count(target)} pages")
        return 0
    if args.student:
        source = student_sources(ROOT / "_build" / "pdf-student-src")
        site = build_singlehtml(args.fast, source, ROOT / "_build" / "pdf-student")
    else:
        site = build_singlehtml(args.fast)
    target = args.out or site.parent.parent / ("normbook-student.pdf" if args.student else "normbook.pdf")
    report = print_pdf(site, target, student=args.student)
    print(f"{target}: {page_count(target)} pages; {report['passes']} layout pass(es); "
          f"{len(report['scaled'])} figure(s) scaled to fit the page before them; "
          f"{report['tables_fitted']} wide table(s) set smaller; contents with {report['contents']} page numbers")
    if report.get("half_blank"):
        print(f"pages still at least a third blank before a figure: {report['half_blank']}")
    if report.get("image_mismatch"):
        print("(the images of the PDF could not be matched to the page's: no figure was scaled)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
