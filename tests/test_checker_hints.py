"""Every checker's hint guides without printing the answer (issue 28).

For each graded exercise of every chapter, the checker is run on a function that returns nothing; its hint must
not contain the exercise's reference formula. The reference is the chapter's own solution code for that exercise
(tools/coursekit.py reads it), compared with ``normbook.book.exercises.hint_leaks`` (shared runs of tokens with
two or more operators, three or more under other names, or a whole right-hand side), plus the fragments declared
below for hints the heuristic cannot see (a formula written in another order). The test can fail: a hint that
prints ``dx = gamma * r / n * (n * dy - dbeta - x_hat * dgamma)`` is caught (test_exercises_machinery.py).

Hints that leak today are strict xfails: when a checker's hint is rewritten the test XPASSes, which fails, and
its entry comes off LEAKING. DECLARED belongs next to each checker (``check_x.answer_fragments``) once the
chapters' checkers are rewritten; it lives here until then.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import nbformat
import pytest

from normbook.book.exercises import hint_leaks

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import coursekit  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))

#: fragments a checker's hint must not contain, for leaks hint_leaks cannot see (a rearranged formula, a line of
#: the answer's code), for checkers that do not declare them yet as ``check_x.answer_fragments`` (chapters 5 and 7
#: declare theirs on the checker)
DECLARED: dict = {}

#: (exercise id, checker) whose hint prints the answer today (issue 28 named ch02's backward hint, the closed form,
#: and ch04's fold hint, the whole formula; chapter 2's were rewritten since)
LEAKING: set = set()


def _graded():
    out = []
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        for ex in coursekit.exercises(nb, coursekit.chapter_number(path)):
            for check in ex.checks:
                out.append((ex, check))
    return out


GRADED = _graded()


def _checker(name: str):
    module, _, attr = name.partition(".")
    return getattr(importlib.import_module(f"normbook.book.exercises.{module}"), attr)


def _normal(text: str) -> str:
    return re.sub(r"\s+|`|\*(?=\w)|(?<=\w)\*(?!\w)", "", text)


def _cases():
    for ex, check in GRADED:
        marks = [pytest.mark.xfail(strict=True, reason="the hint prints the answer (issue 28)")] \
            if (ex.id, check.name) in LEAKING else []
        yield pytest.param(ex, check, id=f"{ex.id}-{check.checker}", marks=marks)


@pytest.mark.parametrize("ex, check", list(_cases()))
def test_hint_does_not_print_the_reference(ex, check):
    result = _checker(check.name)(lambda *args, **kwargs: None, verbose=False)
    assert not result, "a function that returns nothing passed the checker"
    assert result.hint, f"{check.name} gives no hint"
    reference = "\n\n".join(ex.solution_code)  # (test_graded_solution_has_code: a solution without code)
    leaks = hint_leaks(result.hint, reference)
    declared = list(DECLARED.get(check.name, [])) + list(getattr(_checker(check.name), "answer_fragments", []))
    leaks += [f for f in declared if _normal(f) in _normal(result.hint)]
    assert not leaks, f"the hint of {check.name} prints {leaks}: {result.hint}"


#: graded exercises whose solution has no code (the instructor edition has no model answer to run)
NO_CODE: set = set()


@pytest.mark.parametrize("ex", [pytest.param(ex, id=ex.id, marks=[pytest.mark.xfail(
    strict=True, reason="the solution is prose only")] if ex.id in NO_CODE else [])
    for ex in {ex.id: ex for ex, _ in GRADED}.values() if ex.prefix == "ex"])  # in-text: the text derives it
def test_graded_solution_has_code_that_passes_its_checkers(ex):
    assert ex.solution_code, f"{ex.id}: the solution shows no code"
    from _notebook import tagged_sources
    namespace = {"__name__": f"solution_{ex.id}"}
    for src in tagged_sources(ex.chapter):  # a solution may use what the page defines (its mechanism cells)
        exec(compile(src, f"<chapter {ex.chapter} mechanism>", "exec"), namespace)  # noqa: S102
    import torch
    namespace.update(torch=torch, math=importlib.import_module("math"), nn=torch.nn, F=torch.nn.functional)
    for check in ex.checks:
        namespace[check.module] = importlib.import_module(f"normbook.book.exercises.{check.module}")
    for code in ex.solution_code:
        exec(compile(code, f"<{ex.id} solution>", "exec"), namespace)  # noqa: S102
    for check in ex.checks:
        assert _checker(check.name)(namespace[check.function], verbose=False), f"{ex.id}: {check.name}"


#: checkers no exercise calls (none: chapter 1's check_grad_to_data, left over from its old exercise 8, was removed)
UNUSED = set()


def test_every_checker_is_used_by_an_exercise_and_every_leak_entry_exists():
    used = {check.name for _, check in GRADED}
    defined = set()
    for path in sorted((ROOT / "src" / "normbook" / "book" / "exercises").glob("ch[0-9][0-9].py")):
        module = importlib.import_module(f"normbook.book.exercises.{path.stem}")
        defined |= {f"{path.stem}.{name}" for name, fn in inspect.getmembers(module, inspect.isfunction)
                    if name.startswith("check_") and fn.__module__ == module.__name__}
    assert defined - used == UNUSED, f"checkers without an exercise: {defined - used - UNUSED}; " \
        f"listed as unused but used: {UNUSED - (defined - used)}"
    assert used <= defined, f"calls of missing checkers: {used - defined}"
    pairs = {(ex.id, check.name) for ex, check in GRADED}
    assert LEAKING <= pairs, f"stale LEAKING entries: {LEAKING - pairs}"
    assert set(DECLARED) <= used


def test_declared_fragments_are_matched_whitespace_free():
    fragment = _checker("ch05.check_rms_norm").answer_fragments[0]
    assert _normal("x / sqrt(mean(x**2 over the last dim)").startswith(_normal(fragment))
