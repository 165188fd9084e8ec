"""The course kit's parts, without building it (tools/coursekit.py, student_edition.py, grade.py,
normbook_grading.py, instructor_edition.py); `make coursekit` builds it all and tests/test_coursekit_built.py checks
what it wrote."""
from __future__ import annotations

import ast
import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import coursekit  # noqa: E402
import grade  # noqa: E402
import instructor_edition  # noqa: E402
import normbook_grading  # noqa: E402
import student_edition  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def _main_chapters() -> set:
    """The notebooks of the table of contents' "Chapters" part (an appendix need not follow their rules)."""
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return {Path(c["file"]).name + ".ipynb" for part in toc["parts"] if part.get("caption") == "Chapters"
            for c in part["chapters"]}


MAIN = _main_chapters()
CH04 = ROOT / "chapters" / "04_inference_mode.ipynb"
FIXTURES = ROOT / "tests" / "fixtures" / "submissions" / "ch04"


def _exercises(path):
    return coursekit.exercises(nbformat.read(path, as_version=4), coursekit.chapter_number(path))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_numbered_exercises_with_solutions_and_graded_skeletons(chapter):
    exs = _exercises(chapter)
    closing = [ex for ex in exs if ex.prefix == "ex"]
    assert [ex.number for ex in closing] == list(range(1, len(closing) + 1))
    assert len({ex.id for ex in exs}) == len(exs)
    if chapter.name in MAIN:
        assert len(closing) >= 5
        assert sum(ex.graded for ex in exs) >= 2, "CONTRIBUTING: at least two exercises graded by a checker"
    for ex in exs:
        assert ex.solution or ex.prefix == "in", f"{ex.id} has no solution block"
        assert "Solution" not in ex.question and ":::" not in ex.question
        if ex.graded:
            source = coursekit.skeleton_source(ex)
            ast.parse(source)
            for check in ex.checks:
                assert f"{check.module}.{check.checker}({check.function})" in source
                assert f"from {coursekit.exercise_module_path()} import {check.module}" in source


def test_forbid_comes_from_the_text_and_the_checker_declaration(monkeypatch):
    exs = {ex.id: ex for ex in _exercises(CH04)}
    assert exs["ch04-ex8"].forbid == ["torch-norm"]  # "Without a BatchNorm layer, compute ..."
    assert exs["ch04-ex4"].forbid == []
    from normbook.book.exercises import ch04
    monkeypatch.setattr(ch04.check_fold, "forbids", ("normbook.fold.fold_batchnorm",), raising=False)
    assert {ex.id: ex for ex in _exercises(CH04)}["ch04-ex4"].forbid == ["normbook.fold.fold_batchnorm"]


@pytest.fixture(scope="module")
def edition():
    return student_edition.course_edition(CH04)


def test_course_edition_has_answer_cells_and_no_solutions(edition):
    nb, exs = edition
    nbformat.validate(nb)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not re.search(r"^#### Solution|\{admonition\}|:::", text, re.M)
    for ex in exs:
        assert ex.solution_code[0] not in text if ex.solution_code else True
        cell = next(c for c in nb.cells if c.get("id") == ex.id)
        assert "answer" in cell.metadata["tags"]
        meta = cell.metadata["normbook"]["answer"]
        assert meta["exercise"] == ex.id
        if ex.graded:
            assert cell.cell_type == "code" and meta["checks"][0]["checker"] == ex.checks[0].name
            assert cell.source == coursekit.skeleton_source(ex)
        elif ex.kind == "Conceptual":
            assert cell.cell_type == "markdown"
    # the answer cell follows its exercise's text
    ids = [c.get("id") for c in nb.cells]
    for ex in exs:
        before = nb.cells[ids.index(ex.id) - 1]
        assert before.source.lstrip().startswith(f"{ex.number}. **(")
    assert nb.metadata["normbook"]["chapter"] == "04"
    assert len(nb.metadata["normbook"]["exercises"]) == len(exs)


def test_course_edition_shows_the_glued_figures_and_has_no_markup(edition):
    nb, _ = edition
    attached = [name for c in nb.cells for name in c.get("attachments", {})]
    assert attached == ["fig_running.png", "fig_lab.png"]
    for cell in nb.cells:
        for name in cell.get("attachments", {}):
            assert f"(attachment:{name})" in cell.source
    assert not student_edition.colab_edition.leftovers(nb)
    assert "setup" in nb.cells[0].metadata["tags"]


