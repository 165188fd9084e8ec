"""The checking machinery itself: what `make test` and `make gpu-check` run, and tools/nbval_run.py.

`make gpu-check` runs only on a GPU, so its parts are proven here on the CPU: the target still expands to the
unit tests, nbval in full mode, the full build from nbval's executions and the browser test of that site; it refuses
to run without CUDA; and nbval_run.py's full mode is its fast mode without NORMBOOK_FAST (both run here on a tiny
notebook). nbval's execution is the book build's too: nbval_run.py puts it into the build's cache, and the build
uses it (checked here on a tiny notebook built by jupyter-book's own executor, myst_nb's cache client).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbval_run  # noqa: E402
import setup_cell  # noqa: E402

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _make_env(**extra) -> dict:
    """This environment without the settings of a `make` that runs these tests (jobs, output sync, level)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return {**env, **extra}


def _plan(target: str, **variables) -> str:
    """The commands `make -n target` would run (no set-up: NORMBOOK_NO_SETUP=1)."""
    args = [MAKE, "-n", "--no-print-directory", "-C", str(ROOT), target, "NORMBOOK_NO_SETUP=1"]
    args += [f"{k}={v}" for k, v in variables.items()]
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=_make_env())
    return out.stdout


@needs_make
def test_gpu_check_expands_to_its_parts():
    plan = _plan("gpu-check")
    lines = [line.strip() for line in plan.splitlines()]
    assert any("torch.cuda.is_available()" in line for line in lines), "no CUDA guard"
    unit = [line for line in lines if "-m pytest tests/ " in line]
    assert unit and "-rs" in plan, "the unit tests (listing what skipped) are not run"
    nbval = [i for i, line in enumerate(lines) if "tools/nbval_run.py --mode full --jobs 1" in line]
    assert nbval, "no nbval in full mode"
    full_builds = [i for i, line in enumerate(lines) if "jupyter-book build" in line and "--path-output" not in line]
    assert full_builds and all("env -u NORMBOOK_FAST" in lines[i] for i in full_builds), "no full-mode book build"
    # the build reads the executions nbval (on the GPU) put into its cache: it comes after nbval
    assert nbval[0] < full_builds[0], "the full build runs before nbval filled its cache"
    assert any("NORMBOOK_SITE=_build/html" in line and "test_site_browser.py" in line for line in lines), \
        "the full site is not checked in the browser"


@needs_make
def test_make_test_runs_the_same_parts_in_fast_mode():
    plan = _plan("test")
    assert "tools/nbval_run.py --mode fast --jobs 2" in plan   # the critical path: two chapters at a time
    assert "NORMBOOK_FAST=1" in plan and "--path-output _build/fast" in plan
    assert "NORMBOOK_SITE=_build/fast/_build/html" in plan and "test_site_browser.py" in plan
    assert "NORMBOOK_CLAIMS_EXECUTED=" in plan and "test_editions.py" in plan
    assert "-m pytest tests/ " in plan
    # nothing else executes the chapters: nbval is the one execution, and the book build, which comes after it,
    # reads nbval's executions from its cache
    assert "nbconvert" not in plan and "jupyter-execute" not in plan
    assert plan.count("tools/nbval_run.py") == 1 and plan.count("jupyter-book build") == 1
    assert plan.index("tools/nbval_run.py --mode fast") < plan.index("--path-output _build/fast")
    # the zh site reads the fast build's executions: it must come after that build, or under make -j it executes
    # the chapters the build has not cached yet a second time
    assert "tools/i18n.py site --fast" in plan
    assert plan.index("--path-output _build/fast") < plan.index("tools/i18n.py site --fast")
    zh_plan = _plan("book-zh-fast")
    assert "--path-output _build/fast" in zh_plan, "book-zh-fast does not depend on book-fast"
    # the Chinese site gets both browser tests (every check of the English site, and its own), after it is built
    lines = plan.splitlines()
    site_built = next(i for i, line in enumerate(lines) if "tools/i18n.py site --fast" in line)
    for test_file in ("tests/test_site_browser.py", "tests/test_site_browser_zh.py"):
        runs = [i for i, line in enumerate(lines)
                if "NORMBOOK_SITE=_build/fast/site/zh" in line and f"{test_file} " in line + " "]
        assert runs and runs[0] > site_built, f"{test_file} does not run on the zh site after it is built"


