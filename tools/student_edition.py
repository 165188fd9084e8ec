"""The student edition: the chapter notebooks with every solution removed and nothing else changed.

    python tools/student_edition.py --out _build/student chapters/NN_*.ipynb

writes ``<out>/NN_*.ipynb``. A solution is a MyST admonition or dropdown whose title starts with "Solution"
(``:::{admonition} Solution`` / ``:class: dropdown`` as CONTRIBUTING.md prescribes, with ``:::`` or backtick
fences, nested blocks included), or a code cell tagged ``solution``. A markdown cell left empty is dropped.
Outputs stay as they are (a solution never prints into another cell).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_edition import FENCE, SOLUTION, block_end  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAGS = {"solution", "solutions", "hide-solution"}


def _is_solution(name: str, arg: str) -> bool:
    return (name in ("admonition", "dropdown") and bool(SOLUTION.match(arg))) or \
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    for target, removed in build(paths, args.out):
        print(f"{target}: {removed} solutions removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
