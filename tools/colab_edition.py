"""The Colab/Jupyter edition: the chapters without MyST markup, as d2l publishes its Colab notebooks.

    python tools/colab_edition.py --out _build/colab chapters/NN_*.ipynb

writes ``<out>/chapters/NN_*.ipynb``. In each notebook:

- ``{cite:p}`` / ``{cite:t}`` become author-year text ("(Ioffe and Szegedy, 2015)", "Ioffe and Szegedy (2015)")
  linking to the book's bibliography page; ``{numref}``, ``{ref}``, ``{doc}``, ``{eq}`` become plain text linking to
  the book's page; any other role becomes its text.
- ``{glue:text}`key:spec``` (and ``{glue}``) becomes the value stored in the chapter's executed outputs (or in the
  book build's executed copy, ``_build/jupyter_execute``, when newer), formatted with the spec.
- A ``{glue:figure}`` block becomes "Figure N: caption", saying which code cell draws it (that cell displays the
  figure when it runs, since ``glue(..., display=True)`` shows it where myst-nb is absent).
- Admonitions become block quotes with a bold title; solutions (dropdowns) go under a "Solution" heading, which
  Colab and JupyterLab can fold; labels ``(name)=`` become HTML anchors; ``$$ ... $$ (label)`` loses its label.
- The set-up cell (tools/setup_cell.py) is first; stored outputs are dropped (the reader runs the notebook).

The book's site address is ``html.baseurl`` in ``_config.yml`` or, without it, the GitHub Pages address of the
repository URL there.

``--lang zh_CN`` writes the Chinese edition (``<out>/chapters``; ``make colab-zh`` puts it in ``_build/colab/zh``):
each Markdown cell is first translated with the page's catalog (``locales/zh_CN/LC_MESSAGES/chapters/*.po``;
tools/i18n.py), then converted as above, with this script's own words ("Figure N", ...) and the set-up cell's
comments in Chinese, and links to the Chinese site (``<site>/zh/``).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import i18n  # noqa: E402
import setup_cell  # noqa: E402
import site_ext  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|:{3,})\s*\{(?P<name>[^}\s]+)\}\s*(?P<arg>.*)$")
ROLE = re.compile(r"\{(?P<role>[a-zA-Z][\w:-]*)\}`(?P<text>[^`]*)`")
TARGET = re.compile(r"^\((?P<label>[^)\s]+)\)=\s*$", re.M)
MATH_LABEL = re.compile(r"(\$\$)[ \t]*\((?P<label>[^)\s]+)\)[ \t]*$", re.M)
SOLUTION = re.compile(r"^\s*solution\b", re.I)

# The words this script writes itself, per language (tools/i18n.py's editions).
TEXT = {
    "en": {"figure": "Figure {n}", "figure_label": "**Figure {n}.**",
           "drawn": "*The figure is drawn by the code cell {where}, which displays it when it runs.*",
           "above": "above", "below": "below", "where": "{side} (`glue(\"{key}\", ...)`)",
           "that_glues": "that glues `{key}`",
           "glue_missing": "(the value `{key}` printed by the code)", "equation": "the equation"},
    "zh_CN": {"figure": "图 {n}", "figure_label": "**图 {n}.**",
              "drawn": "*此图由{where}绘制，运行该单元时显示。*",
              "above": "上方", "below": "下方", "where": "{side}的代码单元（`glue(\"{key}\", ...)`）",
              "that_glues": "粘贴 `{key}` 的代码单元",
              "glue_missing": "（代码输出的值 `{key}`）", "equation": "该公式",
              "admonitions": {"note": "注意", "tip": "提示", "hint": "提示", "important": "重要",
                              "warning": "警告", "caution": "小心", "attention": "注意", "danger": "危险",
                              "error": "错误", "seealso": "参见"}},
}


# --------------------------------------------------------------------------- the book's configuration

def site_url(root: Path = ROOT) -> str:
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    base = (cfg.get("html", {}) or {}).get("baseurl") or ""
    if not base:
        m = re.match(r"https://github\.com/([^/]+)/([^/]+?)/?$", cfg["repository"]["url"])
        base = f"https://{m.group(1)}.github.io/{m.group(2)}/" if m else ""
    return base.rstrip("/") + "/"


def block_end(lines: list, start: int) -> int:
    """Index of the line that closes the fenced block opened at ``lines[start]`` (``len(lines)`` if none does).

    Blocks of the same fence character and length nest (a ``:::`` admonition inside a ``:::`` one)."""
    fence = FENCE.match(lines[start]).group("fence")
    close = re.compile(r"^[ \t]*" + re.escape(fence[0]) + "{%d,}[ \t]*$" % len(fence))
    j, depth = start + 1, 0
    while j < len(lines):
        inner = FENCE.match(lines[j])
        if inner and inner.group("fence")[0] == fence[0] and len(inner.group("fence")) == len(fence):
            depth += 1
        elif close.match(lines[j]):
            if depth == 0:
                break
            depth -= 1
        j += 1
    return j


def bibliography(root: Path = ROOT) -> dict:
    """key -> (authors as cited, year)."""
    from pybtex.database import parse_file

    out = {}
    for key, entry in parse_file(str(root / "references.bib")).entries.items():
        who = site_ext.author_names(entry)  # the site's own labels, so both editions cite alike
        out[key.lower()] = (who, entry.fields.get("year", "n.d."))
    return out


def _headings(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group(2).strip()) for m in re.finditer(r"^(#{1,6})\s+(.+)$", text, re.M)]


def label_index(root: Path = ROOT, words: dict | None = None) -> dict:
    """label -> (page path without suffix, kind, text): figures (with their number in the page), targets, pages."""
    words = words or TEXT["en"]
    index = {}
    sources = sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")) + sorted(root.glob("*.md"))
    for path in sources:
        page = path.relative_to(root).with_suffix("").as_posix()
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        else:
            text = path.read_text(encoding="utf-8")
        heads = _headings(text)
        index[page] = (page, "doc", heads[0][1] if heads else page)
        figure = 0
        for m in re.finditer(r"^[`:]{3,}\s*\{(glue:figure|figure)\}[^\n]*\n((?::[^\n]*\n)*)", text, re.M):
            figure += 1
            name = re.search(r"^:name:\s*(\S+)", m.group(2), re.M)
            if name:
                index[name.group(1)] = (page, "figure", words["figure"].format(n=figure))
        for m in TARGET.finditer(text):
            after = [h for h in heads if h[0] > m.start()]
            index[m.group("label")] = (page, "target", after[0][1] if after else m.group("label"))
        for m in MATH_LABEL.finditer(text):
            index[m.group("label")] = (page, "equation", words["equation"])
    return index


# --------------------------------------------------------------------------- glued values

def glue_values(nb) -> dict:
    """name -> {mime: data} from the outputs myst-nb's glue stored in the executed notebook."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                prefix = o["metadata"]["scrapbook"].get("mime_prefix", "application/papermill.record/")
                out[name] = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in o["data"].items()}
    return out


