"""The instructor edition: solutions, rubrics, a one-page guide per chapter, and the autograders.

    python tools/instructor_edition.py --out _build/instructor [chapters/NN_*.ipynb ...]     # `make instructor`

writes into ``<out>``:

- ``README.md``: the course at a glance (exercises, graded points and the time estimates per chapter, against
  the hours of syllabus.md), and how to grade;
- ``guide/chNN.md``: one page per chapter. For each exercise: what it assesses (the checker's own statement of
  what it checks, or the question, and the closest learning goal), how it is graded (checker and points, or the
  rubric), the expected time, the common wrong answers, the model solution and, for a conceptual exercise, the
  rubric. Every estimate is marked as one;
- ``solutions/NN_*.ipynb``: the student edition with every answer cell filled in with the model solution (run it,
  or grade it: it must score full marks, which ``make test`` checks for the fixture chapter);
- ``autograder/chNN-autograder.zip``: the chapter's Otter autograder (tools/grade.py), also usable as
  ``otter run -a chNN-autograder.zip submission.ipynb`` with ``tools/`` on ``PYTHONPATH``.

**Common wrong answers** of a graded exercise are measured, not guessed: the model solution is mutated in the ways
students typically go wrong (epsilon left out, the biased variance where the unbiased one belongs or the reverse,
the two momentum conventions swapped, statistics over dimension 0 only, a square root or a term dropped, outputs
in the wrong order), each mutant is run through the checker, and the guide lists what the checker says to it,
or that it does not notice (a weakness of the checker). A conceptual exercise lists the mistakes its model answer
names.

**Expected times** are a judgement, stated as one: a conceptual exercise 5 minutes per question it asks plus 1
minute per 100 characters of its model answer; a coding exercise 10 minutes plus 2 minutes per line of the model
solution's code, plus its run time when it repeats an experiment; rounded up to 5 minutes. The reading time of
a chapter is its prose at 120 words a minute (technical reading with the code); the run time is the set-up
cell's estimate for a CPU. Calibrate all of it with a first cohort.

**Rubrics.** A chapter may give a conceptual exercise its own rubric (a ``:::{admonition} Rubric`` block after the
solution, CONTRIBUTING.md); otherwise the guide drafts one from the model answer, one point per claim it makes,
and says that it is a draft.
"""
from __future__ import annotations

import argparse
import ast
import copy
import difflib
import importlib
import io
import math
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import coursekit  # noqa: E402
import grade  # noqa: E402
import setup_cell  # noqa: E402
import student_edition  # noqa: E402

ROOT = HERE.parent
WORDS_PER_MINUTE = 120


# --------------------------------------------------------------------------- reading the chapter

def learning_goals(nb) -> list:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "Learning goals" in cell.source:
            m = re.search(r"[`:]{3,}\s*\{admonition\}\s*Learning goals\s*\n(.*?)\n[`:]{3,}", cell.source, re.S)
            if m:
                return [re.sub(r"^\s*-\s+", "", item).strip() for item in m.group(1).split("\n- ")
                        if item.strip()]
    return []


def title(nb) -> str:
    for cell in nb.cells:
        m = re.search(r"^#\s+(.+)$", cell.source, re.M) if cell.cell_type == "markdown" else None
        if m:
            return m.group(1).strip()
    return ""


def prose_words(nb) -> int:
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    text = re.sub(r"^[`:]{3,}.*$", "", text, flags=re.M)
    text = re.sub(r"\$\$.*?\$\$", " formula ", text, flags=re.S)
    return len(re.findall(r"[A-Za-z][A-Za-z'-]*", text))


_STOP = set("the a an of and or to in on for with is are be by as at that this it its from into which what when "
            "how why each one two your you their than then not can does do write say explain between".split())


def _terms(text: str) -> set:
    words = re.findall(r"[a-z][a-z0-9_]+", re.sub(r"\$[^$]*\$|`", " ", text.lower()))
    return {w[:6] for w in words if w not in _STOP and len(w) > 2}


def closest_goal(question: str, goals: list) -> tuple:
    """(goal, shared terms) of the learning goal sharing the most terms (6-letter stems) with the question."""
    q = _terms(question)
    scored = sorted(((len(q & _terms(g)), g) for g in goals), key=lambda t: -t[0])
    return (scored[0][1], scored[0][0]) if scored and scored[0][0] >= 2 else (None, 0)


