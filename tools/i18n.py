"""The translated editions: gettext catalogs, the bilingual site, progress.

    python tools/i18n.py update            # _build/gettext/*.pot from the book, merged into locales/<lang>/LC_MESSAGES
    python tools/i18n.py site [--fast]     # the bilingual site: English at _build/site/, Chinese at _build/site/zh/
    python tools/i18n.py build --lang zh_CN [--fast] [--builder singlehtml --out DIR]   # one edition
    python tools/i18n.py stats             # translation progress per page (never fails)

**Catalogs.** ``update`` runs Sphinx's gettext builder over the book through the configuration Jupyter Book
generates from ``_config.yml`` (``jupyter_book.sphinx.build_sphinx``, the call ``jupyter-book build`` makes; its
command line has no ``-D``), with nothing executed: a message is a paragraph, heading, list item, table cell,
admonition title or caption of the Markdown, as MyST source, and never holds a glued value or an output, so
nothing needs executing (a ``{glue:figure}`` keeps its caption even without its value: tools/i18n_ext.py) and a
re-execution changes no catalog. One ``.pot`` per page (``gettext_compact: False``), no
``#:`` locations, no UUIDs, ``SOURCE_DATE_EPOCH=0``: the catalogs change only when the English text does. Each
``.pot`` is merged into ``locales/<lang>/LC_MESSAGES/<page>.po`` with ``msgmerge --previous --no-location
--no-wrap`` (a changed English paragraph keeps its old translation, marked fuzzy, with the old English beside it
as ``#| msgid``; fuzzy and empty translations fall back to English on the site); new pages get a new catalog
(``msginit``), removed pages lose theirs. A translated message whose English is gone stays at the end of its
catalog as an obsolete ``#~`` entry, which msgmerge revives if the message comes back. Messages with nothing
to translate (only math, code, roles or numbers) are filled with themselves, so that they never count as
untranslated.

**Editions.** Each edition is a Sphinx build of the same sources with ``language`` set, strict (``-W -n``), from
the same executions as the English book (``_build/.jupyter_cache``, or with ``--fast`` the FAST build's
``_build/fast/_build/.jupyter_cache``): nothing executes when ``make book`` (``make book-fast``) ran before. The
catalogs are compiled with ``msgfmt`` into ``_build/i18n/``; myst-nb's executed copies and the doctrees go there
too, so that the site folder holds only the site. ``site`` builds both editions with a language link on every
page (``tools/i18n_ext.py``) and writes the root page, which sends a reader to the edition of their browser's
language (or the one they chose last). English stays at the site's root, where the English-only ``make book``
(``_build/html``, no language link) publishes it, so no English address changes.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
LOCALES = ROOT / "locales"
POT_DIR = BUILD / "gettext"

# The editions of the site: the folder of each inside the site, the label of its link, its lang attribute.
EDITIONS = {
    "en": {"dir": "", "label": "English"},
    "zh_CN": {"dir": "zh", "label": "中文"},
}
TRANSLATED = [lang for lang in EDITIONS if lang != "en"]

GETTEXT_CONFIG = {
    "gettext_compact": False,   # one catalog per page
    "gettext_location": False,  # no "#:" lines: inserting a cell would otherwise rewrite every later one
    "gettext_uuid": False,
    "gettext_auto_build": False,  # tools/i18n.py compiles the catalogs into _build/i18n, not into locales/
}


def mode_name(fast: bool) -> str:
    return "fast" if fast else "full"


def site_dir(fast: bool) -> Path:
    return BUILD / ("fast/site" if fast else "site")


def edition_dir(lang: str, fast: bool) -> Path:
    sub = EDITIONS[lang]["dir"]
    return site_dir(fast) / sub if sub else site_dir(fast)


def work_dir(lang: str, fast: bool) -> Path:
    return BUILD / "i18n" / mode_name(fast) / lang


def cache_dir(fast: bool) -> Path:
    """The English book's executions (tools/site_ext.py adds the mode and package hash)."""
    return BUILD / ("fast/_build/.jupyter_cache" if fast else ".jupyter_cache")


def language_links(lang: str) -> list[dict]:
    """The other editions, each with the path from this edition's root to its root."""
    here = Path("/site") / EDITIONS[lang]["dir"]
    links = []
    for other, info in EDITIONS.items():
        if other == lang:
            continue
        rel = os.path.relpath(Path("/site") / info["dir"], here)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        links.append({"lang": other, "label": info["label"], "prefix": prefix})
    return links


# --------------------------------------------------------------------------- one Sphinx build