def glue_references(markdown: str) -> set:
    """The glued names a page's prose uses: ``{glue:text}`key:spec``` (any glue role) and ``{glue:figure} key``
    blocks, read with the patterns the edition rewrites them by (ROLE, FENCE)."""
    keys = {m["text"].split(":")[0] for m in ROLE.finditer(markdown) if m["role"].startswith("glue")}
    fences = (FENCE.match(line) for line in markdown.splitlines())
    return keys | {m["arg"].split()[0] for m in fences if m and m["name"] == "glue:figure" and m["arg"].strip()}


def format_glue(data: dict, spec: str) -> str:
    if "text/markdown" in data:
        return data["text/markdown"]
    text = data.get("text/plain", "")
    if isinstance(text, list):
        text = "".join(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if spec:
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            try:
                return format(float(value), spec)
            except (ValueError, TypeError):
                pass
    return str(value)


# --------------------------------------------------------------------------- the conversion

class Converter:
    def __init__(self, nb, path: Path, root: Path = ROOT, labels=None, bib=None, lang: str = "en"):
        self.nb, self.path, self.root = nb, path, root
        self.lang, self.text = lang, TEXT[lang]
        self.site = site_url(root) + ("" if lang == "en" else i18n.EDITIONS[lang]["dir"] + "/")
        self.catalog = {} if lang == "en" else i18n.page_catalog(
            path.relative_to(path.parents[1]).with_suffix("").as_posix(), lang)
        self.labels = labels if labels is not None else label_index(root, self.text)
        self.bib = bib if bib is not None else bibliography(root)
        self.glue = glue_values(nb)
        self.figure = 0
        self.missing: list[str] = []

    def page_url(self, page: str, anchor: str = "") -> str:
        return f"{self.site}{page}.html" + (f"#{anchor}" if anchor else "")

    # roles -----------------------------------------------------------------
    def cite(self, role: str, text: str) -> str:
        keys = [k.strip() for k in text.split(",") if k.strip()]
        parts = []
        for key in keys:
            who, year = self.bib.get(key.lower(), (key, ""))
            if key.lower() not in self.bib:
                self.missing.append(f"citation {key}")
            url = self.page_url("references")
            if role.startswith("cite:year"):
                parts.append(f"[{year}]({url})")
            elif role.startswith("cite:author"):
                parts.append(f"[{who}]({url})")
            elif role.startswith("cite:t"):
                parts.append(f"[{who} ({year})]({url})")
            else:
                parts.append(f"[{who}, {year}]({url})")
        if not role.startswith("cite:p") and role != "cite":
            return "; ".join(parts)
        return "(" + "; ".join(parts) + ")"

    def ref(self, role: str, text: str) -> str:
        m = re.match(r"^(?P<title>.*?)\s*<(?P<label>[^>]+)>$", text, re.S)
        title, label = (m.group("title"), m.group("label")) if m else ("", text.strip())
        if role == "doc":
            page = (os.path.normpath(f"{self.path.parent.name}/{label}") if not label.startswith("/")
                    else label[1:])
            if page not in self.labels:
                page = label.lstrip("/")
            entry = self.labels.get(page, (page, "doc", page))
            return f"[{title or entry[2]}]({self.page_url(entry[0])})"
        entry = self.labels.get(label)
        if entry is None:
            self.missing.append(f"label {label}")
            return (title or label).replace(" {number}", "").replace("{number}", "")
        page, kind, default = entry
        shown = title.replace("{number}", default.split()[-1]) if title else default
        if page == self.path.relative_to(self.path.parents[1]).with_suffix("").as_posix() and kind == "figure":
            return shown  # the figure is in this notebook
        return f"[{shown}]({self.page_url(page, label)})"

    def role(self, m: re.Match) -> str:
        role, text = m.group("role"), m.group("text")
        if role.startswith("cite"):
            return self.cite(role, text)
        if role in ("numref", "ref", "doc", "eq", "term", "any"):
            return self.ref(role, text)
        if role.startswith("glue"):
            key, _, spec = text.partition(":")
            if key not in self.glue:
                self.missing.append(f"glued value {key}")
                return self.text["glue_missing"].format(key=key)
            return format_glue(self.glue[key], spec)
        if role == "math":
            return f"${text}$"
        return text

    def inline(self, text: str) -> str:
        text = ROLE.sub(self.role, text)
        text = TARGET.sub(lambda m: f'<a id="{m.group("label")}"></a>', text)
        return MATH_LABEL.sub(r"\1", text)

    # directives ------------------------------------------------------------
    def directive(self, name: str, arg: str, options: dict, body: str, cell_index: int) -> str:
        inner = self.markdown(body, cell_index)
        if name in ("glue:figure", "glue"):
            self.figure += 1
            where = self.figure_cell(arg.strip(), cell_index)
            caption = inner.strip()
            anchor = f'<a id="{options["name"]}"></a>' if "name" in options else ""
            return (f"{anchor}{self.text['figure_label'].format(n=self.figure)} {caption}\n\n"
                    + self.text["drawn"].format(where=where))
        if name == "figure":
            self.figure += 1
            url = arg.strip() if "://" in arg else self.site + arg.strip().lstrip("/")
            alt = options.get("alt", "")
            return f"![{alt}]({url})\n\n{self.text['figure_label'].format(n=self.figure)} {inner.strip()}"
        if name in ("math",):
            return f"$$\n{body.strip()}\n$$"
        if name in ("code-block", "code", "code-cell", "sourcecode"):
            return f"```{arg.strip()}\n{body.rstrip()}\n```"
        title = arg.strip() or self.text.get("admonitions", {}).get(name, name.capitalize())
        dropdown = "dropdown" in options.get("class", "") or name == "dropdown"
        if dropdown or SOLUTION.match(title):
            return f"#### {title}\n\n{inner.strip()}"
        quoted = "\n".join(("> " + line) if line.strip() else ">" for line in inner.strip().splitlines())
        return f"> **{title}**\n>\n{quoted}"

    def figure_cell(self, key: str, cell_index: int) -> str:
        pattern = re.compile(r"""glue\(\s*["']%s["']""" % re.escape(key))
        hits = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and pattern.search(c.source)]
        if not hits:
            self.missing.append(f"figure {key}")
            return self.text["that_glues"].format(key=key)
        i = min(hits, key=lambda j: abs(j - cell_index))
        side = self.text["above"] if i < cell_index else self.text["below"]
        return self.text["where"].format(side=side, key=key)

    def markdown(self, text: str, cell_index: int) -> str:
        lines = text.split("\n")
        out, i = [], 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                out.append(lines[i])
                i += 1
                continue
            indent = m.group("indent")
            j = block_end(lines, i)
            body = lines[i + 1:j]
            options = {}
            while body and re.match(r"^\s*:[\w-]+:", body[0]):
                k, _, v = body.pop(0).strip()[1:].partition(":")
                options[k.strip()] = v.strip()
            if body and not body[0].strip():
                body.pop(0)
            block = self.directive(m.group("name"), m.group("arg"), options, "\n".join(body), cell_index)
            out.extend(indent + line if line else line for line in block.split("\n"))
            i = j + 1
        return self.inline("\n".join(out))

    def convert(self, keep_outputs: bool = False):
        """The edition of the notebook. ``keep_outputs``: keep the code cells' stored outputs (the copy nbval runs,
        tools/nbval_run.py, compares them); the published edition has none."""
        nb = nbformat.from_dict(self.nb)
        for idx, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                if self.catalog:  # translated before the conversion: the messages are MyST source
                    cell.source = i18n.apply_catalog(cell.source, self.catalog)
                cell.source = self.markdown(cell.source, idx)
                cell.pop("attachments", None) if not cell.get("attachments") else None
            elif cell.cell_type == "code" and not keep_outputs:
                cell.outputs = []
                cell.execution_count = None
                cell.metadata.pop("execution", None)
        setup_cell.apply(nb, self.path, self.root, lang=self.lang)
        nb.metadata.pop("widgets", None)
        colab = nb.metadata.setdefault("colab", {})
        colab.setdefault("provenance", [])
        if setup_cell.runtimes(nb, self.path).get("accelerator") == "GPU":
            nb.metadata["accelerator"] = "GPU"
        return nb