@needs_make
def test_gpu_check_refuses_to_run_without_cuda():
    env = _make_env(CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([MAKE, "--no-print-directory", "-C", str(ROOT), "require-cuda", "NORMBOOK_NO_SETUP=1"],
                         capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "no CUDA device" in out.stderr + out.stdout


def test_kernel_env_by_mode(tmp_path):
    base = {"NORMBOOK_FAST": "1", "PYTHONPATH": "/somewhere", "KEEP": "x"}
    fast = nbval_run.kernel_env("fast", tmp_path, {k: v for k, v in base.items() if k != "NORMBOOK_FAST"})
    full = nbval_run.kernel_env("full", tmp_path, base)
    assert fast["NORMBOOK_FAST"] == "1" and "NORMBOOK_FAST" not in full
    for env in (fast, full):
        assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/somewhere"] and env["KEEP"] == "x"
    with pytest.raises(ValueError):
        nbval_run.kernel_env("medium", tmp_path, base)


def test_hidden_myst_nb_cannot_be_imported(tmp_path):
    shadow = nbval_run.hide_myst_nb(tmp_path / "shadow")
    env = nbval_run.kernel_env("fast", shadow)
    out = subprocess.run([sys.executable, "-c", "import myst_nb"], capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "ImportError" in out.stderr


def _notebook(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, (source, stored) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source, execution_count=i + 1)
        cell.metadata["tags"] = ["nbval-check-output"]
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored)]
        nb.cells.append(cell)
    return nb


def test_nbval_run_executes_compares_and_saves(tmp_path):
    """Two tiny chapters through tools/nbval_run.py, side by side (``--jobs 2``, as in ``make test``): one whose
    stored outputs are right (myst_nb hidden, FAST mode set), one whose stored output is wrong; nbval fails the run,
    and both executions are saved and logged."""
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    probe = ("try:\n    import myst_nb\n    print('myst_nb')\nexcept ImportError:\n    print('no myst_nb')\n"
             "import os\nprint(os.environ.get('NORMBOOK_FAST'))")
    nbformat.write(_notebook([("print(1 + 1)", "2\n"), (probe, "no myst_nb\n1\n")]), chapters / "98_good.ipynb")
    nbformat.write(_notebook([("print(1 + 1)", "3\n")]), chapters / "99_bad.ipynb")
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "nbval_run.py"), "--mode", "fast",
                          "--jobs", "2", "--out", str(tmp_path / "run"), str(chapters / "98_good.ipynb"),
                          str(chapters / "99_bad.ipynb")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0, out.stdout[-2000:]
    assert "nbval: 2 notebooks, 2 at a time" in out.stdout   # one pytest process per chapter
    assert "normbook-execution: 98_good nbval fast\n" in out.stdout
    assert "normbook-execution: 99_bad nbval fast (failed)" in out.stdout
    good = json.loads((tmp_path / "run" / "executed" / "98_good.ipynb").read_text())
    bad = json.loads((tmp_path / "run" / "executed" / "99_bad.ipynb").read_text())
    run = good["metadata"]["normbook"]["nbval"]
    assert {k: run[k] for k in ("mode", "myst_nb", "failed")} == {"mode": "fast", "myst_nb": False, "failed": False}
    assert run["seconds"] >= 0
    assert bad["metadata"]["normbook"]["nbval"]["failed"] is True
    printed = ["".join(o["text"]) for c in good["cells"] for o in c["outputs"] if o.get("name") == "stdout"]
    assert printed[-2:] == ["2\n", "no myst_nb\n1\n"]
    assert "setup" in good["cells"][0]["metadata"]["tags"], "the edition's set-up cell is not first"