def sphinx_build(builder: str, outdir: Path, *, lang: str = "en", fast: bool = False, strict: bool = True,
                 links: bool = False, execute: bool = True, quiet: bool = False, srcdir: Path = ROOT) -> int:
    """One build of the book through Jupyter Book's own configuration (what ``jupyter-book build`` passes to
    Sphinx), with the language and the i18n settings added as configuration overrides. ``srcdir``: another book
    (the tests build a small one) with its ``_config.yml``, ``_toc.yml`` and ``locales/``."""
    from jupyter_book.sphinx import build_sphinx

    if fast:
        os.environ["NORMBOOK_FAST"] = "1"
    else:
        os.environ.pop("NORMBOOK_FAST", None)
    os.environ.setdefault("NORMBOOK_CACHE_DIR", str(cache_dir(fast)))
    if not execute:
        os.environ["NORMBOOK_EXECUTE"] = "off"  # tools/site_ext.py: the outputs stored in the chapters
    if builder == "gettext":  # fixed dates in the catalogs (elsewhere Sphinx would also rewrite the copyright year)
        os.environ["SOURCE_DATE_EPOCH"] = "0"
    work = work_dir(lang, fast) if builder != "gettext" else BUILD / "i18n" / "gettext"
    if srcdir != ROOT:
        work = srcdir / work.relative_to(ROOT)
    overrides = {
        "external_toc_path": (srcdir / "_toc.yml").as_posix(),
        "latex_individualpages": False,
        "nitpicky": True,
        "language": lang,
        "locale_dirs": [str(work / "locales")],
        "normbook_nb_output_folder": str(work / "jupyter_execute"),
        **GETTEXT_CONFIG,
    }
    if builder == "gettext":
        overrides["project"] = "normbook"  # "Project-Id-Version" (Jupyter Book sets only html_title)
    if links:
        overrides["normbook_language_links"] = language_links(lang)
    if EDITIONS[lang]["dir"]:
        overrides["normbook_colab_subdir"] = EDITIONS[lang]["dir"]
    if lang != "en":
        compile_catalogs(lang, work / "locales", srcdir / "locales")
    # ``{only} lang_zh_CN`` blocks (text for one edition): each edition keeps its own, the extraction all of them
    tags = [f"lang_{code}" for code in EDITIONS] if builder == "gettext" else [f"lang_{lang}"]
    outdir.mkdir(parents=True, exist_ok=True)
    result = build_sphinx(srcdir, outdir, noconfig=True, path_config=srcdir / "_config.yml",
                          confoverrides=overrides, doctreedir=work / "doctrees" / builder, builder=builder,
                          warningiserror=strict, keep_going=True, quiet=quiet, tags=tags)
    if isinstance(result, Exception):
        return 1
    return int(result or 0)


def compile_catalogs(lang: str, target: Path, locales: Path = LOCALES) -> None:
    """Copy each catalog of ``lang`` into ``target`` and ``msgfmt`` it there (fuzzy translations are left out:
    they fall back to English). Sphinx makes each page depend on its ``.mo`` only where the ``.po`` lies beside it,
    so both are there; a catalog is recompiled when its text changed."""
    source = locales / lang / "LC_MESSAGES"
    dest = target / lang / "LC_MESSAGES"
    for po in sorted(source.rglob("*.po")):
        copy = dest / po.relative_to(source)
        mo = copy.with_suffix(".mo")
        if copy.exists() and mo.exists() and copy.read_bytes() == po.read_bytes():
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(po, copy)
        subprocess.run(["msgfmt", "-o", str(mo), str(copy)], check=True)
    for stale in sorted(dest.rglob("*.po")) if dest.exists() else []:  # a page removed since
        if not (source / stale.relative_to(dest)).exists():
            stale.unlink()
            stale.with_suffix(".mo").unlink(missing_ok=True)


# --------------------------------------------------------------------------- catalogs

HEADER = """\
# The {lang} translation of the page {page} of normbook.
# Written by `make i18n-update` (tools/i18n.py) from the English page; translators edit the msgstr lines only.
# The text is licensed CC BY 4.0, like the English.
#
"""


def extract() -> list[Path]:
    """The book's messages, one ``.pot`` per page, under ``_build/gettext`` (nothing executed)."""
    if POT_DIR.exists():
        shutil.rmtree(POT_DIR)
    rc = sphinx_build("gettext", POT_DIR, execute=False, strict=False, quiet=True)
    if rc:
        raise SystemExit(f"the gettext build failed ({rc})")
    pots = sorted(p for p in POT_DIR.rglob("*.pot") if p.name != "sphinx.pot")
    if not pots:
        raise SystemExit("the gettext build wrote no catalog")
    return pots