LEFTOVERS = ("{glue", "{cite", "{numref", "{ref}", "{doc}", "{eq}", ":::", "```{")


def leftovers(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for token in LEFTOVERS:
            if token in cell.source:
                found.append(f"cell {i}: {token}")
    return found


def executed_values(path: Path, executed: Path | None) -> dict | None:
    """Glued values from the book build's executed copy (``_build/jupyter_execute/chapters/<name>``) when it is at
    least as new as the chapter: after ``make book`` the edition states the numbers of that build. myst-nb moves
    the glued outputs out of that copy into ``<name>.glue.json`` beside it (name -> output); both are read."""
    if executed is None:
        return None
    copy = Path(executed) / path.name
    if not copy.exists() or copy.stat().st_mtime < path.stat().st_mtime:
        return None
    nb = nbformat.read(copy, as_version=4)
    glue_file = copy.with_suffix(".glue.json")
    if glue_file.is_file():
        outputs = [nbformat.from_dict(o) for o in json.loads(glue_file.read_text()).values()]
        nb.cells.append(nbformat.v4.new_code_cell("", outputs=outputs))
    values = glue_values(nb)
    return values or None


def build(paths, out: Path, root: Path = ROOT, executed: Path | None = None, lang: str = "en",
          keep_outputs: bool = False) -> list[Path]:
    labels, bib = label_index(root, TEXT[lang]), bibliography(root)
    written = []
    for path in paths:
        path = Path(path).resolve()
        nb = nbformat.read(path, as_version=4)
        conv = Converter(nb, path, root, labels, bib, lang=lang)
        fresh = executed_values(path, executed)
        if fresh:
            conv.glue.update(fresh)
        edition = conv.convert(keep_outputs=keep_outputs)
        target = out / "chapters" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(edition, target)
        for line in conv.missing:
            print(f"{path.name}: {line} not found (written as plain text)", file=sys.stderr)
        bad = leftovers(edition)
        if bad:
            raise SystemExit(f"{path.name}: markup survived: {bad}")
        written.append(target)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "colab")
    ap.add_argument("--executed", type=Path, default=ROOT / "_build" / "jupyter_execute" / "chapters",
                    help="the book build's executed notebooks, whose glued values are used when newer than the "
                         "chapter (default: those of `make book`); otherwise the chapter's stored outputs")
    ap.add_argument("--lang", default="en", choices=sorted(TEXT),
                    help="the edition's language: zh_CN translates the prose with locales/zh_CN (tools/i18n.py)")
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or setup_cell.chapter_paths()
    for target in build(paths, args.out, executed=args.executed, lang=args.lang):
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