def checker_statement(check) -> str:
    module = importlib.import_module(f"{coursekit.exercise_module_path()}.{check.module}")
    doc = (getattr(module, check.checker).__doc__ or "").strip()
    return " ".join(doc.split())


# --------------------------------------------------------------------------- time estimates (judgement)

def _round5(minutes: float) -> int:
    return int(max(5, 5 * math.ceil(minutes / 5)))


def expected_minutes(ex) -> int:
    if ex.kind == "Conceptual":
        questions = max(1, ex.question.count("?"))
        return _round5(5 * questions + len(ex.solution) / 100)
    lines = sum(len([line for line in code.split("\n") if line.strip() and not line.strip().startswith("#")])
                for code in ex.solution_code)
    minutes = 10 + 2 * lines
    if not ex.graded and re.search(r"\b(repeat|rerun|train|run)\b", ex.question, re.I):
        minutes += 10  # runs an experiment of the chapter again
    return _round5(minutes)


# --------------------------------------------------------------------------- common wrong answers, measured

class _Mutator(ast.NodeTransformer):
    """One mutation of a kind at one site (``target``-th occurrence)."""

    def __init__(self, kind: str, target: int):
        self.kind, self.target, self.seen, self.done = kind, target, 0, False

    def _hit(self) -> bool:
        hit = self.seen == self.target
        self.seen += 1
        if hit:
            self.done = True
        return hit

    def visit_BinOp(self, node):
        self.generic_visit(node)
        names = {n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "") for n in ast.walk(node.right)}
        if self.kind == "no-eps" and isinstance(node.op, ast.Add) and any("eps" in n for n in names) \
                and self._hit():
            return node.left
        if self.kind == "drop-term" and isinstance(node.op, (ast.Add, ast.Sub)) and self._hit():
            return node.left
        if self.kind == "momentum" and isinstance(node.op, ast.Sub) and isinstance(node.left, ast.Constant) \
                and node.left.value == 1 and self._hit():
            return node.right
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if self.kind == "variance" and name == "var" and self._hit():
            keys = {k.arg for k in node.keywords}
            if "unbiased" in keys or "correction" in keys:
                node.keywords = [k for k in node.keywords if k.arg not in ("unbiased", "correction")]
            else:
                node.keywords.append(ast.keyword(arg="unbiased", value=ast.Constant(False)))
            return node
        if self.kind == "no-sqrt" and name in ("sqrt", "rsqrt") and node.args and self._hit():
            return node.args[0]
        if self.kind == "dim0" and name in ("mean", "var", "sum", "std") and node.args and self._hit():
            node.args = [ast.Constant(0)] + node.args[1:]
            return node
        return node

    def visit_Return(self, node):
        self.generic_visit(node)
        if self.kind == "order" and isinstance(node.value, ast.Tuple) and len(node.value.elts) >= 2 \
                and self._hit():
            elts = list(node.value.elts)
            elts[0], elts[1] = elts[1], elts[0]
            node.value.elts = elts
        return node


MUTATIONS = {
    "no-eps": "epsilon left out",
    "variance": "the other variance (biased where unbiased belongs, or the reverse)",
    "momentum": "the momentum convention swapped (the weight of the old value used for the new one)",
    "dim0": "statistics over dimension 0 only",
    "no-sqrt": "the square root forgotten",
    "order": "the outputs returned in the wrong order",
    "drop-term": "a term of a sum dropped",
}


