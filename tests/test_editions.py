"""The Colab/Jupyter edition and the student edition of every chapter (tools/colab_edition.py,
tools/student_edition.py).

- The Colab edition has no MyST markup left (no ``{glue``, ``{cite``, ``{numref``, ``:::`` or ```` ```{ ````), its
  set-up cell first, and every glued value of the prose filled in.
- The student edition has no solution text left and is otherwise the chapter unchanged.
- Every Colab edition notebook executes in FAST mode in a kernel where ``myst_nb`` cannot be imported (as in Colab
  or a bare Jupyter), shows at least one image per ``{glue:figure}`` the book shows, and records every value the
  prose glues (the book build reads them from this execution). That execution is nbval's
  (``make nbval``: tools/nbval_run.py runs nbval over the editions and saves them executed in
  ``_build/nbval/fast/executed/``, or ``NORMBOOK_EDITIONS_EXECUTED``); this test reads it and checks that it ran
  the edition's current code. The student edition's code cells are the same cells (checked), so that one
  execution covers both editions. Without that folder the test skips locally and fails in CI.

``NORMBOOK_EDITION_CHAPTERS=02,03`` restricts the test to some chapters (the full run executes them all).
"""
from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_edition  # noqa: E402
import setup_cell  # noqa: E402
import student_edition  # noqa: E402

ONLY = [s.strip() for s in os.environ.get("NORMBOOK_EDITION_CHAPTERS", "").split(",") if s.strip()]
CHAPTERS = [p for p in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
            if not ONLY or p.name[:2] in ONLY]