def merge(pots: list[Path], lang: str, pot_dir: Path = POT_DIR, locales: Path = LOCALES) -> list[Path]:
    """Create or update ``locales/<lang>/LC_MESSAGES/<page>.po`` from each ``.pot``; remove the catalogs of pages
    that no longer exist."""
    target = locales / lang / "LC_MESSAGES"
    written = []
    for pot in pots:
        po = target / pot.relative_to(pot_dir).with_suffix(".po")
        po.parent.mkdir(parents=True, exist_ok=True)
        if not po.exists():
            subprocess.run(["msginit", "--no-translator", "--no-wrap", "-l", lang, "-i", str(pot), "-o", str(po)],
                           check=True, capture_output=True)
            text = po.read_text(encoding="utf-8")  # msginit's comments carry the current year: a fixed one
            page = pot.relative_to(pot_dir).with_suffix("").as_posix()
            po.write_text(HEADER.format(lang=lang, page=page) + text[text.index('msgid ""'):], encoding="utf-8")
        # a new catalog too, so that it is laid out as every later update will lay it out
        subprocess.run(["msgmerge", "--quiet", "--update", "--backup=none", "--previous", "--no-location",
                        "--no-wrap", str(po), str(pot)], check=True)
        fill_untranslatable(po)
        written.append(po)
    keep = {p.resolve() for p in written}
    for po in sorted(target.rglob("*.po")):
        if po.resolve() not in keep:
            po.unlink()
            print(f"removed {po} (the page is gone)")
    return written


def fill_untranslatable(po: Path) -> None:
    """Messages without a word to translate (display math, a code span, a glued value, a Chinese table cell)
    get themselves as translation, and lose a fuzzy mark, so they never count as untranslated."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import po_check

    catalog = po_check.read(po)
    changed = False
    for entry in catalog:
        if not entry.msgid or po_check.has_prose(entry.msgid):
            continue
        if entry.msgstr != entry.msgid or entry.fuzzy:
            entry.msgstr, entry.fuzzy, entry.previous = entry.msgid, False, None
            changed = True
    if changed:
        po_check.write(catalog, po)


def update(langs: list[str]) -> None:
    pots = extract()
    for lang in langs:
        written = merge(pots, lang)
        print(f"{lang}: {len(written)} catalogs in {(LOCALES / lang).relative_to(ROOT)}")


# --------------------------------------------------------------------------- catalogs applied to Markdown

_SPACE = r"(?:[ \t]*\n[ \t>]*|[ \t]+)"  # a space of the message: a space, or a line break in a container
_BEFORE = (r"(?P<pre>^[ \t>]*(?:(?:[-*+]|\d+[.)])[ \t]+)?(?:#{1,6}[ \t]+)?"  # line start, list item, heading
           r"|\|[ \t]*"  # a table cell
           r"|\}[ \t]+)")  # a directive's argument (an admonition's title)
_AFTER = r"(?=[ \t]*(?:\n|\Z|\|))"


def load_catalog(po: Path) -> dict:
    """msgid -> msgstr of the translated, non-fuzzy messages of one catalog (what the site applies)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import po_check

    if not Path(po).exists():
        return {}
    return {e.msgid: e.msgstr for e in po_check.read(po)
            if e.msgid and e.msgstr and not e.fuzzy and not e.obsolete and e.msgstr != e.msgid}


def page_catalog(page: str, lang: str) -> dict:
    """The catalog of one page (``chapters/01_why_normalize``)."""
    return load_catalog(LOCALES / lang / "LC_MESSAGES" / f"{page}.po")


def apply_catalog(source: str, catalog: dict, found: set | None = None) -> str:
    """The Markdown ``source`` (MyST) with each message of ``catalog`` replaced by its translation.

    A message is what myst-parser's tokenizer yields for a paragraph, heading, list item, table cell or directive
    title, with its line breaks turned into spaces (Sphinx's extraction): it is matched as a whole block there,
    whatever the line breaks and container markers (list bullets, ``>``) between its words, so that a short
    message ("Summary") never replaces part of a longer paragraph. ``found`` collects the msgids applied."""
    for msgid in sorted(catalog, key=len, reverse=True):
        body = re.escape(msgid).replace("\\ ", _SPACE)
        pattern = re.compile(_BEFORE + body + _AFTER, re.M)
        msgstr = catalog[msgid]
        source, n = pattern.subn(lambda m, s=msgstr: m.group("pre") + s, source)
        if n and found is not None:
            found.add(msgid)
    return source


# --------------------------------------------------------------------------- the site