def test_jobs_start_the_longest_chapter_first(tmp_path):
    """--jobs orders the chapters by the last run's seconds, else by the stored execution's span, else last."""
    executed = tmp_path / "executed"
    executed.mkdir()
    stamped = _notebook([("print(1)", "1\n")])
    stamped.cells[0].metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00.0Z",
                                              "shell.execute_reply": "2026-01-01T00:02:00.0Z"}
    for name in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb"):
        nbformat.write(stamped if name != "03_c.ipynb" else _notebook([("print(1)", "1\n")]), tmp_path / name)
    ran = _notebook([("print(1)", "1\n")])
    ran.metadata["normbook"] = {"nbval": {"seconds": 300.0}}
    nbformat.write(ran, executed / "02_b.ipynb")
    seconds = nbval_run.expected_seconds([tmp_path / n for n in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb")],
                                         executed)
    assert seconds == {"01_a.ipynb": 120.0, "02_b.ipynb": 300.0, "03_c.ipynb": 3600.0}


def test_nbval_execution_is_the_book_builds(tmp_path):
    """nbval_run.py over a tiny book: the chapter that passed goes into the build's cache with nbval's outputs (its
    glued value, recorded although myst_nb is hidden), the failed one stays out; jupyter-book's own executor then
    uses the cached one and would have to execute the other (jupyter-cache's match, which myst_nb's cache mode
    calls first)."""
    from jupyter_cache import get_cache

    chapters = tmp_path / "chapters"
    chapters.mkdir()
    glued = "from normbook.book import glue\nglue('answer', 42)\nprint('glued')"
    good, bad = chapters / "98_good.ipynb", chapters / "99_bad.ipynb"
    nbformat.write(_notebook([("print(1 + 1)", "2\n")]), good)
    nbformat.write(_notebook([("print(1 + 1)", "3\n")]), bad)
    nb = nbformat.read(good, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(glued))  # not compared (no nbval-check-output tag), as in the chapters
    nbformat.write(nb, good)
    for path in (good, bad):  # the set-up cell first, as in every chapter (the edition has it)
        nb = nbformat.read(path, as_version=4)
        setup = nbformat.v4.new_code_cell("")
        setup.metadata["tags"] = ["setup", "remove-cell"]
        nb.cells.insert(0, setup)
        setup.source = setup_cell.render(nb, path)
        nbformat.write(nb, path)
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "nbval_run.py"), "--mode", "fast",
                          "--out", str(tmp_path / "run"), "--book-cache", str(cache_dir), str(good), str(bad)],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert "book cache: 98_good from nbval's execution" in out.stdout, out.stdout[-2000:]
    assert "book cache: 99_bad left out (nbval failed)" in out.stdout
    cache = get_cache(str(cache_dir))
    record = cache.match_cache_notebook(nbformat.read(good, as_version=4))
    cached = cache.get_cache_bundle(record.pk).nb
    outputs = [o for c in cached.cells if c.cell_type == "code" for o in c.outputs]
    glue = [o for o in outputs if o.get("metadata", {}).get("scrapbook", {}).get("name") == "answer"]
    assert glue and glue[0]["data"] == {"application/papermill.record/text/plain": "42"}
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(bad, as_version=4))


@needs_make
def test_recipe_times_logs_each_line_with_its_cpu_time(tmp_path):
    """tools/recipe_times.sh as make's shell: every recipe line runs as before (output, exit status), and one log
    line per recipe line carries its wall and CPU seconds (those of the processes it waited for) and its make
    level; the report adds up the outermost lines only, so that a sub-make is not counted twice."""
    (tmp_path / "Makefile").write_text(
        "SHELL := /bin/bash\n.SHELLFLAGS := -eu -o pipefail -c\n"
        "all: busy sub\n"
        f"busy:\n\t{sys.executable} -c \"exec('import time\\nt = time.process_time()\\n"
        "while time.process_time() - t < 0.5: pass')\"\n"
        "sub:\n\t$(MAKE) -s inner\n"
        "inner:\n\techo 'a\tb' | tr -d '\\t'\n"
        "fail:\n\texit 3\n")
    log = tmp_path / "times.tsv"
    args = [MAKE, "-s", "-C", str(tmp_path), f"SHELL={ROOT / 'tools' / 'recipe_times.sh'}", f"RECIPE_TIMES={log}"]
    out = subprocess.run(args, capture_output=True, text=True, env=_make_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ab"
    failed = subprocess.run(args + ["fail"], capture_output=True, text=True, env=_make_env())
    assert failed.returncode != 0

    rows = [line.split("\t") for line in log.read_text().splitlines()]
    assert [len(r) for r in rows] == [7] * 4
    by_command = {r[6]: r for r in rows}
    busy = next(r for c, r in by_command.items() if "process_time" in c)
    assert float(busy[2]) + float(busy[3]) >= 0.45 and float(busy[1]) >= 0.45   # its half second of CPU
    inner = by_command["echo 'a b' | tr -d '\\t'"]               # tabs in a command do not break the columns
    sub_make = next(r for c, r in by_command.items() if c.endswith("make -s inner"))
    assert int(inner[5]) == int(sub_make[5]) + 1
    assert by_command["exit 3"][4] == "3"

    report = subprocess.run([str(ROOT / "tools" / "recipe_times.sh"), "--report", str(log)],
                            capture_output=True, text=True, check=True).stdout
    assert report.startswith("4 recipe lines (3 outermost)")
    assert sorted(int(r[5]) for r in rows) == [1, 1, 1, 2]                 # the top make's recipes, a sub-make's
    outermost = sum(float(r[2]) + float(r[3]) for r in rows if int(r[5]) == 1)
    assert f"CPU of the outermost lines: {outermost:.1f} s" in report
    assert "(sub-make) echo" in report and "(exit status 3)" in report
