"""The course kit's common ground: a chapter's exercises as data, and the answer-cell convention.

A chapter ends with ``## Exercises``: a numbered list whose items start ``N. **(Conceptual)**`` or
``N. **(Coding)**``; a graded (Coding) exercise gives a fenced ``python`` skeleton with the call of its checker
(``ch04.check_fold(fold)``, from ``normbook.book.exercises``); each item's model answer is a
``:::{admonition} Solution`` / ``:class: dropdown`` block, optionally followed by a ``:::{admonition} Rubric``
block for a conceptual exercise (CONTRIBUTING.md). :func:`exercises` reads that into :class:`Exercise` records.

**Answer cells** (CONTRIBUTING.md, "Answer cells"). In the student edition every exercise is followed by its own
answer cell, with the stable cell id ``chNN-exK`` (chapter NN, exercise K) and the tag ``answer``:

- a graded exercise: a code cell holding the skeleton, its imports and the checker call (the student runs it to
  practise); its metadata ``normbook.answer`` names the exercise, each check (checker, function, points) and
  what the answer may not call (``forbid``: ``"torch-norm"``, ``"autograd"`` or dotted names);
- a conceptual exercise: a markdown cell to write the answer in (graded by hand with the rubric);
- a coding exercise without a checker: a code cell, graded by hand.

The grader (tools/grade.py) runs only the code answer cells, found by id (or, when a student recreated the cell,
by the function it defines), then its own copy of the checkers. A chapter may also carry answer cells itself: a
code cell tagged ``answer`` and ``skip-execution`` (the book does not run it) with the same metadata; the student
edition then uses it instead of generating one from the fenced skeleton.
"""
from __future__ import annotations

import ast
import copy
import importlib.util
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_edition import FENCE, SOLUTION, block_end  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

HEADING = re.compile(r"^##\s+Exercises\s*$", re.M)
ITEM = re.compile(r"^(?P<num>\d+)\.\s+\*\*\((?P<kind>Conceptual|Coding)\)\*\*", re.I)
CHECK_CALL = re.compile(r"(?:\bnormbook\.(?:book\.)?exercises\.)?\b(?P<module>ch\d\d)\.(?P<checker>check_\w+)\("
                        r"\s*(?P<function>[A-Za-z_]\w*)")
CODE_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?:python|py|ipython3?)\s*$")
RUBRIC = re.compile(r"^\s*rubric\b", re.I)
INTEXT = re.compile(r"^\s*exercise\b", re.I)
ANSWER_TAG = "answer"
#: names a skeleton may use because the page imported them earlier, and the import its answer cell then needs
IMPLICIT_IMPORTS = (("torch", "import torch"), ("F", "import torch.nn.functional as F"), ("nn", "from torch import nn"),
                    ("math", "import math"), ("np", "import numpy as np"))
METADATA_KEY = "normbook"

#: phrases of an exercise's text that rule functions out, and the group the grader forbids for them
FORBID_PHRASES = {
    "autograd": re.compile(r"without\s+(?:using\s+)?autograd|without\s+`?backward", re.I),
    "torch-norm": re.compile(r"without\s+(?:a|an|the|torch's|PyTorch's|using)?\s*`?(?:torch\.nn\.)?"
                             r"(?:BatchNorm|LayerNorm|GroupNorm|InstanceNorm|normalization)\w*`?\s+(?:layer|module)"
                             r"|without\s+`?(?:torch\.nn\.functional|F)\.\w+_norm|without\s+torch's\s+layer", re.I),
}


@dataclass
class Check:
    module: str        # "ch04"
    checker: str       # "check_fold"
    function: str      # "fold": the student's function the checker is called with
    points: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.module}.{self.checker}"

    def as_dict(self) -> dict:
        return {"checker": self.name, "function": self.function, "points": self.points}


