"""The book's notebook conventions, checked (and, where mechanical, fixed) in one place.

    python tools/nbconventions.py --check [notebooks...]   exit 1 and list what breaks a convention
    python tools/nbconventions.py --fix   [notebooks...]   apply the mechanical fixes in place

Conventions (CONTRIBUTING.md explains why):
- nbval's checks are cell tags (``nbval-check-output``), never a ``# NBVAL_CHECK_OUTPUT`` comment on the page.
- A cell that only glues values for the prose (every statement a ``glue(...)`` call) is tagged ``remove-cell``: the
  book shows the value in the text, not the bookkeeping. ``--fix`` splits a trailing run of glue calls off a
  cell that also computes (the computation keeps the outputs; the new glue cell gets re-executed).
- A figure is glued with ``display=True`` in a ``remove-cell`` cell: Jupyter and Colab show the figure as that
  cell's output, and the book shows it once, where ``{glue:figure}`` places it.
- Code lines are at most 88 characters (the page's text column).
- No comparative or outcome word is chosen by a bare comparison (``"higher" if gap > 0 else "lower"``,
  ``"faster" if r < 0.95 else ...``): the sign of a noisy difference, or an ad-hoc threshold, is not a verdict.
  Such words come from ``normbook.book.stats`` (``compare(...).word(...)``, ``training_outcome(...)``). A line
  that compares an exact, noise-free quantity with a fixed value (an error against a tolerance) says so with the
  comment ``# nbconventions: not-a-verdict`` and a reason.
"""
from __future__ import annotations

import argparse
import ast
import re
import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINE = 88
CHECK_COMMENT = "# NBVAL_CHECK_OUTPUT"
CHECK_TAG = "nbval-check-output"


def _source(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _tags(cell) -> list:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _glue_call(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "glue")


def _is_figure_glue(stmt: ast.stmt) -> bool:
    """``glue("fig...", ...)``: figures are glued under names starting with ``fig``."""
    args = stmt.value.args
    return bool(args) and isinstance(args[0], ast.Constant) and str(args[0].value).startswith("fig")


def _display_kw(stmt: ast.stmt):
    for kw in stmt.value.keywords:
        if kw.arg == "display" and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def _parse(src: str):
    try:
        return ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        return None


def _new_code_cell(source: str, tags: list) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8],
            "metadata": {"tags": list(tags)}, "outputs": [], "source": source}


def _titles(nb: dict) -> list:
    """(cell index, line) of every level-1 Markdown heading outside fenced blocks."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        fence = None
        for line in _source(cell).splitlines():
            marker = re.match(r"^(`{3,}|:{3,})", line)
            if marker:
                if fence is None:
                    fence = marker.group(1)
                elif line.strip() == fence:
                    fence = None
                continue
            if fence is None and line.startswith("# "):
                found.append((i, line))
    return found


#: Words that state an outcome or a comparison; choosing one by a bare ``<``/``>`` test is a verdict without an
#: interval.
VERDICT_WORDS = re.compile(
    r"\b(higher|lower|above|below|faster|slower|larger|smaller|greater|better|worse|beats?|exceed(s|ed)?|"
    r"rais(es|ed)|lower(s|ed)|trains?|does not|more|less|fewer|improves?|helps?|hurts?|wider|narrower|"
    r"rises?|rising|falls?|falling|flat|increases?|decreases?|outperforms?|same|equal|within|as fast)\b",
    re.IGNORECASE)
NOT_A_VERDICT = "# nbconventions: not-a-verdict"


def _words_in(node: ast.AST) -> bool:
    """Whether an expression is (or builds) a string holding a verdict word."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and VERDICT_WORDS.search(sub.value):
            return True
    return False


def _order_test(node: ast.AST) -> bool:
    return isinstance(node, ast.Compare) and any(isinstance(op, (ast.Lt, ast.Gt, ast.LtE, ast.GtE)) for op in node.ops)


def bare_verdicts(src: str) -> list:
    """Line numbers (1-based) where a verdict word is chosen by a bare order comparison: a conditional
    expression ``"word" if a > b else ...`` or an ``if a > b:`` whose branch assigns or glues such a word."""
    tree = _parse(src)
    if tree is None:
        return []
    lines = src.splitlines()
    hits = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.IfExp) and _order_test(node.test) and (_words_in(node.body) or _words_in(node.orelse)):
            hits.add(node.lineno)
        elif isinstance(node, ast.If) and _order_test(node.test):
            branches = node.body + node.orelse
            if any(_words_in(b) for b in branches if isinstance(b, (ast.Assign, ast.Expr, ast.AnnAssign))):
                hits.add(node.lineno)
    # the parse drops magic lines (%..., !...), so map back by content rather than trusting line numbers
    kept = [l for l in lines if not l.lstrip().startswith(("%", "!"))]
    return sorted(n for n in hits if NOT_A_VERDICT not in kept[n - 1])


