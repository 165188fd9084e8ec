"""Checks the translation catalogs (``locales/<lang>/LC_MESSAGES/**/*.po``) and reports their progress.

    python tools/po_check.py [locales/zh_CN/LC_MESSAGES ...]   # exit 1 on a problem; progress is only reported

A translation must keep what the English message's markup means. For every translated, non-fuzzy message:

- every role of the msgid is in the msgstr, as often, with the same content (``{glue:text}`key:.3f```,
  ``{cite:p}`key```, ``{eq}`label```); a role with an explicit title (``{numref}`Figure %s <fig-x>```,
  ``{doc}`text <page>```) keeps its name and target, and its title may be translated; the msgstr adds no role;
- every inline math span (``$...$``) and every code span (```` `...` ````) of the msgid is in the msgstr, as often;
- the backticks and the unescaped ``$`` of the msgstr are balanced (an unclosed span would swallow the rest of
  the paragraph);
- every bold span of the msgid is one in the msgstr as CommonMark parses it (``**实验。**一个`` shows
  its asterisks: a closing ``**`` after full-width punctuation needs a space or punctuation after it);
- ``msgfmt -c`` accepts the file (syntax, header, format strings).

Sphinx's strict build already fails on a dropped citation or a wrong glue key; it does not notice an unclosed
backtick, an unbalanced ``$`` or a ``{numref}`` pointed at another figure, which this does. Fuzzy translations
(the English changed since) are not checked against the new English: the site shows the English until a
translator updates them. Progress (translated / fuzzy / untranslated messages and English words per page) is
printed and never fails the check.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:.-]*)\}(?P<ticks>`+)(?P<text>.*?)(?P=ticks)", re.S)
TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
CODE = re.compile(r"(?<![`\\])(?P<ticks>`+)(?!`)(?P<text>.+?)(?<!`)(?P=ticks)(?!`)", re.S)
MATH = re.compile(r"(?<![\\$])\$(?!\$)(?P<text>(?:\\.|[^$\\])+?)(?<!\\)\$(?!\$)", re.S)
DISPLAY = re.compile(r"\$\$.*?\$\$", re.S)
WORD = re.compile(r"[A-Za-z]{2,}")
ENGLISH_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


# --------------------------------------------------------------------------- reading and writing catalogs

@dataclass
class Entry:
    msgid: str = ""
    msgstr: str = ""
    msgctxt: str | None = None
    fuzzy: bool = False
    flags: list = field(default_factory=list)  # other flags (python-format, ...)
    previous: str | None = None  # "#| msgid"
    comments: list = field(default_factory=list)  # other comment lines, verbatim
    obsolete: bool = False
    line: int = 0


def _unquote(s: str) -> str:
    s = s.strip()
    assert s.startswith('"') and s.endswith('"'), s
    out, i, body = [], 0, s[1:-1]
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read(path: Path) -> list[Entry]:
    entries, cur, key = [], Entry(), None
    started = False

    def flush():
        nonlocal cur, started, key
        if started:
            entries.append(cur)
        cur, started, key = Entry(), False, None

    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.rstrip("\n")
        if not line.strip():
            flush()
            continue
        if not started:
            cur.line, started = n, True
        if line.startswith("#~"):
            cur.obsolete = True
            cur.comments.append(line)
            continue
        if line.startswith("#,"):
            flags = [f.strip() for f in line[2:].split(",") if f.strip()]
            cur.fuzzy = "fuzzy" in flags
            cur.flags = [f for f in flags if f != "fuzzy"]
            continue
        if line.startswith("#| msgid "):
            cur.previous, key = _unquote(line[len("#| msgid "):]), "previous"
            continue
        if line.startswith('#| "'):
            cur.previous += _unquote(line[3:])
            continue
        if line.startswith("#"):
            cur.comments.append(line)
            continue
        m = re.match(r'^(msgctxt|msgid|msgstr)\s+(".*")$', line)
        if m:
            key = m.group(1)
            setattr(cur, key, _unquote(m.group(2)))
            continue
        if line.startswith('"') and key in ("msgctxt", "msgid", "msgstr"):
            setattr(cur, key, getattr(cur, key) + _unquote(line))
            continue
        raise ValueError(f"{path}:{n}: cannot read {line!r}")
    flush()
    return entries


def _quote(s: str, prefix: str) -> list[str]:
    esc = s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\r", "\\r")
    parts = esc.split("\n")
    chunks = [p + "\\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    if len(chunks) <= 1:
        return [f'{prefix}"{chunks[0] if chunks else ""}"']
    return [f'{prefix}""'] + [f'"{c}"' for c in chunks]


def write(entries: list[Entry], path: Path) -> None:
    """Write the catalog, then let ``msgcat --no-wrap`` lay it out as gettext's own tools do."""
    blocks = []
    for e in entries:
        if e.obsolete:  # "#~" lines, kept as they are
            blocks.append("\n".join(e.comments))
            continue
        lines = [c for c in e.comments if not c.startswith("#~")]
        flags = (["fuzzy"] if e.fuzzy else []) + e.flags
        if flags:
            lines.append("#, " + ", ".join(flags))
        if e.previous is not None:
            prev = _quote(e.previous, "#| msgid ")
            lines += [prev[0]] + ["#| " + p for p in prev[1:]]
        if e.msgctxt is not None:
            lines += _quote(e.msgctxt, "msgctxt ")
        lines += _quote(e.msgid, "msgid ")
        lines += _quote(e.msgstr, "msgstr ")
        blocks.append("\n".join(lines))
    path = Path(path)
    tmp = path.with_suffix(".tmp.po")
    tmp.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    subprocess.run(["msgcat", "--no-wrap", "--no-location", "-o", str(path), str(tmp)], check=True)
    tmp.unlink()


