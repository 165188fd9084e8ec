"""The whole book as one PDF: a single-page HTML build printed by the system Chromium once MathJax has typeset.

    python tools/make_pdf.py [--fast] [--out _build/pdf/normbook.pdf]

1. ``jupyter-book build . --builder singlehtml`` into ``_build/pdf`` (the executions come from the same cache as
   ``make book``, so after a ``make book`` nothing is re-executed; ``--fast`` uses the FAST cache instead).
2. The page is served on 127.0.0.1 and opened in headless Chromium (Debian's ``chromium`` and
   ``chromium-driver``, through Selenium); the script waits for MathJax, opens the solution dropdowns, and
   prints to A4 with page numbers (Chrome DevTools ``Page.printToPDF``).
3. The page count is printed; ``pdftoppm -r 50 -png <pdf> page`` renders pages to check by eye.

``--lang zh_CN`` prints the Chinese edition (tools/i18n.py builds its single page, from the same executions) into
``_build/pdf-zh/normbook-zh.pdf``; Chromium needs a CJK font (Debian: ``fonts-wqy-microhei``, which ``.ci/run``
installs), otherwise the Chinese text prints as boxes.
"""
from __future__ import annotations

import argparse
import base64
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

ROOT = Path(__file__).resolve().parent.parent

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
figure, img, table, .math, mjx-container[display="true"] { break-inside: avoid; }
h1, h2, h3 { break-after: avoid; }
section > section#references, section#references { break-before: page; }
.toggle-hidden, .admonition.dropdown > :not(.admonition-title) { display: block !important; visibility: visible !important; }
"""


def chromium_paths():
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if not chromium or not driver:
        raise SystemExit("make pdf needs chromium and chromedriver: sudo apt-get install chromium chromium-driver")
    return chromium, driver


def build_singlehtml(fast: bool) -> Path:
    env = dict(os.environ)
    if fast:
        env["NORMBOOK_FAST"] = "1"
    else:
        env.pop("NORMBOOK_FAST", None)
    # reuse the executions of `make book` (or of the fast build) instead of executing every chapter again
    env["NORMBOOK_CACHE_DIR"] = str(ROOT / "_build" / ("fast/_build/.jupyter_cache" if fast else ".jupyter_cache"))
    out = ROOT / "_build" / ("pdf-fast" if fast else "pdf")
    subprocess.run([str(ROOT / ".venv" / "bin" / "jupyter-book"), "build", str(ROOT), "--builder", "singlehtml",
                    "--path-output", str(out), "-n", "--keep-going"], check=True, env=env)
    return out / "_build" / "singlehtml"


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


def print_pdf(site: Path, target: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = chromium_paths()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="normbook-pdf-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--window-size=1100,1400"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        drv.set_page_load_timeout(300)
        drv.set_script_timeout(300)
        drv.get(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const wait = () => (window.MathJax && MathJax.startup && MathJax.startup.promise)
              ? MathJax.startup.promise.then(() => done(true)) : setTimeout(wait, 200);
            wait();""")
        drv.execute_script("""
            const style = document.createElement('style');
            style.textContent = arguments[0];
            document.head.appendChild(style);
            document.querySelectorAll('.toggle-hidden').forEach((e) => e.classList.remove('toggle-hidden'));
            document.querySelectorAll('details').forEach((d) => d.open = true);
            document.querySelectorAll('img[loading="lazy"]').forEach((i) => i.loading = 'eager');""", PRINT_CSS)
        drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            Promise.all(Array.from(document.images).map((img) => img.complete ? null :
              new Promise((r) => { img.onload = img.onerror = r; }))).then(() => setTimeout(done, 500));""")
        time.sleep(0.5)
        footer = ('<div style="font-size:8pt;width:100%;text-align:center;color:#555">'
                  '<span class="pageNumber"></span></div>')
        result = drv.execute_cdp_cmd("Page.printToPDF", {
            "printBackground": True, "preferCSSPageSize": True, "displayHeaderFooter": True,
            "headerTemplate": "<div></div>", "footerTemplate": footer,
        })
    finally:
        drv.quit()
        httpd.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(result["data"]))


def page_count(pdf: Path) -> int:
    data = pdf.read_bytes()
    counts = [int(n) for n in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", data, re.S)]
    return max(counts) if counts else len(re.findall(rb"/Type\s*/Page\b", data))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="use the FAST-mode executions")
    ap.add_argument("--stored", action="store_true",
                    help="execute nothing: use the outputs stored in the chapter notebooks (executed in full mode)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--lang", default="en", help="a translated edition (tools/i18n.py): zh_CN")
    args = ap.parse_args(argv)
    if args.stored:
        os.environ["NORMBOOK_EXECUTE"] = "off"
    if args.lang == "en":
        site = build_singlehtml(args.fast)
        target = args.out or site.parent.parent / "normbook.pdf"
    else:
        if args.lang.startswith("zh") and not has_cjk_font():
            raise SystemExit("no Chinese font: sudo apt-get install fonts-wqy-microhei (.ci/run installs it)")
        site = build_singlehtml_translated(args.lang, args.fast)
        target = args.out or site.parent / f"normbook-{args.lang.split('_')[0]}.pdf"
    print_pdf(site, target)
    print(f"{target}: {page_count(target)} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
