"""nbval over every chapter, run as the Colab edition runs: in a kernel where ``myst_nb`` cannot be imported.

    python tools/nbval_run.py --mode fast [chapters/NN_x.ipynb ...]   # make nbval (part of make test)
    python tools/nbval_run.py --mode full                             # make gpu-check
    python tools/nbval_run.py --mode fast --out DIR chapters/02_*.ipynb -- -x   # another folder; pytest options

1. Writes ``_build/nbval/<mode>/chapters/NN_x.ipynb`` (or under ``--out``): each chapter's Colab edition
   (tools/colab_edition.py: the same code cells, the set-up cell first, plain Markdown) with the chapter's stored
   outputs kept, so that nbval (``--nbval-lax``) compares the cells tagged ``nbval-check-output`` with what the
   chapter states.
2. Runs ``pytest --nbval-lax --nbval-current-env`` over them in a kernel where ``import myst_nb`` raises
   ImportError (as in Colab or a bare Jupyter: ``normbook.book.glue`` displays a figure instead of recording it),
   with ``NORMBOOK_FAST=1`` in fast mode and without it in full mode. Edition-only failures surface here.
3. Saves each executed notebook to ``_build/nbval/<mode>/executed/NN_x.ipynb`` (tests/test_editions.py reads
   them: every figure shown, myst_nb absent) and prints one line per chapter executed,
   ``normbook-execution: NN_x nbval <mode>`` (grep the log to count executions).
4. Puts each chapter that passed into the book build's execution cache (jupyter-cache, the folder
   tools/site_ext.py gives that mode's build: ``_build/fast/_build/.jupyter_cache/fast-<hash>`` for
   ``make book-fast``, ``_build/.jupyter_cache/full-<hash>`` for ``make book``): the chapter notebook with the
   outputs of this run, which the build then uses instead of executing the chapter again. The kernel runs with
   ``NORMBOOK_GLUE_RECORD=1``, so ``normbook.book.glue`` writes what ``myst_nb.glue`` would (tests/test_glue.py)
   although myst_nb cannot be imported: the outputs are the book's. A chapter whose code cells are not the
   edition's, or whose run failed, is left out (the build executes it). ``--no-book-cache`` skips this step, and
   with ``--out`` it is skipped unless ``--book-cache DIR`` is given.

So nbval, the editions test and the book build share one execution per chapter. Extra pytest arguments go
after ``--``.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab_edition  # noqa: E402
import setup_cell  # noqa: E402
import site_ext  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = ("fast", "full")
EXECUTED_TAG = "normbook-execution:"


def folder(mode: str, root: Path = ROOT) -> Path:
    return root / "_build" / "nbval" / mode


def kernel_env(mode: str, shadow: Path, environ=None) -> dict:
    """The environment the kernel inherits: the mode, myst_nb shadowed, figures shown inline."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    env = dict(os.environ if environ is None else environ)
    if mode == "fast":
        env["NORMBOOK_FAST"] = "1"
    else:
        env.pop("NORMBOOK_FAST", None)
    env["PYTHONPATH"] = os.pathsep.join([str(shadow)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["NORMBOOK_GLUE_RECORD"] = "1"  # glue writes the book's records although myst_nb is hidden (step 4)
    return env


def hide_myst_nb(where: Path) -> Path:
    """A folder whose ``myst_nb`` package cannot be imported; put first on the kernel's PYTHONPATH."""
    (where / "myst_nb").mkdir(parents=True, exist_ok=True)
    (where / "myst_nb" / "__init__.py").write_text(
        'raise ImportError("myst_nb is not installed here (as in Colab); tools/nbval_run.py hides it")\n')
    return where


class SaveExecuted:
    """A pytest plugin: after nbval ran a notebook's last cell, write the notebook with the outputs of this run."""

    def __init__(self, out: Path, mode: str):
        self.out, self.mode = out, mode
        self.outputs: dict = {}
        self.failed: set = set()
        self.lines: list = []
        self.config = None
        self.started: dict = {}

    def pytest_configure(self, config):
        self.config = config

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        if report.failed and hasattr(item, "cell_num"):
            self.failed.add(item.parent.nodeid)

    def pytest_runtest_setup(self, item):
        if hasattr(item, "cell_num"):  # the wall time from a notebook's first cell to its last
            self.started.setdefault(item.parent.nodeid, time.perf_counter())

    def pytest_runtest_teardown(self, item, nextitem):
        if not hasattr(item, "cell_num"):  # not an nbval cell
            return
        notebook = item.parent
        self.outputs.setdefault(notebook.nodeid, {})[item.cell_num] = item.test_outputs
        if nextitem is None or nextitem.parent is not notebook:
            self.write(notebook)

    def write(self, notebook) -> None:
        nb = copy.deepcopy(notebook.nb)
        outputs = self.outputs.pop(notebook.nodeid, {})
        code = [c for c in nb.cells if c.cell_type == "code"]
        for i, cell in enumerate(code):
            ran = outputs.get(i)
            cell.outputs = list(ran) if ran is not None else []
            cell.execution_count = i + 1 if ran is not None else None
            for out in cell.outputs:
                if out.get("output_type") == "execute_result":
                    out["execution_count"] = cell.execution_count
        failed = notebook.nodeid in self.failed
        seconds = round(time.perf_counter() - self.started.pop(notebook.nodeid, time.perf_counter()), 1)
        nb.metadata["normbook"] = {**nb.metadata.get("normbook", {}),
                                   "nbval": {"mode": self.mode, "myst_nb": False, "failed": failed,
                                             "seconds": seconds}}
        self.out.mkdir(parents=True, exist_ok=True)
        name = Path(str(notebook.fspath)).name
        nbformat.write(nb, self.out / name)
        self.lines.append(f"{EXECUTED_TAG} {Path(name).stem} nbval {self.mode}" + (" (failed)" if failed else ""))

    def pytest_runtest_logfinish(self, nodeid, location):
        """Report the executions once pytest shows output again (a test's teardown runs captured)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter") if self.config else None
        while self.lines:
            line = self.lines.pop(0)
            if reporter is not None:
                reporter.write("\n")  # after the progress dots
                reporter.write_line(line)
            else:
                print(line, flush=True)


def book_notebook(chapter: Path, executed: Path):
    """``(notebook, seconds, None)``: the chapter notebook with the outputs of its executed edition and the run's
    wall time; or ``(None, None, reason)`` where it cannot be: the run failed, or the edition's code cells are not
    the chapter's (the set-up cell included)."""
    ran = nbformat.read(executed, as_version=4)
    run = ran.metadata.get("normbook", {}).get("nbval", {})
    if run.get("failed", True):
        return None, None, "nbval failed"
    nb = nbformat.read(chapter, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    ran_code = [c for c in ran.cells if c.cell_type == "code"]
    if [c.source for c in code] != [c.source for c in ran_code]:
        return None, None, "the edition's code cells are not the chapter's"
    for cell, done in zip(code, ran_code):
        cell.outputs, cell.execution_count = done.outputs, done.execution_count
    return nb, run.get("seconds"), None


def fill_book_cache(chapters, executed_dir: Path, cache_dir: Path) -> list[str]:
    """Put each chapter, with the outputs nbval's run gave it, into the book build's jupyter-cache."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache, lines = get_cache(str(cache_dir)), []
    for chapter in chapters:
        executed = executed_dir / chapter.name
        if not executed.is_file():
            continue
        nb, seconds, why = book_notebook(chapter, executed)
        if nb is None:
            lines.append(f"book cache: {chapter.stem} left out ({why}): the book build executes it")
            continue
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(chapter.resolve()), data={"execution_seconds": seconds}),
                                    check_validity=False, overwrite=True)
        lines.append(f"book cache: {chapter.stem} from nbval's execution")
    return lines


def expected_seconds(chapters, executed_dir: Path) -> dict:
    """``{chapter name: seconds}``: how long each chapter took at the last run in this folder, else the run time of
    the execution stored in the chapter (first to last cell; full mode, so only its order is of use), else an
    hour. Only the order in which ``--jobs`` starts the chapters depends on it."""
    seconds = {}
    for chapter in chapters:
        for path in (executed_dir / chapter.name, chapter):
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception:  # noqa: BLE001 — not there, or unreadable: try the next source
                continue
            last = nb.metadata.get("normbook", {}).get("nbval", {}).get("seconds")
            stamps = [c.metadata.get("execution", {}) for c in nb.cells if c.cell_type == "code"]
            starts = sorted(s["iopub.execute_input"] for s in stamps if "iopub.execute_input" in s)
            ends = sorted(s["shell.execute_reply"] for s in stamps if "shell.execute_reply" in s)
            if path != chapter and last is not None:
                seconds[chapter.name] = float(last)
            elif path == chapter and starts and ends:
                span = datetime.datetime.fromisoformat(ends[-1].replace("Z", "+00:00")) - \
                    datetime.datetime.fromisoformat(starts[0].replace("Z", "+00:00"))
                seconds[chapter.name] = span.total_seconds()
            else:
                continue
            break
        seconds.setdefault(chapter.name, 3600.0)
    return seconds


def run_pytest(editions, base: Path, mode: str, extra) -> int:
    return int(pytest.main(["--nbval-lax", "--nbval-current-env", "--nbval-kernel-startup-timeout=300",
                            "-p", "no:cacheprovider", "-q", *extra, *map(str, editions)],
                           plugins=[SaveExecuted(base / "executed", mode)]))


def run_side_by_side(editions, jobs: int, seconds: dict, base: Path, mode: str, extra) -> int:
    """Each edition in its own pytest process (``--run-editions``), ``jobs`` at a time, the longest expected first,
    the next one started as soon as one ends; each one's output is printed when it ends."""
    waiting = sorted(editions, key=lambda path: -seconds.get(path.name, 3600.0))
    running, status, done = [], 0, 0
    print(f"nbval: {len(editions)} notebooks, {jobs} at a time, in this order: "
          + " ".join(path.stem for path in waiting), flush=True)
    while waiting or running:
        while waiting and len(running) < jobs:
            path, log = waiting.pop(0), tempfile.TemporaryFile(mode="w+")
            cmd = [sys.executable, __file__, "--mode", mode, "--run-editions", str(base), str(path), "--", *extra]
            running.append((path, log, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(0.2)
        for item in [item for item in running if item[2].poll() is not None]:
            running.remove(item)
            path, log, proc = item
            done += 1
            log.seek(0)
            print(f"--- nbval {done}/{len(editions)}: {path.stem} (exit status {proc.returncode})\n{log.read()}",
                  flush=True)
            log.close()
            status = status or proc.returncode
    return status


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--out", type=Path, help="the working folder (default: _build/nbval/<mode>)")
    ap.add_argument("--book-cache", type=Path, help="the jupyter-cache folder to fill (default: the build's, "
                    "without --out)")
    ap.add_argument("--no-book-cache", action="store_true", help="leave the book build's cache alone")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("NBVAL_JOBS", "1")),
                    help="chapters executed side by side, each in its own pytest process, the longest "
                    "first (default: $NBVAL_JOBS, else 1: one pytest process for all)")
    ap.add_argument("--run-editions", type=Path, metavar="FOLDER", help=argparse.SUPPRESS)  # one of those processes
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    if args.run_editions:  # a process that --jobs started: the editions are written, the environment is set
        return run_pytest(args.notebooks, args.run_editions, args.mode, extra)
    if args.jobs < 1:
        ap.error(f"--jobs must be 1 or more, got {args.jobs}")
    paths = args.notebooks or setup_cell.chapter_paths()
    base = args.out or folder(args.mode)
    seconds = expected_seconds(paths, base / "executed")
    for sub in ("chapters", "executed"):  # nothing stale from an earlier run or another chapter set
        for old in (base / sub).glob("*.ipynb"):
            old.unlink()
    editions = colab_edition.build(paths, base, keep_outputs=True)
    book_cache = args.book_cache
    if book_cache is None and args.out is None:
        build = ROOT / "_build" / ("fast/_build/html" if args.mode == "fast" else "html")
        book_cache = site_ext.cache_path(build, mode=args.mode)
    env = kernel_env(args.mode, hide_myst_nb(base / "no_myst_nb"))
    os.environ.clear()  # the kernels nbval starts inherit this process's environment
    os.environ.update(env)
    if args.jobs == 1 or len(editions) == 1:
        status = run_pytest(editions, base, args.mode, extra)
    else:
        status = run_side_by_side(editions, args.jobs, seconds, base, args.mode, extra)
    if book_cache is not None and not args.no_book_cache:
        for line in fill_book_cache(paths, base / "executed", book_cache):
            print(line, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