def mutants(code: str, limit_per_kind: int = 2):
    """(kind, changed line, mutated code) for each mutation of each kind that changes the code."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return
    base = ast.unparse(tree)
    for kind in MUTATIONS:
        left = limit_per_kind
        for target in range(32):
            mut = _Mutator(kind, target)
            new = mut.visit(copy.deepcopy(tree))
            if not mut.done:
                break
            ast.fix_missing_locations(new)
            text = ast.unparse(new)
            if text == base:
                continue
            diff = [line[1:].strip() for line in difflib.unified_diff(base.split("\n"), text.split("\n"), n=0,
                                                                         lineterm="")
                    if line.startswith("+") and not line.startswith("+++")]
            yield kind, (diff[0] if diff else ""), text
            left -= 1
            if left == 0:
                break


_PAGES: dict = {}


def _namespace(ex) -> dict:
    """A namespace with what a model solution may use: torch, the chapter's mechanism cells (run once per
    chapter, quietly), the checker modules."""
    if ex.chapter not in _PAGES:
        import torch
        ns = {"__name__": f"chapter_{ex.chapter}", "torch": torch, "nn": torch.nn, "F": torch.nn.functional,
              "math": math}
        with redirect_stdout(io.StringIO()):
            for src in _mechanism_sources(ex.chapter):
                try:
                    exec(compile(src, f"<chapter {ex.chapter} mechanism>", "exec"), ns)  # noqa: S102
                except Exception:  # noqa: BLE001 - a page cell that needs the page's state: skip it
                    pass
        _PAGES[ex.chapter] = ns
    ns = dict(_PAGES[ex.chapter])
    for check in ex.checks:
        ns[check.module] = importlib.import_module(f"{coursekit.exercise_module_path()}.{check.module}")
    return ns


def _mechanism_sources(chapter: str) -> list:
    path = grade.chapter_path(chapter)
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "mechanism" in c.metadata.get("tags", [])]


def _run_checks(ex, code: str) -> list:
    """[(checker, CheckResult or an error string)] of ``code`` defining the exercise's functions."""
    ns = _namespace(ex)
    out = []
    try:
        with redirect_stdout(io.StringIO()):
            exec(compile(code, f"<{ex.id}>", "exec"), ns)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - a mutant that does not even run
        return [(c.name, f"raises {type(exc).__name__} when defined") for c in ex.checks]
    for check in ex.checks:
        module = importlib.import_module(f"{coursekit.exercise_module_path()}.{check.module}")
        fn = ns.get(check.function)
        if fn is None:
            out.append((check.name, f"{check.function} is not defined"))
            continue
        with redirect_stdout(io.StringIO()):
            out.append((check.name, getattr(module, check.checker)(fn, verbose=False)))
    return out


def wrong_answers(ex, limit: int = 7) -> list:
    """(what the mistake is, the changed line, what the checker says or None when it does not notice)."""
    code = "\n\n".join(c for c in ex.solution_code
                       if not re.search(r"^\s*ch\d\d\.check_\w+\(", c, re.M) or "def " in c)
    code = "\n".join(line for line in code.split("\n") if not re.match(r"^\s*ch\d\d\.check_\w+\(", line))
    if not code.strip():
        return []
    baseline = _run_checks(ex, code)
    if not all(isinstance(r, str) is False and bool(r) for _, r in baseline):
        return []  # the model solution does not pass on its own (it needs the page's state): measure nothing
    out, seen = [], set()
    for kind, line, text in mutants(code, limit_per_kind=3):
        if line in seen:
            continue
        seen.add(line)
        for _, result in _run_checks(ex, text):
            if isinstance(result, str):
                said = result
            elif result:
                said = None
            else:
                label, message = result.failures[0]
                said = f"{len(result.failures)} of {result.cases} cases fail; first, {label}: {message}"
            out.append((MUTATIONS[kind], line, said))
            break
        if len(out) >= limit:
            break
    return out


_ABBREVIATIONS = ("i.e.", "e.g.", "cf.", "vs.", "et al.", "Fig.", "Eq.")


