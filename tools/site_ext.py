"""The book's own Sphinx extension (loaded from _config.yml's ``local_extensions``).

- One jupyter-cache folder per execution mode: ``<build>/.jupyter_cache/<fast|full>-<hash of src/normbook>``.
  jupyter-cache keys a notebook on its code cells only, so without this a FAST execution could be served to a
  full build (or the other way round), and a change in the package would not re-execute anything.
- Page assets de-duplicated: Sphinx 7.4's ``prepare_writing`` re-adds every asset registered after
  ``Builder.init()`` with ``filename or ''`` while the builder already holds it with ``filename=None``, so the
  inline scripts of sphinx-thebe and sphinx-togglebutton (added in ``env-before-read-docs``) appear twice in
  every page head, and ``const THEBE_JS_URL`` declared twice is a SyntaxError in the browser.
- The Colab launch button opens the Colab edition (``make colab``), which the GPU workflow publishes on the
  branch ``normbook_colab_branch`` (default ``colab``) with the chapters' paths.
- The bibliography's entries are list items: docutils writes each citation as ``<div role="doc-biblioentry">``
  inside ``<div role="list">``, and a list must contain list items (axe: aria-required-children, critical;
  ``doc-biblioentry`` is deprecated in DPUB-ARIA 1.1). The page body is rewritten before it is rendered.
- An author-year bibliography ("Ioffe and Szegedy, 2015") sorted by author, year, title, matching the
  author-year citations in the text (``bibtex_default_style: authoryear``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def author_names(entry) -> str:
    """The author part of an author-year label for a pybtex entry: "Ioffe and Szegedy", "Zhang et al.", or the
    organization (then the title) when the entry has no person. Shared by the site and the Colab edition."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [" ".join(p.prelast_names + p.last_names) or " ".join(p.first_names) for p in persons]
    names = [n.replace("{", "").replace("}", "") for n in names]
    if not names:
        return entry.fields.get("organization", entry.fields.get("title", entry.key))
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


def execution_mode() -> str:
    """"fast" or "full", read from ``NORMBOOK_FAST`` by the package's own parser (``NORMBOOK_FAST=false`` is full),
    so that the cache a build uses is the mode its chapters run in."""
    from normbook.config import is_fast

    return "fast" if is_fast() else "full"


def package_hash() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "src" / "normbook").rglob("*.py")):
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def cache_path(outdir, mode: str | None = None) -> Path:
    """``<build folder>/.jupyter_cache/<fast|full>-<package hash>`` beside the HTML output (``_build/.jupyter_cache``
    for ``make book``, ``_build/fast/_build/.jupyter_cache`` for the fast build): each build folder has its own
    cache, so builds into different folders never share a database. ``NORMBOOK_CACHE_DIR`` overrides the folder
    (``make pdf`` reuses the book's executions that way). ``mode`` ("fast" or "full"): that mode's folder instead of
    the one ``NORMBOOK_FAST`` selects (tools/nbval_run.py fills the book's cache)."""
    base = os.environ.get("NORMBOOK_CACHE_DIR") or Path(outdir).parent / ".jupyter_cache"
    return Path(base) / f"{mode or execution_mode()}-{package_hash()}"


def _set_cache(app, config) -> None:
    config.nb_execution_cache_path = str(cache_path(app.outdir))
    if os.environ.get("NORMBOOK_EXECUTE", "") == "off":  # use the outputs stored in the notebooks as they are
        config.nb_execution_mode = "off"


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    files = context.get("script_files")
    if not files:
        return
    seen, kept = set(), []
    for asset in files:
        filename = getattr(asset, "filename", asset) or ""
        attrs = tuple(sorted((k, str(v)) for k, v in getattr(asset, "attributes", {}).items()))
        key = (filename, attrs)
        if key in seen:
            continue
        seen.add(key)
        kept.append(asset)
    files[:] = kept


def _colab_branch(app, pagename, templatename, context, doctree) -> None:
    """Point the Colab launch button at the Colab edition, published on its own branch (``normbook_colab_branch``;
    empty: the chapters themselves). The repository and branch come from _config.yml's ``repository:``."""
    colab_branch = app.config.normbook_colab_branch
    branch = app.config.html_theme_options.get("repository_branch", "main")
    if not colab_branch or colab_branch == branch:
        return

    def fix(buttons):
        for button in buttons or []:
            if isinstance(button, dict):
                url = button.get("url", "")
                if "colab.research.google.com" in url:
                    button["url"] = url.replace(f"/blob/{branch}/", f"/blob/{colab_branch}/", 1)
                fix(button.get("buttons"))

    fix(context.get("header_buttons"))


def _accessible_citations(app, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if body and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def _favicon_at_root(app, exc) -> None:
    """Browsers ask for /favicon.ico on pages without an icon link (the redirecting index.html)."""
    icon = ROOT / "_static" / "favicon.ico"
    if exc is None and app.builder.format == "html" and icon.exists():
        import shutil

        shutil.copyfile(icon, Path(app.outdir) / "favicon.ico")


def _register_bibliography_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle
    from pybtex.style.sorting.author_year_title import SortingStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = list(self._labels(sorted_entries))
            seen = {}
            for label in labels:
                seen[label] = seen.get(label, 0) + 1
            suffix = {}
            for label in labels:  # "Zhang et al., 2023a" and "..., 2023b" when two entries share a label
                if seen[label] > 1:
                    suffix[label] = suffix.get(label, 0) + 1
                    yield label + "abcdefghijklmnopqrstuvwxyz"[suffix[label] - 1]
                else:
                    yield label

        def _labels(self, sorted_entries):
            for entry in sorted_entries:
                yield f"{author_names(entry)}, {entry.fields.get('year', 'n.d.')}"

    class AuthorYearSorting(SortingStyle):
        """Author, year, title; braces ignored ({Stanford University} sorts under S), case folded."""

        def sorting_key(self, entry):
            return tuple(k.replace("{", "").replace("}", "").lower()
                         for k in super().sorting_key(entry))

        def person_key(self, person):
            return "  ".join((" ".join(person.last_names), " ".join(person.first_names),
                              " ".join(person.middle_names)))

    class AuthorYearStyle(UnsrtStyle):
        default_label_style = "authoryear"
        default_sorting_style = "authoryear"

    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.sorting", "authoryear", AuthorYearSorting, force=True)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)


def setup(app):
    _register_bibliography_style()
    app.connect("config-inited", _set_cache, priority=900)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.add_config_value("normbook_colab_branch", "colab", "html")
    app.connect("html-page-context", _colab_branch, priority=900)
    app.connect("html-page-context", _accessible_citations, priority=900)
    app.connect("build-finished", _favicon_at_root)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
