"""The package's two layers: the library never imports the book support, and each shared helper exists once."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "normbook"
LIBRARY = sorted(p for p in SRC.glob("*.py"))  # everything at the top level; book support lives in normbook/book/
BOOK = SRC / "book"


def _imports(path: Path) -> list:
    """Every module a file imports, as absolute dotted names (relative imports resolved)."""
    package = ["normbook", *path.relative_to(SRC).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(module)
            found += [f"{module}.{a.name}" for a in node.names]
    return found


def test_the_split_exists():
    assert BOOK.is_dir() and (BOOK / "__init__.py").is_file()
    names = {p.stem for p in LIBRARY}
    assert {"functional", "autograd", "nn", "kernels", "distributed", "fold", "batchnorm", "timing", "data",
            "config"} <= names
    assert not names & {"models", "train", "experiments", "plot", "exercises", "stats", "diagnostics"}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_library_module_never_imports_book_support(path):
    bad = [m for m in _imports(path) if m == "normbook.book" or m.startswith("normbook.book.")]
    assert not bad, f"{path.name} imports book support: {bad}"


def test_importing_the_library_loads_no_book_module():
    code = ("import sys, normbook, normbook.functional, normbook.autograd, normbook.nn, normbook.fold, "
            "normbook.batchnorm, normbook.timing, normbook.data, normbook.config, normbook.distributed\n"
            "print(sorted(m for m in sys.modules if m.startswith('normbook.book')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# The helpers the issue found written several times; each must now be defined exactly once in src/.
ONCE = ["is_batchnorm", "batchnorm_layers", "recompute_batchnorm_stats", "freeze_batch_norm", "time_it",
        "compare_times", "cpu_threads", "parallel_map", "_update_running_stats", "is_fast", "seed_everything",
        "device_of", "compare_ratio", "training_outcome", "mean_std"]


def test_each_shared_helper_is_defined_once():
    defs: dict = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defs.setdefault(node.name, []).append(str(path.relative_to(SRC)))
    twice = {name: defs.get(name) for name in ONCE if len(defs.get(name, [])) != 1}
    assert not twice, f"defined other than once: {twice}"


def test_thread_pinning_lives_in_one_place():
    """``torch.set_num_threads`` is called by config.cpu_threads and in forked/spawned workers only."""
    allowed = {"config.py", "book/parallel.py", "book/ch06.py", "distributed.py"}
    users = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "set_num_threads(" in p.read_text()}
    assert users <= allowed, users - allowed