def problems(nb: dict) -> list:
    """Every convention the notebook breaks, as readable strings."""
    found = []
    titles = _titles(nb)
    if len(titles) != 1:
        found.append(f"{len(titles)} level-1 headings (cells {', '.join(str(i) for i, _ in titles)}): a chapter "
                     "has exactly one title; the others belong to another page or should be '##'")
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src, tags = _source(cell), cell.get("metadata", {}).get("tags", [])
        if CHECK_COMMENT in src:
            found.append(f"cell {i}: '{CHECK_COMMENT}' comment (use the '{CHECK_TAG}' tag)")
        for n, line in enumerate(src.splitlines(), 1):
            if len(line) > MAX_LINE:
                found.append(f"cell {i} line {n}: {len(line)} characters (at most {MAX_LINE})")
        tree = _parse(src)
        if tree is None or not tree.body:
            continue
        glues = [s for s in tree.body if _glue_call(s)]
        if glues and len(glues) == len(tree.body) and "remove-cell" not in tags:
            found.append(f"cell {i}: only glue calls but not tagged remove-cell")
        if glues and len(glues) < len(tree.body):
            found.append(f"cell {i}: glue calls mixed with code (put them in a remove-cell cell of their own)")
        for s in glues:
            if _is_figure_glue(s) and _display_kw(s) is not True:
                found.append(f"cell {i}: figure glued without display=True (Jupyter/Colab would not show it)")
        for n in bare_verdicts(src):
            found.append(f"cell {i} line {n}: a verdict word chosen by a bare comparison (the sign of a noisy "
                         "difference or an ad-hoc threshold); use normbook.book.stats")
    return found


def fix(nb: dict) -> int:
    """Apply the mechanical fixes in place; returns how many cells changed."""
    changed = 0
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        src = _source(cell)
        if CHECK_COMMENT in src:
            lines = [l for l in src.splitlines() if l.strip() != CHECK_COMMENT]
            src = "\n".join(lines)
            cell["source"] = src
            if CHECK_TAG not in _tags(cell):
                _tags(cell).append(CHECK_TAG)
            changed += 1
        tree = _parse(src)
        if tree is None or not tree.body:
            cells.append(cell)
            continue
        body = tree.body
        # figure glues: display=True, so the figure shows outside the book
        src_lines = src.splitlines()
        for s in body:
            if _glue_call(s) and _is_figure_glue(s) and _display_kw(s) is not True:
                for ln in range(s.lineno - 1, s.end_lineno):
                    src_lines[ln] = src_lines[ln].replace("display=False", "display=True")
                if _display_kw(s) is None and "display=True" not in "".join(src_lines[s.lineno - 1:s.end_lineno]):
                    end = s.end_lineno - 1
                    src_lines[end] = src_lines[end][::-1].replace(")", ")eurT=yalpsid ,", 1)[::-1]
                changed += 1
        src = "\n".join(src_lines)
        cell["source"] = src
        tree = _parse(src)
        body = tree.body
        k = len(body)
        while k > 0 and _glue_call(body[k - 1]):
            k -= 1
        if k == 0:  # only glue calls
            if "remove-cell" not in _tags(cell):
                _tags(cell).append("remove-cell")
                changed += 1
            cells.append(cell)
        elif k < len(body):  # code, then a trailing run of glue calls: split
            lines = src.splitlines()
            cut = body[k].lineno - 1
            head, tail = "\n".join(lines[:cut]).rstrip(), "\n".join(lines[cut:]).strip()
            cell["source"] = head
            cells.append(cell)
            cells.append(_new_code_cell(tail, ["remove-cell"]))
            changed += 1
        else:
            cells.append(cell)
    nb["cells"] = cells
    return changed


def chapter_notebooks() -> list:
    return sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--fix", action="store_true")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or chapter_notebooks()
    bad = 0
    for path in paths:
        nb = json.loads(path.read_text())
        if args.fix:
            n = fix(nb)
            if n:
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
                print(f"{path}: {n} cell(s) changed")
        for p in problems(nb):
            bad += 1
            print(f"{path.name}: {p}")
    return 1 if bad and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
