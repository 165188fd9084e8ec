"""What `make coursekit` (part of `make test`) built: the student edition (notebooks and PDF), the instructor
edition, and the grades of the fixture submissions of chapter 4 (plus the instructor's own solutions).

Runs when ``NORMBOOK_COURSEKIT`` names the build folder (``_build``); skipped otherwise (`make unit` collects it).
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import coursekit  # noqa: E402
import instructor_edition  # noqa: E402
import student_edition  # noqa: E402

BUILD = Path(os.environ["NORMBOOK_COURSEKIT"]) if os.environ.get("NORMBOOK_COURSEKIT") else None
pytestmark = pytest.mark.skipif(BUILD is None, reason="set NORMBOOK_COURSEKIT=_build (make coursekit)")
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ROOT / "tests" / "fixtures" / "submissions" / "ch04" / "expected.csv"


def _build(*parts) -> Path:
    return (BUILD if BUILD.is_absolute() else ROOT / BUILD).joinpath(*parts)


def _plain(text: str) -> str:
    return " ".join(text.split())


def _sentences(text: str) -> list:
    """Sentences of plain prose (no math, code or markup, at least 40 characters), so that they can be looked for
    in the notebooks' markdown and in the PDF's text alike."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return [s for s in instructor_edition.sentences(text) if len(s) >= 40 and not re.search(r"[$`{}\\|*_<>]", s)]


def _solution_lines(chapter: Path) -> list:
    """Distinctive sentences of the chapter's solutions (not in the rest of the chapter)."""
    nb = nbformat.read(chapter, as_version=4)
    rest = _plain(" ".join(student_edition.strip_solutions(c.source)[0] for c in nb.cells
                           if c.cell_type == "markdown"))
    return [s for ex in coursekit.exercises(nb, coursekit.chapter_number(chapter))
            for s in _sentences(ex.solution) if _plain(s) not in rest]


def _question_lines(chapter: Path) -> list:
    nb = nbformat.read(chapter, as_version=4)
    return [s for ex in coursekit.exercises(nb, coursekit.chapter_number(chapter))
            for s in _sentences(re.sub(r"^\d+\.\s+\*\*\((Conceptual|Coding)\)\*\*", "", ex.question))]


def _pdf_plain(text: str) -> str:
    return _plain(text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"'))


# --------------------------------------------------------------------------- the grades

def test_fixture_grades_match_expected():
    with open(_build("grades", "ch04.csv"), newline="", encoding="utf-8") as f:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(f)}
    with open(EXPECTED, newline="", encoding="utf-8") as f:
        expected = list(csv.DictReader(f))
    students = {s for s, _ in rows}
    assert students == {"cheat", "correct", "empty", "moved", "raising", "skipped", "solutions", "tampered",
                        "unreadable", "wrong"}
    exercises = [ex.id for ex in coursekit.exercises(nbformat.read(CHAPTERS[3], as_version=4), "04")]
    assert len(rows) == len(students) * len(exercises), "one row per student and exercise"
    for want in expected:
        got = rows[(want["student"], want["exercise"])]
        assert (float(got["points"]) if got["points"] != "" else "") == \
            (float(want["points"]) if want["points"] != "" else ""), (want, got)
        assert re.search(want["feedback"], got["feedback"]), (want, got["feedback"])
    for row in rows.values():
        if row["max_points"] != "":
            assert 0 <= float(row["points"]) <= float(row["max_points"]), row
        else:
            assert row["points"] == "" and ("by hand" in row["feedback"] or "not a readable" in row["feedback"])


# --------------------------------------------------------------------------- the student edition

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebooks_have_answer_cells_and_no_solutions(chapter):
    nb = nbformat.read(_build("student", "chapters", chapter.name), as_version=4)
    nbformat.validate(nb)
    text = _plain("\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    lines = _solution_lines(chapter)
    assert lines, "no solution text to look for"
    survivors = [line for line in lines if _plain(line) in text]
    assert not survivors, f"solution text in the student edition: {survivors[:2]}"
    assert not re.search(r"#### Solution|\{admonition\}|\{glue|\{cite|\{numref", text)
    ids = {c.get("id"): c for c in nb.cells}
    for ex in coursekit.exercises(nbformat.read(chapter, as_version=4), coursekit.chapter_number(chapter)):
        cell = ids[ex.id]
        assert "answer" in cell.metadata["tags"]
        if ex.graded:
            assert cell.cell_type == "code" and all(f"{c.module}.{c.checker}(" in cell.source for c in ex.checks)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def student_pdf_text():
    pdf = _build("student", "normbook-student.pdf")
    if not pdf.exists() and not os.environ.get("CI"):
        pytest.skip("no student PDF (make_pdf.py skipped it: chromium or poppler-utils missing)")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text


def test_student_pdf_has_no_solutions(student_pdf_text):
    text = _pdf_plain(student_pdf_text)
    found, questions = [], 0
    for chapter in CHAPTERS:
        found += [line for line in _solution_lines(chapter) if _plain(line) in text]
        questions += sum(_plain(line) in text for line in _question_lines(chapter))
    assert questions >= 20, "the exercises' text is not found in the PDF either: the check would be vacuous"
    assert not found, f"solution text in the student PDF: {found[:2]}"


def test_student_pdf_reads_as_a_book(student_pdf_text):
    pages = student_pdf_text.split("\f")
    assert len(pages) > 100
    contents = _plain(" ".join(pages[:4]))
    assert re.search(r"Contents .*1\. Why normalize\? \d+ .*4\. Batch normalization at inference time \d+", contents)
    for n in range(1, len(CHAPTERS) + 1):
        assert any(re.search(rf"^\s*CHAPTER {n}\s*$", page, re.M | re.I) for page in pages), f"no Chapter {n}"
    # the run-time table may run over a page break: read its page and the next two
    start = next(i for i, page in enumerate(pages) if "Run Time" in page)
    runtimes = " ".join(pages[start:start + 3])
    assert re.search(r"chapters/04_inference_mode\s.*\d+\.\d", _plain(runtimes)), "the run-time table is empty"


# --------------------------------------------------------------------------- the instructor edition

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_instructor_edition_has_a_guide_solutions_and_an_autograder(chapter):
    n = coursekit.chapter_number(chapter)
    page = _build("instructor", "guide", f"ch{n}.md").read_text(encoding="utf-8")
    exs = coursekit.exercises(nbformat.read(chapter, as_version=4), n)
    for ex in exs:
        assert f"## {ex.id}:" in page and "**Model solution:**" in page
    assert page.count("**Rubric**") == sum(not ex.graded for ex in exs)
    assert "estimate" in page
    solutions = nbformat.read(_build("instructor", "solutions", chapter.name), as_version=4)
    filled = {c.get("id"): c.source for c in solutions.cells if "answer" in c.metadata.get("tags", [])}
    for ex in exs:
        if ex.graded and ex.solution_code:  # (a solution in prose only: tests/test_checker_hints.py, NO_CODE)
            assert "..." not in filled[ex.id].split("def ", 1)[-1].split("\n")[1], f"{ex.id} not filled in"
    assert _build("instructor", "autograder", f"ch{n}-autograder.zip").exists()
    assert f"guide/ch{n}.md" in _build("instructor", "README.md").read_text(encoding="utf-8")