def sentences(text: str) -> list:
    """The sentences of a markdown text (abbreviations such as "i.e." do not end one)."""
    text = " ".join(text.split())
    for k, abbr in enumerate(_ABBREVIATIONS):
        text = text.replace(abbr, f"\x00{k}\x00")
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z$`(])", text)
    out = []
    for part in parts:
        for k, abbr in enumerate(_ABBREVIATIONS):
            part = part.replace(f"\x00{k}\x00", abbr)
        out.append(part.strip())
    return [p for p in out if p]


def named_mistakes(ex) -> list:
    """Sentences of the model answer that name a mistake (for a conceptual exercise)."""
    text = re.sub(r"```.*?```", " ", ex.solution, flags=re.S)
    pattern = re.compile(r"\b(mistake|wrong|forget|forgotten|confus|error|pitfall|instead of|not the|usual)\w*",
                         re.I)
    return [s for s in sentences(text) if pattern.search(s)]


# --------------------------------------------------------------------------- rubrics

def draft_rubric(ex) -> list:
    """One point per claim of the model answer (its sentences; code and displayed math kept with their
    sentence), at most six."""
    text = re.sub(r"```.*?```", " (code) ", ex.solution, flags=re.S)
    claims = [s for s in sentences(text) if len(s) > 20]
    if len(claims) > 6:  # merge neighbours until six points remain
        per = math.ceil(len(claims) / 6)
        claims = [" ".join(claims[i:i + per]) for i in range(0, len(claims), per)]
    return claims


# --------------------------------------------------------------------------- page overlap

def page_overlap(ex, nb) -> tuple:
    """(fraction, cell index, tags): the share of the model solution's tokens found, in order, in one code cell of
    the page (its closest one)."""
    from normbook.book.exercises import _TOKEN

    def tokens(code):
        return _TOKEN.findall("\n".join(line.split("#")[0] for line in code.split("\n")))

    sol = tokens("\n".join(ex.solution_code))
    best = (0.0, None, [])
    if not sol:
        return best
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not tokens(cell.source):
            continue
        m = difflib.SequenceMatcher(None, sol, tokens(cell.source), autojunk=False)
        share = sum(b.size for b in m.get_matching_blocks()) / len(sol)
        if share > best[0]:
            best = (share, i, cell.metadata.get("tags", []))
    return best


REPEATS = 0.7  # a graded solution with at least this share of its tokens, in order, in one cell of the page


# --------------------------------------------------------------------------- the guide

def _quote(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in text.strip().split("\n"))


def _plain(nb, path: Path, labels=None, bib=None):
    """A function turning the chapter's MyST markdown into the Colab edition's plain Markdown."""
    conv = student_edition.StudentConverter(nb, path, ROOT, labels, bib)
    return lambda text: conv.markdown(text, 0)


def _plain_exercise(ex, plain):
    ex = copy.copy(ex)
    ex.question, ex.solution = plain(ex.question), plain(ex.solution)
    ex.rubric = plain(ex.rubric) if ex.rubric else ex.rubric
    return ex


def guide(path: Path, labels=None, bib=None) -> tuple:
    """(markdown page, summary dict) for one chapter."""
    nb = nbformat.read(path, as_version=4)
    chapter = coursekit.chapter_number(path)
    plain = _plain(nb, path, labels, bib)
    exs = [_plain_exercise(ex, plain) for ex in coursekit.exercises(nb, chapter)]
    goals = learning_goals(nb)
    words = prose_words(nb)
    runtime = setup_cell.runtimes(nb, path)
    lines = [f"# Chapter {int(chapter)}: {title(nb)}: instructor guide", ""]
    total = sum(expected_minutes(ex) for ex in exs)
    points = sum(ex.points for ex in exs)
    lines += [f"Source: `chapters/{path.name}`. {len(exs)} exercises "
              f"({sum(ex.kind == 'Conceptual' for ex in exs)} conceptual, {sum(ex.kind == 'Coding' for ex in exs)} "
              f"coding, {sum(ex.graded for ex in exs)} graded by a checker for {points:g} points). "
              f"Student edition: `_build/student/chapters/{path.name}`, answer cells `ch{chapter}-exK`.", "",
              "**Time (estimates, a judgement; calibrate with a first cohort):** reading "
              f"{_round5(words / WORDS_PER_MINUTE)} min ({words:,} words of prose at {WORDS_PER_MINUTE} words a "
              f"minute), running the notebook {runtime.get('cpu')} on a CPU ({runtime.get('fast')} in FAST "
              f"mode), all exercises {total} min: about {(_round5(words / WORDS_PER_MINUTE) + total) / 60:.1f} h "
              "in all.", ""]
    if goals:
        lines += ["**Learning goals** (from the chapter):", ""] + [f"{k}. {g}" for k, g in enumerate(goals, 1)] + [""]
    lines += ["| exercise | kind | graded by | points | expected time (estimate) |", "|---|---|---|---|---|"]
    for ex in exs:
        how = ", ".join(f"`{c.name}`" for c in ex.checks) if ex.graded else "rubric (by hand)"
        lines.append(f"| {ex.id} | {ex.kind} | {how} | {ex.points:g} |" if ex.graded else
                     f"| {ex.id} | {ex.kind} | {how} | — |")
        lines[-1] += f" {expected_minutes(ex)} min |"
    lines.append("")
    summary = {"chapter": chapter, "title": title(nb), "exercises": len(exs), "graded": sum(ex.graded for ex in exs),
               "points": points, "reading": _round5(words / WORDS_PER_MINUTE), "exercise_minutes": total,
               "runtime": runtime.get("cpu"), "repeats": [], "weak": []}
    for ex in exs:
        name = f"in-text exercise {ex.number}, \"{ex.title}\"" if ex.prefix == "in" else f"exercise {ex.number}"
        lines += [f"## {ex.id}: {name} ({ex.kind.lower()})", "", _quote(re.sub(
            r"^\d+\.\s+\*\*\((Conceptual|Coding)\)\*\*\s*", "", ex.question)), ""]
        goal, shared = closest_goal(ex.question, goals)
        assesses = []
        for check in ex.checks:
            assesses.append(f"the checker `{check.name}` tests: {checker_statement(check)}")
        if goal:
            assesses.append(f"closest learning goal (by shared terms, a judgement): *{goal}*")
        if assesses:
            lines += ["**Assesses:** " + "; ".join(assesses), ""]
        grading = (f"**Graded by** the autograder ({ex.points:g} point(s)); what the answer may not call: "
                   f"{', '.join(ex.forbid)}." if ex.graded and ex.forbid else
                   f"**Graded by** the autograder ({ex.points:g} point(s))." if ex.graded else
                   "**Graded by hand** with the rubric below.")
        lines += [grading, "", f"**Expected time:** {expected_minutes(ex)} min (estimate, a judgement: "
                  + ("questions asked and the length of the model answer" if ex.kind == "Conceptual" else
                     "lines of the model solution") + ").", ""]
        if ex.graded:
            wrong = wrong_answers(ex)
            if wrong:
                lines += ["**Common wrong answers** (the model solution mutated as students typically go wrong, run "
                          "through the checker):", ""]
                for what, line, said in wrong:
                    if said is None:
                        summary["weak"].append(f"{ex.id}: {what} (`{line}`)")
                    lines.append(f"- {what}: `{line}` → " + (f"the checker says: {said}" if said else
                                                             "**the checker does not notice** (a weakness to fix)"))
                lines.append("")
            share, cell, tags = page_overlap(ex, nb)
            if share >= REPEATS:
                summary["repeats"].append(f"{ex.id} ({share:.0%} of cell {cell})")
                lines += [f"**Note:** the model solution repeats code shown on the page: {share:.0%} of its tokens "
                          f"appear, in order, in code cell {cell}{' (' + ', '.join(tags) + ')' if tags else ''}. "
                          "A student can copy it; for graded work ask for a variant.", ""]
        else:
            named = named_mistakes(ex)
            if named:
                lines += ["**Mistakes the model answer names:**", ""] + [f"- {s}" for s in named] + [""]
        lines += ["**Model solution:**", "", ex.solution.strip() or (
            "*(an exercise in the text: the chapter derives the answer right after it)*" if ex.prefix == "in"
            else "*(the chapter gives none)*"), ""]
        if not ex.graded:
            if ex.rubric:
                lines += ["**Rubric** (from the chapter):", "", ex.rubric.strip(), ""]
            else:
                points_list = draft_rubric(ex)
                lines += [f"**Rubric** (a draft from the model answer, one point per claim; {len(points_list)} "
                          "points; review before use): full credit for each point stated and justified, half for "
                          "a point stated without its reason.", ""]
                lines += [f"{k}. {p}" for k, p in enumerate(points_list, 1)] + [""]
    return "\n".join(lines).rstrip() + "\n", summary


# --------------------------------------------------------------------------- the solutions notebook

def solutions_notebook(path: Path, labels=None, bib=None):
    """The student edition with every answer cell holding the model solution."""
    nb, exs = student_edition.course_edition(path, labels, bib)
    plain = _plain(nbformat.read(path, as_version=4), Path(path), labels, bib)
    by_id = {ex.id: _plain_exercise(ex, plain) for ex in exs}
    where = coursekit.exercise_module_path()
    for cell in nb.cells:
        meta = cell.metadata.get(coursekit.METADATA_KEY, {}).get("answer")
        if not meta:
            continue
        ex = by_id[meta["exercise"]]
        if cell.cell_type == "code" and ex.solution_code:
            imports = [f"from {where} import {m}" for m in dict.fromkeys(c.module for c in ex.checks)]
            code = "\n\n".join(ex.solution_code)
            code = re.sub(r"\bfrom normbook(?:\.book)?\.exercises import\b", f"from {where} import", code)
            calls = [f"{c.module}.{c.checker}({c.function})" for c in ex.checks
                     if not re.search(rf"\b{c.module}\.{c.checker}\(", code)]
            head = [i for i in imports if i not in code] + (["import torch"] if "torch" in code and
                                                             "import torch" not in code else [])
            cell.source = "\n".join(head + ([""] if head else []) + [code] + ([""] + calls if calls else []))
        elif cell.cell_type == "markdown":
            cell.source = f"**Model answer to exercise {ex.number}:**\n\n" + re.sub(
                r"```.*?```", "", ex.solution, flags=re.S).strip()
    nb.metadata[coursekit.METADATA_KEY]["edition"] = "instructor-solutions"
    return nb


# --------------------------------------------------------------------------- all of it

def build(paths, out: Path) -> list:
    out = Path(out)
    (out / "guide").mkdir(parents=True, exist_ok=True)
    (out / "solutions").mkdir(parents=True, exist_ok=True)
    labels, bib = student_edition.colab_edition.label_index(ROOT), student_edition.colab_edition.bibliography(ROOT)
    summaries = []
    for path in paths:
        path = Path(path).resolve()
        page, summary = guide(path, labels, bib)
        (out / "guide" / f"ch{coursekit.chapter_number(path)}.md").write_text(page, encoding="utf-8")
        nbformat.write(solutions_notebook(path, labels, bib), out / "solutions" / path.name)
        grade.build_autograder(path, out / "autograder")
        summaries.append(summary)
    (out / "README.md").write_text(index(summaries), encoding="utf-8")
    return summaries


def syllabus_hours(root: Path = ROOT) -> dict:
    """chapter number (NN) -> the hours per week syllabus.md plans for it (its ten-week table)."""
    out = {}
    path = root / "syllabus.md"
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) >= 4 and cols[0].isdigit() and re.fullmatch(r"\d+(\.\d+)?", cols[-1]):
            m = re.search(r"chapters/(\d\d)_|Chapter (\d+)", cols[1])
            if m:
                out[m.group(1) or f"{int(m.group(2)):02d}"] = float(cols[-1])
    return out


def index(summaries) -> str:
    hours = syllabus_hours()
    lines = ["# normbook course kit: instructor edition", "",
             "Generated by `make instructor` (tools/instructor_edition.py) from the chapters. Hand students "
             "`_build/student/` (`make student`); keep this folder.", "",
             "- `guide/chNN.md`: one page per chapter (what each exercise assesses, how it is graded, expected time, "
             "common wrong answers, model solution, rubric).",
             "- `solutions/`: the student edition with every answer cell filled in.",
             "- `autograder/chNN-autograder.zip`: the Otter autograder of each chapter; `make grade "
             "SUBMISSIONS=dir/` grades a folder of submitted notebooks into `_build/grades/grades.csv`.", "",
             "| chapter | exercises | graded by a checker | points | reading (min) | exercises (min) | run on a CPU "
             "| estimated total (h) | syllabus.md (h) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        total = (s["reading"] + s["exercise_minutes"]) / 60
        planned = hours.get(s["chapter"])
        lines.append(f"| [{int(s['chapter'])}. {s['title']}](guide/ch{s['chapter']}.md) | {s['exercises']} | "
                     f"{s['graded']} | {s['points']:g} | {s['reading']} | {s['exercise_minutes']} | {s['runtime']} | "
                     f"{total:.1f} | {planned:g} |" if planned is not None else
                     f"| [{int(s['chapter'])}. {s['title']}](guide/ch{s['chapter']}.md) | {s['exercises']} | "
                     f"{s['graded']} | {s['points']:g} | {s['reading']} | {s['exercise_minutes']} | {s['runtime']} | "
                     f"{total:.1f} | — |")
    lines += ["", "Times are estimates (a judgement, see tools/instructor_edition.py): prose at "
              f"{WORDS_PER_MINUTE} words a minute, exercises from the length of their model answers. They are the "
              "basis for the hours per week of syllabus.md; measure them with your first cohort.", ""]
    repeats = [r for s in summaries for r in s["repeats"]]
    weak = [w for s in summaries for w in s["weak"]]
    if repeats:
        lines += ["**Graded exercises whose model solution repeats code shown on the page** (ask for a variant "
                  "before grading them): " + "; ".join(repeats) + ".", ""]
    if weak:
        lines += ["**Mistakes a checker does not notice** (from the mutation runs): " + "; ".join(weak) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "instructor")
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    for s in build(paths, args.out):
        print(f"ch{s['chapter']}: {s['exercises']} exercises, {s['graded']} graded, guide "
              f"{args.out / 'guide' / ('ch' + s['chapter'] + '.md')}")
    print(args.out / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
