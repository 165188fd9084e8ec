"""The grader's side of a grading run, shipped in the autograder (tools/grade.py puts it into the zip's files/, which
Otter copies next to the submission) and imported by the notebook's first cell, before any student code runs.

- :func:`prepare` loads a private copy of the checkers (``normbook.book.exercises`` loaded again under another
  name, so a student who replaces ``ch04.check_fold`` or patches ``normbook.book.exercises.run_check`` changes
  the public copy only) and takes a snapshot of the modules the checkers rely on (``torch``, ``torch.nn``,
  ``torch.nn.functional``, ``torch.Tensor``, ``normbook``...).
- :func:`grade` (called by each exercise's test file) puts every attribute of those modules back as it was before
  the student's code ran, wraps the student's function so that what the exercise rules out raises
  (``forbidding``), runs the private checker and raises ``AssertionError`` with the checker's report when it fails.

What this guards against: a checker replaced or patched in the notebook, a reference function monkey-patched, a
skipped or raising answer cell. What it does not: code that deliberately subverts the Python process itself
(the grader flags answer cells that assign to module attributes, touch ``sys.modules`` or this module; see
tools/grade.py), which is for the instructor to read.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

PRIVATE = "normbook.book._grader_exercises"
WATCHED_PREFIXES = ("torch", "normbook", "numpy", "math", "builtins", "copy", "functools")
WATCHED_CLASSES = ("torch.Tensor", "torch.nn.Module", "torch.nn.Parameter")
# what the kernel itself rebinds between cells (ipykernel swaps ``input`` and ``getpass`` for each request)
KERNEL_OWNED = {"builtins.input", "builtins.raw_input", "builtins.getpass", "getpass.getpass"}
WHY = {"torch-norm": "without torch's normalization layers", "autograd": "without autograd"}
_state: dict = {}


def _public_package():
    import normbook.book.exercises as public
    return public


def _load_private():
    if PRIVATE in sys.modules:
        return sys.modules[PRIVATE]
    public = _public_package()
    folder = Path(public.__file__).parent
    spec = importlib.util.spec_from_file_location(PRIVATE, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PRIVATE] = module
    spec.loader.exec_module(module)
    for path in sorted(folder.glob("ch[0-9][0-9].py")):
        importlib.import_module(f"{PRIVATE}.{path.stem}")
    return module


def _watched():
    mods = [m for name, m in list(sys.modules.items())
            if isinstance(m, types.ModuleType) and name.split(".")[0] in WATCHED_PREFIXES and name != PRIVATE
            and not name.startswith(PRIVATE + ".")]
    classes = []
    for dotted in WATCHED_CLASSES:
        owner, _, attr = dotted.rpartition(".")
        cls = getattr(sys.modules.get(owner), attr, None)
        if isinstance(cls, type):
            classes.append(cls)
    return mods, classes


def prepare() -> None:
    """Load the private checkers and snapshot the modules they use. Call once, before any student code."""
    _load_private()
    mods, classes = _watched()
    _state["modules"] = [(m, dict(vars(m))) for m in mods]
    _state["classes"] = [(c, dict(vars(c))) for c in classes]


def restore() -> list:
    """Put back every attribute of the watched modules and classes that was rebound since :func:`prepare` (names
    added since are left alone: libraries add caches and submodules as they run); returns the public names that
    had been rebound (for the feedback)."""
    changed = []
    for module, saved in _state.get("modules", []):
        now = vars(module)
        for key, value in saved.items():
            if now.get(key, _state) is not value and f"{module.__name__}.{key}" not in KERNEL_OWNED:
                setattr(module, key, value)
                changed.append(f"{module.__name__}.{key}")
    for cls, saved in _state.get("classes", []):
        now = dict(vars(cls))
        for key, value in saved.items():
            if now.get(key, _state) is not value:
                try:
                    setattr(cls, key, value)
                    changed.append(f"{cls.__module__}.{cls.__name__}.{key}")
                except (AttributeError, TypeError):
                    pass
    return [name for name in changed if not name.rsplit(".", 1)[-1].startswith("_")]


def _forbidden(private, forbid) -> tuple:
    names = []
    for item in forbid or ():
        if item == "torch-norm":
            names += private.TORCH_NORM
        elif item == "autograd":
            names += private.AUTOGRAD
        else:
            names.append(item)
    return tuple(names)


def grade(env: dict, checker: str, function: str, forbid=()) -> None:
    """Run the private copy of ``checker`` ("ch04.check_fold") on ``env[function]``; raise AssertionError with
    the checker's report unless every case passes."""
    if "modules" not in _state:
        prepare()  # a notebook without the grader's first cell (not the way tools/grade.py runs it)
    changed = restore()
    note = (f" (the notebook had changed {', '.join(sorted(set(changed))[:5])}; the grader restored them)"
            if changed else "")
    fn = env.get(function)
    if fn is None:
        raise AssertionError(f"`{function}` is not defined: the answer cell is missing, was not filled in, or "
                             f"raised before defining it{note}")
    if not callable(fn):
        raise AssertionError(f"`{function}` is a {type(fn).__name__}, not a function{note}")
    private = _load_private()
    module_name, _, name = checker.partition(".")
    check = getattr(importlib.import_module(f"{PRIVATE}.{module_name}"), name)
    names = _forbidden(private, forbid)
    if names:
        fn = private.guard(fn, *names, why=" and ".join(WHY.get(f, f"without {f}") for f in forbid))
    result = check(fn, verbose=False)
    if not result:
        raise AssertionError(str(result) + note)