# --------------------------------------------------------------------------- what a message contains

def roles(text: str) -> list[tuple]:
    """(name, content) of each role; for a titled cross-reference (name, "<target>"), as its title may change."""
    out = []
    for m in ROLE.finditer(text):
        name, content = m.group("name"), m.group("text")
        titled = TITLED.match(content)
        if titled and not name.startswith(("glue", "cite", "math")):
            out.append((name, f"<{titled.group('target').strip()}>"))
        else:
            out.append((name, content))
    return out


def _without_roles(text: str) -> str:
    return ROLE.sub(" ", text)


def code_spans(text: str) -> list[str]:
    return [m.group("text") for m in CODE.finditer(_without_roles(text))]


def math_spans(text: str) -> list[str]:
    rest = CODE.sub(" ", _without_roles(text))
    rest = DISPLAY.sub(" ", rest)
    return [m.group("text") for m in MATH.finditer(rest)]


def prose(text: str) -> str:
    """The text with roles, display and inline math, code spans, URLs and HTML tags taken out."""
    rest = _without_roles(text)
    rest = CODE.sub(" ", rest)
    rest = DISPLAY.sub(" ", rest)
    rest = MATH.sub(" ", rest)
    rest = re.sub(r"\\begin\{\w+\*?\}.*?\\end\{\w+\*?\}", " ", rest, flags=re.S)
    rest = re.sub(r"https?://\S+|<[^>]+>|\]\([^)]*\)", " ", rest)
    return rest


def has_prose(text: str) -> bool:
    """A word of at least two Latin letters outside markup: something to translate. A display-math block (the
    one kind of message Sphinx does not strip: its source keeps the line breaks around the formula) has none."""
    if text != text.strip():
        return False
    return bool(WORD.search(prose(text)))


def english_words(text: str) -> int:
    return len(ENGLISH_WORD.findall(prose(text)))


def unbalanced(text: str) -> list[str]:
    problems = []
    rest = ROLE.sub(" ", text)
    rest = CODE.sub(" ", rest)
    if "`" in rest:
        problems.append("unbalanced backtick")
    rest = DISPLAY.sub(" ", rest)
    rest = MATH.sub(" ", rest)
    if re.search(r"(?<!\\)\$", rest):
        problems.append("unbalanced $")
    return problems


def emphasis(text: str) -> Counter:
    """How many bold and italic spans CommonMark (markdown-it, as MyST parses) finds in a message, math taken out.
    Chinese text needs care here: ``**实验。**一个`` is not bold in CommonMark (a closing ``**`` after punctuation
    must be followed by whitespace or punctuation), and shows its asterisks; ``**实验**。一个`` is."""
    from markdown_it import MarkdownIt

    rest = DISPLAY.sub(" M ", CODE.sub(lambda m: m.group(0), text))
    rest = MATH.sub(" M ", rest)
    tokens = MarkdownIt("commonmark").parseInline(rest)
    children = [t for tok in tokens for t in (tok.children or [])]
    counts = Counter(t.type for t in children if t.type in ("strong_open", "em_open"))
    counts["literal **"] = sum(t.content.count("**") for t in children if t.type == "text")
    return counts