def test_strip_solutions_also_removes_rubrics():
    text = "1. **(Conceptual)** Why?\n\n:::{admonition} Solution\n:class: dropdown\nBecause.\n:::\n\n" \
           ":::{admonition} Rubric\n:class: dropdown\n- 1 point: because\n:::\n\n2. next"
    stripped, n = student_edition.strip_solutions(text)
    assert n == 2 and "Because" not in stripped and "1 point" not in stripped and "2. next" in stripped


def test_an_authored_answer_cell_replaces_the_generated_one():
    nb = nbformat.read(CH04, as_version=4)
    own = nbformat.v4.new_code_cell("from normbook.book.exercises import ch04\n\ndef fold(w, b, bn):\n    ...\n",
                                    metadata={"tags": ["answer", "skip-execution"], "normbook": {"answer": {
                                        "exercise": "ch04-ex4", "checks": [
                                            {"checker": "ch04.check_fold", "function": "fold", "points": 3}]}}})
    nb.cells.append(own)
    out, _ = coursekit.split_exercises(nb, "04", student_edition.strip_solutions)
    cells = [c for c in out.cells if c.metadata.get("normbook", {}).get("answer", {}).get("exercise") == "ch04-ex4"
             and c.cell_type == "code"]
    assert len(cells) == 1 and cells[0].source == own.source


# --------------------------------------------------------------------------- the grader's pieces

def test_autograder_zip_has_one_test_per_graded_exercise():
    exs = [ex for ex in _exercises(CH04) if ex.graded]
    with zipfile.ZipFile(grade.build_autograder(CH04, ROOT / "_build" / "test-autograder")) as z:
        names = set(z.namelist())
        assert {f"tests/{ex.id}.py" for ex in exs} | {"otter_config.json", "files/normbook_grading.py"} <= names
        test = z.read("tests/ch04-ex8.py").decode()
    assert "OK_FORMAT = False" in test and '"ch04.check_population_stats"' in test and "['torch-norm']" in test
    compile(test, "ch04-ex8.py", "exec")


def _fixture(name):
    return nbformat.read(FIXTURES / f"{name}.ipynb", as_version=4)


def test_find_answer_by_id_by_definition_or_not_at_all():
    exs = {ex.id: ex for ex in _exercises(CH04)}
    cell, note = grade.find_answer(_fixture("correct"), exs["ch04-ex4"])
    assert cell.id == "ch04-ex4" and note is None
    cell, note = grade.find_answer(_fixture("moved"), exs["ch04-ex4"])
    assert "def fold" in cell.source and "another cell" in note
    cell, note = grade.find_answer(_fixture("skipped"), exs["ch04-ex8"])
    assert cell is None and "no answer cell ch04-ex8" in note
    cell, note = grade.find_answer(_fixture("skipped"), exs["ch04-ex7"])
    assert note == "the answer cell is the skeleton, unchanged"


def test_flags_name_what_a_tampering_cell_does():
    found = grade.flags(_fixture("tampered").cells[[c.get("id") for c in _fixture("tampered").cells]
                                                  .index("ch04-ex4")].source)
    assert "assigns ch04.check_fold" in found and "assigns torch.allclose" in found and "assigns ex.compare" in found
    assert grade.flags("import sys\nx = sys.modules['normbook']\ndef check_fold(f):\n    return True") == \
        ["defines check_fold", "uses sys.modules"]
    assert grade.flags("def fold(w, b, bn):\n    return w, b\n") == []


def test_reduced_submission_is_the_grader_cell_then_tagged_answer_cells():
    exs = _exercises(CH04)
    nb, notes = grade.reduce_submission(_fixture("correct"), exs)
    assert nb.cells[0].source == grade.PREAMBLE
    assert [c.id for c in nb.cells[1:]] == ["ch04-ex4", "ch04-ex7", "ch04-ex8"]
    assert all(c.metadata["otter"]["tests"] == [c.id] for c in nb.cells[1:])
    nb, notes = grade.reduce_submission(nbformat.v4.new_notebook(), exs)
    assert len(nb.cells) == 1 and all(notes[ex.id] for ex in exs if ex.graded)


def test_unreadable_notebook_gives_rows_not_an_exception():
    rows = grade.grade_notebook(FIXTURES / "unreadable.ipynb", CH04, Path("unused.zip"))
    assert [r["exercise"] for r in rows] == [ex.id for ex in _exercises(CH04)]
    assert all(r["feedback"].startswith("not a readable notebook") for r in rows)
    assert [r["points"] for r in rows if r["max_points"] != ""] == [0, 0, 0]