ROOT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>normbook</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
{alternates}
<script>
(function () {{
  var editions = {editions};
  var chosen = null;
  try {{ chosen = localStorage.getItem("normbook-language"); }} catch (e) {{}}
  var wanted = chosen ? [chosen] : (navigator.languages || [navigator.language || "en"]);
  var target = editions["en"];
  for (var i = 0; i < wanted.length; i++) {{
    var code = String(wanted[i]).replace("-", "_");
    if (editions[code]) {{ target = editions[code]; break; }}
    var base = code.split("_")[0];
    for (var k in editions) {{ if (k.split("_")[0] === base) {{ target = editions[k]; i = wanted.length; break; }} }}
  }}
  window.location.replace(target);
}})();
</script>
<noscript><meta http-equiv="refresh" content="0; url={default}"></noscript>
</head>
<body>
<p>{choices}</p>
</body>
</html>
"""

REDIRECT_PAGE = '<!DOCTYPE html>\n<meta charset="utf-8">\n<meta http-equiv="Refresh" content="0; url={page}" />\n'


def root_doc() -> str:
    import yaml

    return yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]


def write_root_pages(fast: bool) -> None:
    """The site's ``index.html`` sends a reader to their language's edition; each edition's ``index.html``
    redirects to its first page."""
    import html
    import json

    first = root_doc() + ".html"
    targets = {lang: (f"{info['dir']}/" if info["dir"] else "") + first for lang, info in EDITIONS.items()}
    alternates = "\n".join(f'<link rel="alternate" hreflang="{lang.replace("_", "-")}" href="{url}">'
                           for lang, url in targets.items())
    choices = " · ".join(f'<a href="{html.escape(url)}" lang="{lang.replace("_", "-")}" '
                         f'onclick="try {{ localStorage.setItem(\'normbook-language\', \'{lang}\'); }} catch (e) {{}}">'
                         f'{html.escape(EDITIONS[lang]["label"])}</a>' for lang, url in targets.items())
    site = site_dir(fast)
    (site / "index.html").write_text(ROOT_PAGE.format(alternates=alternates, editions=json.dumps(targets),
                                                      default=targets["en"], choices=choices), encoding="utf-8")
    for info in EDITIONS.values():
        if info["dir"]:
            (site / info["dir"] / "index.html").write_text(REDIRECT_PAGE.format(page=first), encoding="utf-8")


def run_edition(lang: str, fast: bool, builder: str = "html", out: Path | None = None, links: bool = True) -> int:
    """One edition in a fresh process (Sphinx keeps per-process state between builds)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "build", "--lang", lang, "--builder", builder]
    if fast:
        cmd.append("--fast")
    if out is not None:
        cmd += ["--out", str(out)]
    if not links:
        cmd.append("--no-links")
    return subprocess.run(cmd, cwd=ROOT).returncode


def site(fast: bool, langs: list[str]) -> int:
    """The bilingual site: each translated edition, then the English one (its root), then the root pages."""
    for lang in [lang for lang in EDITIONS if lang != "en" and lang in langs] + ["en"]:
        rc = run_edition(lang, fast)
        if rc:
            return rc
    write_root_pages(fast)
    print(f"Site: {site_dir(fast) / 'index.html'}")
    return 0


# --------------------------------------------------------------------------- progress

def stats(langs: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import po_check

    for lang in langs:
        print(po_check.progress_report(LOCALES / lang / "LC_MESSAGES"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("update", help="extract the messages and merge them into the catalogs")
    p.add_argument("--lang", action="append", choices=TRANSLATED)
    p = sub.add_parser("build", help="one edition")
    p.add_argument("--lang", default="zh_CN", choices=list(EDITIONS))
    p.add_argument("--fast", action="store_true", help="the FAST build's executions")
    p.add_argument("--builder", default="html")
    p.add_argument("--out", type=Path, help="output folder (default: the edition's folder in the site)")
    p.add_argument("--no-links", action="store_true", help="no language links (a single-edition build)")
    p = sub.add_parser("site", help="every edition with language links, and the root page")
    p.add_argument("--fast", action="store_true")
    p.add_argument("--lang", action="append", choices=TRANSLATED)
    p = sub.add_parser("stats", help="translation progress per page")
    p.add_argument("--lang", action="append", choices=TRANSLATED)
    args = ap.parse_args(argv)
    if args.cmd == "update":
        update(args.lang or TRANSLATED)
    elif args.cmd == "build":
        out = args.out or edition_dir(args.lang, args.fast)
        return sphinx_build(args.builder, out.resolve(), lang=args.lang, fast=args.fast,
                            links=not args.no_links)
    elif args.cmd == "site":
        return site(args.fast, args.lang or TRANSLATED)
    elif args.cmd == "stats":
        stats(args.lang or TRANSLATED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