@dataclass
class Exercise:
    chapter: str                     # "04"
    number: int
    kind: str                        # "Conceptual" or "Coding"
    question: str                    # the item's text, without its solution, rubric and skeleton
    skeleton: Optional[str]          # the fenced python block of the item, dedented
    solution: str                    # the solution block's body (markdown)
    rubric: Optional[str]            # the rubric block's body, when the chapter has one
    checks: List[Check] = field(default_factory=list)
    forbid: List[str] = field(default_factory=list)
    start: int = 0                   # lines of the exercises cell (or of the in-text exercise's cell): [start, end)
    end: int = 0
    prefix: str = "ex"               # "ex": the chapter's closing exercises; "in": an exercise in the text
    cell: Optional[int] = None       # an in-text exercise's markdown cell
    title: str = ""                  # an in-text exercise's admonition title

    @property
    def id(self) -> str:
        return f"ch{self.chapter}-{self.prefix}{self.number}"

    @property
    def graded(self) -> bool:
        return bool(self.checks)

    @property
    def solution_code(self) -> List[str]:
        return code_blocks(self.solution)

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)


# --------------------------------------------------------------------------- reading a chapter

def chapter_number(path) -> str:
    return Path(path).name[:2]


def exercises_cell(nb) -> Optional[int]:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and HEADING.search(cell.source):
            return i
    return None


