"""The translated editions' machinery (tools/i18n.py, tools/i18n_ext.py, tools/po_check.py, the zh Colab edition).

- A small book (a notebook with a glued value, a part caption in ``_toc.yml``, a Chinese catalog) built through
  tools/i18n.py as the zh site is: the translated paragraph shows the glued value and the sidebar shows the
  translated part caption. The same book built without tools/i18n_ext.py shows neither (the two breakages the
  extension fixes), so the test can tell.
- Sphinx's own extraction of that book's messages: ``apply_catalog`` (the Colab edition's translation step) finds
  every one of them in the Markdown it came from.
- ``msgmerge --previous`` as ``make i18n-update`` runs it: a changed English paragraph keeps its translation,
  marked fuzzy, with the old English beside it; a removed one is kept as obsolete and revived when it returns; a
  new catalog is laid out as every later update; a second update changes nothing.
- The ``.po`` checker finds what the strict build does not (an unclosed backtick, an unbalanced ``$``, a
  ``{numref}`` pointed at another figure, a dropped code span) and accepts a faithful translation.
- The zh Colab edition of a chapter: translated before the conversion (glued values filled in, no markup left),
  its own words and set-up cell in Chinese, links to the zh site; its set-up cell runs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_edition  # noqa: E402
import i18n  # noqa: E402
import po_check  # noqa: E402

NEEDS_GETTEXT = pytest.mark.skipif(not shutil.which("msgmerge"), reason="gettext tools not installed (Debian: gettext)")

PAGE_MD = [
    "# A page\n\nThe answer is {glue:text}`answer:.2f` units, which $x^2$ and `code()` do not change.",
    textwrap.dedent("""\
        ## Lists and tables

        - A first item with {glue:text}`answer:.1f` in it.
        - A second item
          that continues on a second line.

        | name | value |
        |---|---|
        | the answer | {glue:text}`answer` |

        :::{admonition} Solution
        :class: dropdown
        The solution text, with a list:

        - one point
        - another point
        :::

        ```{admonition} Learning goals
        - Read a catalog.
        ```
        """),
]
TRANSLATIONS = {
    "page": {
        "A page": "一页",
        "The answer is {glue:text}`answer:.2f` units, which $x^2$ and `code()` do not change.":
            "答案是 {glue:text}`answer:.2f` 个单位，$x^2$ 和 `code()` 都不改变它。",
    },
    "intro": {"Part one": "第一部分"},
}


# a figure whose value the notebook does not hold (a chapter committed without outputs): its caption is still a
# message of the catalog (tools/i18n_ext.py), so that the catalogs never depend on outputs
FIGURE_MD = "```{glue:figure} fig_not_stored\n:name: fig-not-stored\n\nA caption without its figure.\n```\n"


def _notebook(extra: str = "") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell("glue('answer', 42.0)", execution_count=1)
    code.outputs = [nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/plain": "42.0"},
        metadata={"scrapbook": {"name": "answer", "mime_prefix": "application/papermill.record/"}})]
    code.metadata["tags"] = ["remove-cell"]
    nb.cells = [nbformat.v4.new_markdown_cell(PAGE_MD[0]), code, nbformat.v4.new_markdown_cell(PAGE_MD[1] + extra)]
    return nb


def _catalog(msgs: dict) -> str:
    out = ['msgid ""', 'msgstr ""', '"Content-Type: text/plain; charset=UTF-8\\n"', '"Language: zh_CN\\n"', ""]
    for k, v in msgs.items():
        out += [f"msgid {json.dumps(k, ensure_ascii=False)}", f"msgstr {json.dumps(v, ensure_ascii=False)}", ""]
    return "\n".join(out)


def _book(tmp: Path, with_extension: bool = True, extra: str = "") -> Path:
    src = tmp / "book"
    src.mkdir()
    ext = f"\n  local_extensions:\n    i18n_ext: {ROOT / 'tools'}" if with_extension else ""
    (src / "_config.yml").write_text(textwrap.dedent("""\
        title: Small book
        only_build_toc_files: true
        execute:
          execute_notebooks: "off"
        sphinx:
          config:
            suppress_warnings: ["mystnb.unknown_mime_type"]""") + ext + "\n")
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\nparts:\n  - caption: Part one\n"
                                  "    chapters:\n      - file: page\n")
    (src / "intro.md").write_text("# Intro\n\nA small book.\n")
    nbformat.write(_notebook(extra), src / "page.ipynb")
    for page, msgs in TRANSLATIONS.items():
        po = src / "locales" / "zh_CN" / "LC_MESSAGES" / f"{page}.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        po.write_text(_catalog(msgs), encoding="utf-8")
    return src


def _build(src: Path, builder: str, out: Path, strict: bool) -> subprocess.CompletedProcess:
    """One build of the small book through tools/i18n.py, in a fresh process (as ``make book-zh`` runs each)."""
    lang = "en" if builder == "gettext" else "zh_CN"
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); import i18n; from pathlib import Path; "
            f"sys.exit(i18n.sphinx_build({builder!r}, Path({str(out)!r}), lang={lang!r}, strict={strict}, "
            f"execute=False, quiet=True, srcdir=Path({str(src)!r})))")
    env = {k: v for k, v in os.environ.items() if k not in ("NORMBOOK_CACHE_DIR", "NORMBOOK_FAST")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _sidebar(html: str) -> str:
    m = re.search(r'<nav class="[^"]*bd-docs-nav[^"]*".*?</nav>', html, re.S)
    assert m, "no sidebar navigation in the page"
    return _text(m.group(0))


@NEEDS_GETTEXT
def test_translated_glue_and_part_caption(tmp_path):
    src = _book(tmp_path)
    out = tmp_path / "html"
    res = _build(src, "html", out, strict=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    page = (out / "page.html").read_text(encoding="utf-8")
    assert "答案是 42.00 个单位" in _text(page), "the glued value is missing from the translated paragraph"
    assert "一页" in _text(page)
    assert "第一部分" in _sidebar(page) and "Part one" not in _sidebar(page)
    # untranslated messages fall back to English, glue included
    assert "A first item with 42.0 in it." in _text(page)


@NEEDS_GETTEXT
def test_without_the_extension_both_break(tmp_path):
    """The control: what the first test checks is what breaks without tools/i18n_ext.py."""
    src = _book(tmp_path, with_extension=False)
    out = tmp_path / "html"
    res = _build(src, "html", out, strict=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    page = (out / "page.html").read_text(encoding="utf-8")
    assert "答案是" in _text(page) and "答案是 42.00" not in _text(page)
    assert "Part one" in _sidebar(page) and "第一部分" not in _sidebar(page)


@NEEDS_GETTEXT
def test_apply_catalog_finds_every_extracted_message(tmp_path):
    src = _book(tmp_path, extra="\n" + FIGURE_MD)
    pot_dir = tmp_path / "gettext"
    res = _build(src, "gettext", pot_dir, strict=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    msgids = [e.msgid for e in po_check.read(pot_dir / "page.pot") if e.msgid]
    assert len(msgids) >= 12, msgids  # headings, paragraphs, list items, table cells, admonition titles
    catalog = {m: f"<{i}>" for i, m in enumerate(msgids)}
    found: set = set()
    assert "A caption without its figure." in msgids
    translated = [i18n.apply_catalog(md, catalog, found) for md in PAGE_MD[:1] + [PAGE_MD[1] + "\n" + FIGURE_MD]]
    assert set(msgids) == found, f"not located: {set(msgids) - found}"
    assert "The answer" not in translated[0] and "- <" in translated[1] and "| <" in translated[1]
    assert ":::{admonition} <" in translated[1] and "```{admonition} <" in translated[1]


@NEEDS_GETTEXT
def test_update_keeps_a_changed_paragraph_as_fuzzy(tmp_path):
    pot_dir, locales = tmp_path / "pot", tmp_path / "locales"
    pot_dir.mkdir()
    header = ('msgid ""\nmsgstr ""\n"Project-Id-Version: normbook \\n"\n"POT-Creation-Date: 1970-01-01 00:00+0000\\n"\n'
              '"MIME-Version: 1.0\\n"\n"Content-Type: text/plain; charset=utf-8\\n"\n'
              '"Content-Transfer-Encoding: 8bit\\n"\n\n')
    old = "BN normalizes each channel over the batch and the spatial positions."
    new = "BN normalizes each channel over the mini-batch and the spatial positions."
    pot = pot_dir / "page.pot"
    pot.write_text(header + f'msgid "{old}"\nmsgstr ""\n\nmsgid "Summary"\nmsgstr ""\n\nmsgid "$x$"\nmsgstr ""\n')
    (po,) = i18n.merge([pot], "zh_CN", pot_dir, locales)
    first = po.read_text(encoding="utf-8")
    i18n.merge([pot], "zh_CN", pot_dir, locales)
    assert po.read_text(encoding="utf-8") == first, "a second update changed a new catalog"
    assert "Automatically generated, 2" not in first  # no current year in the header
    entries = {e.msgid: e for e in po_check.read(po)}
    assert entries["$x$"].msgstr == "$x$"  # nothing to translate: filled with itself
    for e in entries.values():
        if e.msgid == old:
            e.msgstr = "BN 在批量和空间位置上对每个通道做规范化。"
    po_check.write(list(entries.values()), po)
    pot.write_text(header + f'msgid "{new}"\nmsgstr ""\n\nmsgid "Summary"\nmsgstr ""\n\nmsgid "$x$"\nmsgstr ""\n')
    i18n.merge([pot], "zh_CN", pot_dir, locales)
    after = {e.msgid: e for e in po_check.read(po)}
    assert old not in after and after[new].fuzzy and after[new].previous == old
    assert after[new].msgstr == "BN 在批量和空间位置上对每个通道做规范化。"
    assert i18n.load_catalog(po) == {}  # fuzzy: the site shows the English
    text = po.read_text(encoding="utf-8")
    i18n.merge([pot], "zh_CN", pot_dir, locales)
    assert po.read_text(encoding="utf-8") == text
    # a translated message whose English goes away is kept (obsolete) and comes back with its translation
    entries = po_check.read(po)
    for e in entries:
        if e.msgid == "Summary":
            e.msgstr = "小结"
    po_check.write(entries, po)
    pot.write_text(header + f'msgid "{new}"\nmsgstr ""\n')
    i18n.merge([pot], "zh_CN", pot_dir, locales)
    assert '#~ msgid "Summary"' in po.read_text(encoding="utf-8")
    kept = po.read_text(encoding="utf-8")
    po_check.write(po_check.read(po), po)
    assert po.read_text(encoding="utf-8") == kept  # the reader and writer keep obsolete entries as they are
    pot.write_text(header + f'msgid "{new}"\nmsgstr ""\n\nmsgid "Summary"\nmsgstr ""\n')
    i18n.merge([pot], "zh_CN", pot_dir, locales)
    assert {e.msgid: e.msgstr for e in po_check.read(po)}["Summary"] == "小结"
    res = subprocess.run(["msgfmt", "-c", "-o", os.devnull, str(po)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


GOOD = ("The mean is {glue:text}`m:.3f` {cite:p}`ioffe2015batch`, see {numref}`Figure %s <fig-a>` and $x_i$ "
        "in `running_mean`.",
        "均值为 {glue:text}`m:.3f` {cite:p}`ioffe2015batch`，见{numref}`图 %s <fig-a>`，"
        "以及 `running_mean` 中的 $x_i$。")


@pytest.mark.parametrize("msgstr, problem", [
    (GOOD[1], None),
    (GOOD[1].replace("{glue:text}`m:.3f`", "{glue:text}`m`"), "role {glue:text}`m:.3f` missing"),
    (GOOD[1].replace(" {cite:p}`ioffe2015batch`", ""), "role {cite:p}`ioffe2015batch` missing"),
    (GOOD[1].replace("<fig-a>", "<fig-b>"), "role {numref}`<fig-a>` missing"),
    (GOOD[1].replace("$x_i$", "$x$"), "math $x_i$ missing"),
    (GOOD[1].replace("`running_mean`", "running_mean"), "code `running_mean` missing"),
    (GOOD[1].replace("`running_mean`", "`running_mean"), "unbalanced backtick"),
    (GOOD[1] + " 代价是 $5", "unbalanced $"),
    (GOOD[1] + " {ref}`other`", "role {ref}`other` not in the English"),
])
def test_po_checker(msgstr, problem):
    problems = po_check.entry_problems(GOOD[0], msgstr)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("msgstr, ok", [
    ("**数据**。实验使用 Fashion-MNIST。", True),
    ("**数据。** 实验使用 Fashion-MNIST。", True),
    ("**数据。**实验使用 Fashion-MNIST。", False),  # CommonMark leaves this ** open: the page shows the asterisks
    ("数据。实验使用 Fashion-MNIST。", False),
])
def test_po_checker_bold_before_cjk(msgstr, ok):
    problems = po_check.entry_problems("**Data.** The experiments use Fashion-MNIST.", msgstr)
    assert (problems == []) == ok, problems


def test_po_checker_counts_prose():
    assert not po_check.has_prose("{glue:text}`ch6_e1_bn_test_acc`")
    assert not po_check.has_prose("\n\\mathrm{BN}(x) = \\gamma\\,\\hat x + \\beta\n")  # display math
    assert not po_check.has_prose("批量规范化")
    assert po_check.has_prose("LeNet-BN (1.0)")
    assert po_check.english_words("The mean {glue:text}`m` of $x$ in `code`.") == 4


CHAPTER = ROOT / "chapters" / "01_why_normalize.ipynb"


@pytest.mark.skipif(not CHAPTER.exists(), reason="chapter 1 not found")
def test_zh_colab_edition(tmp_path, monkeypatch):
    nb = nbformat.read(CHAPTER, as_version=4)
    paragraphs = [m for c in nb.cells if c.cell_type == "markdown"
                  for m in re.findall(r"^[^\n#|>:`-][^\n]*$", c.source, re.M)]
    glued = [m for m in paragraphs if "{glue:text}" in m and "{cite" not in m]
    assert glued, "no paragraph with a glued value in chapter 1"
    msgid = glued[0]
    roles = re.findall(r"\{glue:text\}`[^`]*`", msgid)
    msgstr = "译文：" + "，".join(roles) + "。"
    monkeypatch.setattr(i18n, "page_catalog", lambda page, lang: {msgid: msgstr} if page.endswith(CHAPTER.stem) else {})
    (target,) = colab_edition.build([CHAPTER], tmp_path, lang="zh_CN")
    out = nbformat.read(target, as_version=4)
    markdown = "\n\n".join(c.source for c in out.cells if c.cell_type == "markdown")
    assert colab_edition.leftovers(out) == []
    assert msgid not in markdown
    values = colab_edition.glue_values(nb)
    keys = [r[len("{glue:text}`"):-1].partition(":") for r in roles]
    expected = "译文：" + "，".join(colab_edition.format_glue(values[key], spec) for key, _, spec in keys) + "。"
    assert expected in markdown
    assert "**图 1.**" in markdown and "**Figure 1.**" not in markdown
    site = colab_edition.site_url()
    assert f"{site}zh/references.html" in markdown and f"]({site}references.html" not in markdown
    setup = out.cells[0].source
    assert setup.startswith("# 环境设置") and "FAST = False" in setup
    env = dict(os.environ, NORMBOOK_FAST="1")
    res = subprocess.run([sys.executable, "-c", setup], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
