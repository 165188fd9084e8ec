"""The student edition, what an instructor hands out: the chapters without solutions, with answer cells.

    python tools/student_edition.py --out _build/student [chapters/NN_*.ipynb ...]     # `make student`
    python tools/student_edition.py --plain --out DIR chapters/NN_*.ipynb              # solutions removed only

The course edition (``make student``) writes ``<out>/chapters/NN_*.ipynb`` in the Colab edition's form
(tools/colab_edition.py: plain Markdown, the glued numbers filled in, citations and references as text and links,
the set-up cell first, no stored outputs), with

- every solution and rubric removed (below);
- each exercise followed by its answer cell (tools/coursekit.py: id ``chNN-exK``, tag ``answer``; the skeleton and
  checker call of a graded exercise in a code cell, a markdown cell for a conceptual answer);
- every glued figure shown in the text where the book shows it (the stored image, as a cell attachment);
- the notebook's metadata ``normbook`` naming the chapter, the edition and its graded exercises.

``--plain`` writes ``<out>/NN_*.ipynb``: the chapter with its solutions removed and nothing else changed (what
tests/test_editions.py checks). A solution is a MyST admonition or dropdown whose title starts with "Solution"
(``:::{admonition} Solution`` / ``:class: dropdown`` as CONTRIBUTING.md prescribes, with ``:::`` or backtick
fences, nested blocks included), or a code cell tagged ``solution``; a rubric block (title "Rubric") goes too. A
markdown cell left empty is dropped. Outputs stay as they are (a solution never prints into another cell).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab_edition  # noqa: E402
import coursekit  # noqa: E402
from colab_edition import FENCE, SOLUTION, block_end  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAGS = {"solution", "solutions", "hide-solution"}


def _is_solution(name: str, arg: str) -> bool:
    return (name in ("admonition", "dropdown") and bool(SOLUTION.match(arg) or coursekit.RUBRIC.match(arg))) or \
        (name == "dropdown" and not arg.strip())


def strip_solutions(text: str) -> tuple[str, int]:
    """Remove solution blocks from a markdown text; returns the text and how many were removed."""
    lines = text.split("\n")
    out, i, removed = [], 0, 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not _is_solution(m.group("name"), m.group("arg")):
            out.append(lines[i])
            i += 1
            continue
        j = block_end(lines, i)
        removed += 1
        i = j + 1
        # drop the blank line the block leaves behind, so the spacing of the rest does not change
        if out and not out[-1].strip() and i < len(lines) and not lines[i].strip():
            i += 1
    return "\n".join(out), removed


def student(nb) -> tuple[object, int]:
    nb = nbformat.from_dict(nb)
    cells, removed = [], 0
    for cell in nb.cells:
        if cell.cell_type == "code" and SOLUTION_TAGS & set(cell.metadata.get("tags", [])):
            removed += 1
            continue
        if cell.cell_type == "markdown":
            text, n = strip_solutions(cell.source)
            removed += n
            if n:
                cell.source = text.rstrip("\n")
                if not cell.source.strip():
                    continue
        cells.append(cell)
    nb.cells = cells
    return nb, removed


def build(paths, out: Path) -> list[tuple[Path, int]]:
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for path in paths:
        path = Path(path)
        nb, removed = student(nbformat.read(path, as_version=4))
        target = out / path.name
        nbformat.write(nb, target)
        done.append((target, removed))
    return done


# --------------------------------------------------------------------------- the course edition

class StudentConverter(colab_edition.Converter):
    """The Colab edition's conversion, with each glued figure shown where the book shows it: the stored image
    becomes an attachment of the markdown cell that places the figure."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attachments: dict = {}

    def directive(self, name, arg, options, body, cell_index):
        text = super().directive(name, arg, options, body, cell_index)
        key = arg.strip()
        if name in ("glue:figure", "glue") and "image/png" in self.glue.get(key, {}):
            file = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.png"
            cell_id = self.nb.cells[cell_index].get("id", str(cell_index))
            self.attachments.setdefault(cell_id, {})[file] = {"image/png": self.glue[key]["image/png"]}
            alt = options.get("alt", f"Figure {self.figure}").replace("[", "(").replace("]", ")")
            text = re.sub(r"^\*The figure is drawn by the code cell .*\*$", "", text, flags=re.M).rstrip()
            text = f"![{alt}](attachment:{file})\n\n{text}"
        return text

    def convert(self):
        nb = super().convert()
        for cell in nb.cells:
            if cell.cell_type == "markdown" and cell.get("id") in self.attachments:
                cell["attachments"] = self.attachments[cell.id]
        return nb


def course_edition(path: Path, labels=None, bib=None, root: Path = ROOT):
    """The course edition of one chapter (see the module's docstring); returns (notebook, exercises)."""
    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    chapter = coursekit.chapter_number(path)
    nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and SOLUTION_TAGS & set(c.metadata.get("tags", [])))]
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not coursekit.HEADING.search(cell.source):
            cell.source = strip_solutions(cell.source)[0]
    nb, exs = coursekit.split_exercises(nb, chapter, strip_solutions)
    nb.cells = [c for c in nb.cells if c.cell_type != "markdown" or c.source.strip()]
    conv = StudentConverter(nb, path, root, labels, bib)
    edition = conv.convert()
    for line in conv.missing:
        print(f"{path.name}: {line} not found (written as plain text)", file=sys.stderr)
    bad = colab_edition.leftovers(edition)
    if bad:
        raise SystemExit(f"{path.name}: markup survived: {bad}")
    edition.metadata[coursekit.METADATA_KEY] = {
        "chapter": chapter, "edition": "student", "source": path.name,
        "exercises": coursekit.exercises_metadata(exs)}
    return edition, exs


def build_course(paths, out: Path, root: Path = ROOT) -> list:
    """Write the course edition of each chapter into ``<out>/chapters/``; returns [(path, exercises)]."""
    labels, bib = colab_edition.label_index(root), colab_edition.bibliography(root)
    target_dir = Path(out) / "chapters"
    target_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for path in paths:
        edition, exs = course_edition(path, labels, bib, root)
        target = target_dir / Path(path).name
        nbformat.validate(edition)
        nbformat.write(edition, target)
        done.append((target, exs))
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    ap.add_argument("--plain", action="store_true", help="only remove the solutions (the chapter otherwise as is)")
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    if args.plain:
        for target, removed in build(paths, args.out):
            print(f"{target}: {removed} solutions removed")
        return 0
    for target, exs in build_course(paths, args.out):
        graded = sum(ex.graded for ex in exs)
        print(f"{target}: {len(exs)} exercises, {graded} graded by a checker, answer cells "
              f"{', '.join(ex.id for ex in exs) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