def code_blocks(text: str) -> List[str]:
    """The fenced python blocks of a markdown text, dedented, in order."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        m = CODE_FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        close = re.compile(r"^[ \t]*" + re.escape(m.group("fence")[0]) + "{%d,}[ \t]*$" % len(m.group("fence")))
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        out.append(textwrap.dedent("\n".join(lines[i + 1:j])).strip("\n"))
        i = j + 1
    return out


def _blocks(lines: List[str], start: int, end: int):
    """(kind, first line, last line) of the directive blocks and python fences in lines[start:end]."""
    i = start
    while i < end:
        m, c = FENCE.match(lines[i]), CODE_FENCE.match(lines[i])
        if m:
            j = min(block_end(lines, i), end - 1)
            name, arg = m.group("name"), m.group("arg")
            kind = ("solution" if name in ("admonition", "dropdown") and (SOLUTION.match(arg) or
                                                                          (name == "dropdown" and not arg.strip()))
                    else "rubric" if name in ("admonition", "dropdown") and RUBRIC.match(arg) else "directive")
            yield kind, i, j
            i = j + 1
        elif c:
            close = re.compile(r"^[ \t]*" + re.escape(c.group("fence")[0]) + "{%d,}[ \t]*$" % len(c.group("fence")))
            j = i + 1
            while j < end and not close.match(lines[j]):
                j += 1
            yield "code", i, min(j, end - 1)
            i = j + 1
        else:
            i += 1


def _fenced_lines(lines: List[str]) -> set:
    """Indices of the lines inside fenced blocks (a ``# comment`` there is not a heading)."""
    inside = set()
    for _, first, last in _blocks(lines, 0, len(lines)):
        inside.update(range(first + 1, last))
    return inside


def _body(lines: List[str], first: int, last: int) -> str:
    body = lines[first + 1:last]
    while body and re.match(r"^\s*:[\w-]+:", body[0]):
        body.pop(0)
    return textwrap.dedent("\n".join(body)).strip("\n")


def exercise_module_path() -> str:
    """Where the checkers are importable from (``normbook.book.exercises`` since the package split)."""
    for name in ("normbook.book.exercises", "normbook.exercises"):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return "normbook.book.exercises"


def _checker_forbids(check: Check) -> List[str]:
    """What a checker declares its exercise rules out (``check_x.forbids``), if the checker says."""
    try:
        module = importlib.import_module(f"{exercise_module_path()}.{check.module}")
    except ImportError:
        return []
    return list(getattr(getattr(module, check.checker, None), "forbids", ()) or ())


def _checks_and_forbid(text: str) -> tuple:
    checks, seen = [], set()
    for call in CHECK_CALL.finditer(text):
        key = (call.group("module"), call.group("checker"))
        if key not in seen:
            seen.add(key)
            checks.append(Check(call.group("module"), call.group("checker"), call.group("function")))
    forbid = [group for group, phrase in FORBID_PHRASES.items() if phrase.search(text)]
    for check in checks:
        forbid += [name for name in _checker_forbids(check) if name not in forbid]
    return checks, forbid


def intext_exercises(nb, chapter: str) -> List[Exercise]:
    """Graded exercises in the text: an ``{admonition}`` whose title starts with "Exercise" and that holds a
    python block with a checker call (chapter 2's "Exercise: derive the backward pass before reading on"). Their
    ids are ``chNN-inK`` (K: their order on the page); the text after them is their solution."""
    out = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown" or HEADING.search(cell.source):
            continue
        lines = cell.source.split("\n")
        for kind, first, last in _blocks(lines, 0, len(lines)):
            m = FENCE.match(lines[first]) if kind == "directive" else None
            if not m or m.group("name") != "admonition" or not INTEXT.match(m.group("arg")):
                continue
            code = [(a, b) for k, a, b in _blocks(lines, first + 1, last) if k == "code"
                    and CHECK_CALL.search("\n".join(lines[a:b + 1]))]
            if not code:
                continue
            a, b = code[0]
            skeleton = textwrap.dedent("\n".join(lines[a + 1:b])).strip("\n")
            question = "\n".join(line for i, line in enumerate(lines[first + 1:last], first + 1)
                                 if not (a <= i <= b) and not re.match(r"^\s*:[\w-]+:", line)).strip("\n")
            checks, forbid = _checks_and_forbid(question + "\n" + skeleton)
            out.append(Exercise(chapter=chapter, number=len(out) + 1, kind="Coding", question=question,
                                skeleton=skeleton, solution="", rubric=None, checks=checks, forbid=forbid,
                                start=first, end=last + 1, prefix="in", cell=index, title=m.group("arg").strip()))
    return out


def exercises(nb, chapter: str) -> List[Exercise]:
    """The chapter's exercises: the graded ones in its text (:func:`intext_exercises`), then those of its
    ``## Exercises`` section, in order."""
    return intext_exercises(nb, chapter) + closing_exercises(nb, chapter)


def closing_exercises(nb, chapter: str) -> List[Exercise]:
    """The exercises of the chapter's ``## Exercises`` section, in order (none without one)."""
    index = exercises_cell(nb)
    if index is None:
        return []
    lines = nb.cells[index].source.split("\n")
    head = next(i for i, line in enumerate(lines) if HEADING.match(line))
    fenced = _fenced_lines(lines)
    starts = [i for i in range(head + 1, len(lines)) if ITEM.match(lines[i]) and i not in fenced]
    after = next((i for i in range(head + 1, len(lines)) if re.match(r"^#{1,2}\s", lines[i]) and i not in fenced),
                 len(lines))
    out = []
    for k, start in enumerate(starts):
        if start >= after:
            break
        end = min(starts[k + 1] if k + 1 < len(starts) else len(lines), after)
        m = ITEM.match(lines[start])
        solution, rubric, skeleton, drop = "", None, None, []
        for kind, first, last in _blocks(lines, start, end):
            if kind == "solution":
                solution = (solution + "\n\n" + _body(lines, first, last)).strip()
                drop.append((first, last))
            elif kind == "rubric":
                rubric = _body(lines, first, last)
                drop.append((first, last))
            elif kind == "code" and skeleton is None and CHECK_CALL.search("\n".join(lines[first:last + 1])):
                skeleton = textwrap.dedent("\n".join(lines[first + 1:last])).strip("\n")
                drop.append((first, last))
        kept = [line for i, line in enumerate(lines[start:end], start)
                if not any(a <= i <= b for a, b in drop)]
        question = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n")
        checks, forbid = _checks_and_forbid("\n".join(kept) + "\n" + (skeleton or ""))
        out.append(Exercise(chapter=chapter, number=int(m.group("num")), kind=m.group("kind").capitalize(),
                            question=question, skeleton=skeleton, solution=solution, rubric=rubric,
                            checks=checks, forbid=forbid, start=start, end=end))
    return out


# --------------------------------------------------------------------------- answer cells

def _function_def(code: str, name: str) -> Optional[str]:
    """The ``def name(...):`` line of ``code`` (the model solution), for an exercise without a skeleton."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_source_segment(code, node).split("\n")[0]
    return None


def skeleton_source(ex: Exercise) -> str:
    """The code of a graded exercise's answer cell: the skeleton (or, without one, the solution's ``def`` line
    and a placeholder), the imports of the checker modules it calls, and each checker call."""
    where = exercise_module_path()
    if ex.skeleton:
        body = ex.skeleton
    else:
        parts = []
        for check in ex.checks:
            line = next((_function_def(code, check.function) for code in ex.solution_code
                         if _function_def(code, check.function)), None)
            if line is None:
                m = re.search(rf"`{check.function}(\([^`]*\))`", ex.question)
                line = f"def {check.function}{m.group(1) if m else '(*args)'}:"
            parts.append(f"{line}\n    ...  # your code")
        body = "\n\n\n".join(parts)
    body = re.sub(r"\bfrom normbook(?:\.book)?\.exercises import\b", f"from {where} import", body)
    imports = [f"from {where} import {m}" for m in dict.fromkeys(c.module for c in ex.checks)
               if not re.search(rf"^\s*from {re.escape(where)} import .*\b{m}\b", body, re.M)]
    lines = [line for line in body.split("\n")]
    # keep the imports first (a skeleton may import after its def, as chapter 8's does)
    moved = [line for line in lines if re.match(rf"^from {re.escape(where)} import ", line)]
    rest = [line for line in lines if line not in moved]
    while rest and not rest[0].strip():
        rest.pop(0)
    calls = [f"{c.module}.{c.checker}({c.function})" for c in ex.checks
             if not re.search(rf"\b{c.module}\.{c.checker}\(", body)]
    # the grader runs the answer cell alone: it imports what its code uses (the page imported it earlier)
    imports += [line for alias, line in IMPLICIT_IMPORTS if re.search(rf"(?<![\w.]){re.escape(alias)}\.", body)
                and not re.search(rf"^\s*(import|from)\s.*\b{re.escape(alias)}\b", body, re.M)]
    source = "\n".join(imports + moved) + ("\n\n" if imports or moved else "") + "\n".join(rest).rstrip()
    if calls:
        source += "\n\n" + "\n".join(calls)
    return source.strip("\n")


def answer_metadata(ex: Exercise) -> dict:
    meta = {"exercise": ex.id, "kind": ex.kind.lower()}
    if ex.graded:
        meta["checks"] = [c.as_dict() for c in ex.checks]
        if ex.forbid:
            meta["forbid"] = list(ex.forbid)
    else:
        meta["graded_by"] = "rubric"
    return meta


def _asks_for_text(ex: Exercise) -> bool:
    q = re.sub(r"```.*?```", "", ex.question, flags=re.S)
    return "?" in q or bool(re.search(r"\b(explain|say|predict|why|how|which|compare)\b", q, re.I))


def answer_cells(ex: Exercise) -> list:
    """The answer cell(s) for one exercise: the code cell (id ``chNN-exK``) of a coding or graded exercise,
    followed by a markdown cell ``chNN-exK-text`` when its text also asks a question; the markdown cell of an
    ungraded conceptual one."""
    meta = {METADATA_KEY: {"answer": answer_metadata(ex)}, "tags": [ANSWER_TAG]}
    if ex.kind == "Conceptual" and not ex.graded:
        cell = nbformat.v4.new_markdown_cell(f"**Your answer to exercise {ex.number}:**\n\n*(write it here)*",
                                             metadata=meta)
        cell.id = ex.id
        return [cell]
    if ex.graded:
        source = skeleton_source(ex)
    else:
        source = f"# Exercise {ex.number}: your code\n"
    cell = nbformat.v4.new_code_cell(source, metadata=meta)
    cell.id = ex.id
    cells = [cell]
    if _asks_for_text(ex):
        text_meta = {METADATA_KEY: {"answer": {"exercise": ex.id, "kind": "text", "graded_by": "rubric"}},
                     "tags": [ANSWER_TAG]}
        text = nbformat.v4.new_markdown_cell(f"**Your explanation for exercise {ex.number}:**\n\n"
                                             "*(write it here)*", metadata=text_meta)
        text.id = f"{ex.id}-text"
        cells.append(text)
    return cells


def authored_answer_cells(nb) -> Dict[str, object]:
    """Answer cells the chapter carries itself (code cells tagged ``answer`` with ``normbook.answer`` metadata),
    by exercise id."""
    out = {}
    for cell in nb.cells:
        meta = cell.metadata.get(METADATA_KEY, {}).get("answer")
        if ANSWER_TAG in cell.metadata.get("tags", []) and meta and meta.get("exercise"):
            out[meta["exercise"]] = cell
    return out


def split_exercises(nb, chapter: str, strip) -> tuple:
    """The notebook with its exercises cell split after each exercise, each followed by its answer cell(s);
    ``strip(text) -> (text, n)`` removes solution (and rubric) blocks from each piece. Returns (nb, exercises)."""
    nb = copy.deepcopy(nb)
    exs = exercises(nb, chapter)
    authored = authored_answer_cells(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get(METADATA_KEY, {}).get("answer", {}).get("exercise")
                not in authored or c.cell_type == "markdown"]
    intext = [ex for ex in intext_exercises(nb, chapter)]
    for ex in sorted(intext, key=lambda e: (-e.cell, -e.start)):  # from the end, so indices stay valid
        cell = nb.cells[ex.cell]
        lines = cell.source.split("\n")
        block = lines[ex.start:ex.end]
        code = [(a, b) for k, a, b in _blocks(block, 1, len(block) - 1) if k == "code"
                and CHECK_CALL.search("\n".join(block[a:b + 1]))][0]
        block[code[0]:code[1] + 1] = ["*Write your answer in the code cell below (run it to check it).*"]
        before, after = "\n".join(lines[:ex.start] + block).strip("\n"), "\n".join(lines[ex.end:]).strip("\n")
        new = [nbformat.v4.new_markdown_cell(before, metadata=copy.deepcopy(cell.metadata))]
        new[0].id = cell.id
        new += [authored[ex.id]] if ex.id in authored else answer_cells(ex)
        if after.strip():
            new.append(nbformat.v4.new_markdown_cell(after, metadata=copy.deepcopy(cell.metadata)))
        nb.cells[ex.cell:ex.cell + 1] = new
    index = exercises_cell(nb)
    closing = closing_exercises(nb, chapter)
    if index is None or not closing:
        return nb, exs
    lines = nb.cells[index].source.split("\n")
    pieces = []
    pieces.append(("md", "\n".join(lines[:closing[0].start])))
    for ex in closing:
        item = ex.question.split("\n")
        if ex.skeleton:
            item.append("")
            item.append("   *Write your answer in the code cell below (run it to check it).*")
        pieces.append(("md", "\n".join(item)))
        pieces.append(("answer", ex))
    pieces.append(("md", "\n".join(lines[closing[-1].end:])))
    cells, first = [], nb.cells[index]
    for kind, value in pieces:
        if kind == "answer":
            cells += [authored[value.id]] if value.id in authored else answer_cells(value)
            continue
        text, _ = strip(value)
        text = text.strip("\n")
        if not text.strip():
            continue
        cell = nbformat.v4.new_markdown_cell(text, metadata=copy.deepcopy(first.metadata))
        if not cells:
            cell.id = first.id
        cells.append(cell)
    nb.cells[index:index + 1] = cells
    return nb, exs


def exercises_metadata(exs: List[Exercise]) -> list:
    return [answer_metadata(ex) for ex in exs]