def entry_problems(msgid: str, msgstr: str) -> list[str]:
    problems = []
    want, got = Counter(roles(msgid)), Counter(roles(msgstr))
    for (name, content), n in (want - got).items():
        problems.append(f"role {{{name}}}`{content}` missing" + (f" ({n}x)" if n > 1 else ""))
    for (name, content), n in (got - want).items():
        problems.append(f"role {{{name}}}`{content}` not in the English" + (f" ({n}x)" if n > 1 else ""))
    for kind, spans in (("math", math_spans), ("code", code_spans)):
        want_s, got_s = Counter(spans(msgid)), Counter(spans(msgstr))
        for span, n in (want_s - got_s).items():
            shown = f"${span}$" if kind == "math" else f"`{span}`"
            problems.append(f"{kind} {shown} missing" + (f" ({n}x)" if n > 1 else ""))
    problems += unbalanced(msgstr)
    # bold only: an italic title may rightly become 《…》
    want_e, got_e = emphasis(msgid), emphasis(msgstr)
    if got_e["strong_open"] < want_e["strong_open"] or got_e["literal **"] > want_e["literal **"]:
        problems.append("a bold span of the English shows its ** instead: CommonMark closes ** before CJK text only"
                        " after a letter, not after 。：，(write **实验**。, the punctuation outside)")
    return problems


# --------------------------------------------------------------------------- the check

def check_file(po: Path) -> list[str]:
    problems = []
    rel = po.relative_to(ROOT) if po.is_relative_to(ROOT) else po
    res = subprocess.run(["msgfmt", "-c", "-o", "/dev/null", str(po)], capture_output=True, text=True)
    if res.returncode:
        problems.append(f"{rel}: msgfmt -c: {res.stderr.strip()}")
    try:
        entries = read(po)
    except (ValueError, AssertionError) as exc:
        return problems + [f"{rel}: {exc}"]
    for e in entries:
        if not e.msgid or not e.msgstr or e.fuzzy or e.obsolete:
            continue
        for p in entry_problems(e.msgid, e.msgstr):
            problems.append(f"{rel}:{e.line}: {p}\n    msgid:  {e.msgid[:120]!r}\n    msgstr: {e.msgstr[:120]!r}")
    return problems


def catalogs(dirs) -> list[Path]:
    out = []
    for d in dirs:
        d = Path(d)
        out += [d] if d.is_file() else sorted(d.rglob("*.po"))
    return out


def progress(po: Path) -> dict:
    counts = Counter()
    for e in read(po):
        if not e.msgid or e.obsolete:
            continue
        words = english_words(e.msgid)
        state = "fuzzy" if e.fuzzy else ("translated" if e.msgstr else "untranslated")
        if not has_prose(e.msgid):
            state = "no prose"
        counts[state] += 1
        counts[state + " words"] += words
    return counts


def progress_report(directory: Path) -> str:
    directory = Path(directory)
    rows, total = [], Counter()
    for po in catalogs([directory]):
        c = progress(po)
        total.update(c)
        rows.append((po.relative_to(directory).with_suffix("").as_posix(), c))
    lines = [f"Translation progress, {directory.relative_to(ROOT) if directory.is_relative_to(ROOT) else directory}"
             " (messages; English words in brackets; 'no prose': math, code or Chinese only, filled in):",
             f"{'page':<32} {'translated':>16} {'fuzzy':>12} {'untranslated':>16} {'no prose':>9}"]

    def fmt(c, k):
        return f"{c[k]} ({c[k + ' words']})"

    for name, c in rows + [("all pages", total)]:
        lines.append(f"{name:<32} {fmt(c, 'translated'):>16} {fmt(c, 'fuzzy'):>12} {fmt(c, 'untranslated'):>16} "
                     f"{c['no prose']:>9}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path)
    ap.add_argument("--quiet", action="store_true", help="no progress report")
    args = ap.parse_args(argv)
    dirs = args.paths or sorted((ROOT / "locales").glob("*/LC_MESSAGES"))
    files = catalogs(dirs)
    if not files:
        print("no catalogs found")
        return 1
    problems = [p for po in files for p in check_file(po)]
    if not args.quiet:
        for d in dirs:
            if Path(d).is_dir():
                print(progress_report(Path(d)))
    if problems:
        print(f"\n{len(problems)} problem(s) in the catalogs:")
        print("\n".join(problems))
        return 1
    print(f"\n{len(files)} catalogs checked: markup kept, msgfmt -c clean.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
