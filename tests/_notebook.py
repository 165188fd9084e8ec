"""Read a chapter's inline mechanism code, so tests can prove it agrees with ``normbook`` and ``torch.nn``.

A chapter shows the code it teaches in executable cells tagged ``mechanism`` (cell metadata ``tags``). Such a cell
runs on its own: it imports what it uses and defines functions or classes (no data loading, no training). The
tests execute the chapter's mechanism cells, in order, in one fresh namespace and compare what they define with
the package: if either side changes and they no longer agree, the test fails. See CONTRIBUTING.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"


def chapter_path(name: str) -> Path:
    """``chapters/<name>.ipynb``, or the single chapter whose file name starts with ``name`` (e.g. "02")."""
    direct = CHAPTERS / (name if name.endswith(".ipynb") else name + ".ipynb")
    if direct.exists():
        return direct
    matches = sorted(CHAPTERS.glob(f"{name}*.ipynb"))
    if len(matches) != 1:
        raise FileNotFoundError(f"no single chapter matches {name!r} in {CHAPTERS}: {matches}")
    return matches[0]


def tagged_sources(name: str, tag: str = "mechanism") -> List[str]:
    """The sources of the code cells of a chapter that carry ``tag``, in page order."""
    nb = json.loads(chapter_path(name).read_text())
    sources = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and tag in cell.get("metadata", {}).get("tags", []):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            # IPython-only lines (magics, shell escapes) cannot run under exec
            src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
            sources.append(src)
    return sources


def mechanism_namespace(name: str, tag: str = "mechanism") -> Dict[str, object]:
    """Execute a chapter's ``mechanism`` cells in a fresh namespace and return it; fails if there are none."""
    sources = tagged_sources(name, tag)
    if not sources:
        raise AssertionError(f"{chapter_path(name).name} has no code cell tagged {tag!r}")
    namespace: Dict[str, object] = {"__name__": f"chapter_{chapter_path(name).stem}"}
    for i, src in enumerate(sources):
        exec(compile(src, f"<{chapter_path(name).name} {tag} cell {i}>", "exec"), namespace)  # noqa: S102
    return namespace