def test_submissions_and_their_chapters(tmp_path):
    (tmp_path / "ann.ipynb").write_text("{}")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "04_inference_mode.ipynb").write_text("{}")
    (tmp_path / "bob" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "bob" / ".ipynb_checkpoints" / "x.ipynb").write_text("{}")
    assert [s for s, _ in grade.submissions(tmp_path)] == ["ann", "bob"]
    assert grade.chapter_of(tmp_path / "bob" / "04_inference_mode.ipynb") == "04"
    assert grade.chapter_of(FIXTURES / "correct.ipynb") == "04"  # from the notebook's metadata
    assert grade.chapter_of(FIXTURES / "unreadable.ipynb") is None


def test_grading_runtime_restores_patched_libraries_and_uses_its_private_checkers():
    import torch.nn.functional as F

    from normbook.book.exercises import ch04
    normbook_grading.prepare()
    original_bn, original_fold = F.batch_norm, ch04.check_fold
    answer = {}
    exec("import torch\n" + (FIXTURES / "..").resolve().joinpath("build.py").read_text().split("FOLD = '''")[1]
         .split("'''")[0], answer)  # the fixtures' right fold
    try:
        F.batch_norm = lambda *a, **k: None          # a student's patch of a reference function
        ch04.check_fold = lambda f, verbose=True: True  # and of the public checker
        normbook_grading.grade(answer, "ch04.check_fold", "fold")  # passes: the private checker, torch restored
        assert F.batch_norm is original_bn
        with pytest.raises(AssertionError, match="is not defined"):
            normbook_grading.grade({}, "ch04.check_fold", "fold")
        with pytest.raises(AssertionError, match=r"FAIL +fold"):
            normbook_grading.grade({"fold": lambda w, b, bn: (w, b)}, "ch04.check_fold", "fold")
    finally:
        F.batch_norm, ch04.check_fold = original_bn, original_fold


def test_grading_runtime_forbids_what_the_answer_cell_declares():
    def fold(weight, bias, bn):  # right, with torch's batch norm computing the new bias (check_fold allows it)
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        b = torch.zeros_like(s) if bias is None else bias
        b = torch.nn.functional.batch_norm(b[None], bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                                           bn.eps)[0]
        return weight * s.view(-1, *[1] * (weight.dim() - 1)), b

    normbook_grading.grade({"fold": fold}, "ch04.check_fold", "fold")  # allowed without the declaration
    with pytest.raises(AssertionError, match="without torch's normalization layers"):
        normbook_grading.grade({"fold": fold}, "ch04.check_fold", "fold", ["torch-norm"])


# --------------------------------------------------------------------------- the instructor edition's pieces

def test_mutants_cover_the_typical_mistakes_and_the_checker_notices_them():
    ex = {ex.id: ex for ex in _exercises(CH04)}["ch04-ex7"]
    kinds = {kind for kind, _, _ in instructor_edition.mutants("\n".join(ex.solution_code))}
    assert {"variance", "momentum", "order", "drop-term"} <= kinds
    wrong = instructor_edition.wrong_answers(ex)
    assert wrong and all(said for _, _, said in wrong)
    assert any("unbiased=False" in line and "running_var differs" in said for _, line, said in wrong)


def test_sentences_rubric_and_estimates():
    assert instructor_edition.sentences("It is $x$, i.e. $[2, 4]$. Then B. And e.g. C.") == \
        ["It is $x$, i.e. $[2, 4]$.", "Then B.", "And e.g. C."]
    ex = {ex.id: ex for ex in _exercises(CH04)}["ch04-ex3"]
    rubric = instructor_edition.draft_rubric(ex)
    assert 2 <= len(rubric) <= 6 and any("4/3" in point for point in rubric)
    assert instructor_edition.expected_minutes(ex) % 5 == 0 and instructor_edition.expected_minutes(ex) >= 5


def test_the_guide_page_has_every_exercise_and_a_rubric_for_each_conceptual_one():
    page, summary = instructor_edition.guide(CH04)
    exs = _exercises(CH04)
    for ex in exs:
        assert f"## {ex.id}:" in page
    assert page.count("**Rubric**") == sum(not ex.graded for ex in exs)
    assert page.count("**Common wrong answers**") == sum(ex.graded for ex in exs)
    assert "estimate" in page and summary["points"] == 3
    assert not re.search(r"\{(glue|cite|numref)", page)