def _markdown(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _figures(nb) -> int:
    return len(re.findall(r"^[`:]{3,}\s*\{glue:figure\}", _markdown(nb), re.M))


@pytest.fixture(scope="module")
def colab_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("colab")
    colab_edition.build(CHAPTERS, out)
    return out / "chapters"


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    student_edition.build(CHAPTERS, out)
    return out


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_colab_edition_has_no_markup(chapter, colab_dir):
    nb = nbformat.read(colab_dir / chapter.name, as_version=4)
    text = _markdown(nb)
    for token in ("{glue", "{cite", "{numref", "{ref}", "{doc}", ":::", "```{"):
        assert token not in text, f"{token} survives in the edition of {chapter.name}"
    assert "(the value `" not in text, "a glued value was not found in the executed chapter"
    assert "setup" in nb.cells[0].metadata.get("tags", []), "the set-up cell is not first"
    assert nb.cells[0].source == setup_cell.render(nb, chapter)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert text.count("**Figure ") >= _figures(nbformat.read(chapter, as_version=4))


def _solution_bodies(nb) -> list[str]:
    """The text lines of each solution block in the chapter (long enough to be distinctive)."""
    cells = [c.source for c in nb.cells if c.cell_type == "markdown"]
    # lines the chapter also has outside its solutions (an exercise's skeleton repeated in its solution, say)
    kept = {line.strip() for src in cells for line in student_edition.strip_solutions(src)[0].split("\n")}
    bodies = []
    for source in cells:
        if not student_edition.strip_solutions(source)[1]:
            continue
        bodies += [line.strip() for line in source.split("\n")
                   if line.strip() not in kept and len(line.strip()) > 25 and not line.strip().startswith(":")]
    return bodies


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_has_no_solutions(chapter, student_dir, colab_dir):
    original = nbformat.read(chapter, as_version=4)
    nb = nbformat.read(student_dir / chapter.name, as_version=4)
    text = _markdown(nb)
    assert not re.search(r"^[`:]{3,}\s*\{(admonition|dropdown)\}\s*Solution", text, re.M | re.I)
    bodies = _solution_bodies(original)
    if "Solution" in _markdown(original):
        assert bodies, "the chapter has solutions but none were found"
    survivors = [b for b in bodies if b in text]
    assert not survivors, f"solution text survives: {survivors[:3]}"
    # nothing else changed: the same code cells, and every other markdown line kept in order
    code = [c.source for c in original.cells if c.cell_type == "code"
            and not student_edition.SOLUTION_TAGS & set(c.metadata.get("tags", []))]
    assert [c.source for c in nb.cells if c.cell_type == "code"] == code
    # every other markdown line is kept: only whole solution blocks were deleted, cell by cell
    student_md = iter(c.source for c in nb.cells if c.cell_type == "markdown")
    for cell in (c for c in original.cells if c.cell_type == "markdown"):
        before = cell.source.split("\n")
        stripped, n = student_edition.strip_solutions(cell.source)
        if not n:
            assert next(student_md) == cell.source
            continue
        after = next(student_md).split("\n") if stripped.strip() else []
        ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
        assert all(op in ("equal", "delete") for op, *_ in ops), "a kept line was changed"
        for op, i1, i2, _, _ in ops:
            chunk = [line for line in before[i1:i2] if line.strip()]
            if op == "delete" and chunk:
                assert re.match(r"^\s*[`:]{3,}\s*\{(admonition|dropdown)\}", chunk[0]), chunk[0]
                assert re.match(r"^\s*[`:]{3,}\s*$", chunk[-1]), chunk[-1]
    # the student's code is the Colab edition's code (executed below) without its set-up cell
    edition = nbformat.read(colab_dir / chapter.name, as_version=4)
    edition_code = [c.source for c in edition.cells[1:] if c.cell_type == "code"]
    student_code = [s for s in code if "google.colab" not in s]
    assert edition_code == student_code


EXECUTED = Path(os.environ.get("NORMBOOK_EDITIONS_EXECUTED", ROOT / "_build" / "nbval" / "fast" / "executed"))


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_colab_edition_executes_and_shows_every_figure(chapter, colab_dir):
    path = EXECUTED / chapter.name
    if not path.is_file():
        why = f"no executed edition at {path}: run `make nbval` (tools/nbval_run.py) first"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    nb = nbformat.read(path, as_version=4)
    assert _code(nb) == _code(nbformat.read(colab_dir / chapter.name, as_version=4)), \
        f"{path} ran other code than the chapter's edition has now: run `make nbval` again"
    run = nb.metadata.get("normbook", {}).get("nbval", {})
    assert run.get("myst_nb") is False and not run.get("failed"), f"nbval's run of the edition: {run}"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, "the executed edition has no outputs"
    # the book build reads its glued values from this execution (tools/nbval_run.py fills the build's cache):
    # every value the prose glues was recorded, by normbook.book.glue with myst_nb hidden (tests/test_glue.py)
    glued = colab_edition.glue_references(_markdown(nbformat.read(chapter, as_version=4)))
    missing = sorted(glued - set(colab_edition.glue_values(nb)))
    assert not missing, f"glued in the prose, not recorded by nbval's run: {missing[:10]}"
    images = sum(1 for o in outputs if any(k.startswith("image/") for k in o.get("data", {})))
    figures = _figures(nbformat.read(chapter, as_version=4))
    assert images >= figures, f"{images} images shown for {figures} figures in the book"


# --------------------------------------------------------------------------- the set-up cell (tools/setup_cell.py)

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_setup_cell_is_rendered_from_the_template(chapter):
    """Every chapter's first cell is tools/setup_cell.py's template (`python tools/setup_cell.py --write` fixes it)."""
    nb = nbformat.read(chapter, as_version=4)
    assert not setup_cell.problems(nb, chapter)


def test_setup_cell_write_then_check(tmp_path):
    chapter = CHAPTERS[0]
    copy = tmp_path / chapter.name
    nb = nbformat.read(chapter, as_version=4)
    nbformat.write(nb, copy)
    assert setup_cell.main(["--write", str(copy)]) == 0
    assert setup_cell.main(["--check", str(copy)]) == 0
    written = nbformat.read(copy, as_version=4)
    assert sum("google.colab" in c.source for c in written.cells if c.cell_type == "code") == 1
    first = written.cells[0]
    assert "setup" in first.metadata["tags"] and "remove-cell" in first.metadata["tags"]
    url = setup_cell.config()["repo"]
    assert f"git+{url}@" in first.source
    # everything after the set-up cell is the chapter as it was, minus its old set-up cell
    rest = [c.source for c in written.cells[1:]]
    assert rest == [c.source for c in nb.cells if "google.colab" not in c.source]
