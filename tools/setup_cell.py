"""The set-up cell of every chapter, rendered from one template.

The cell installs d2l (without its outdated pins) and normbook when the notebook runs in Google Colab, and says,
when no GPU is present, how long the chapter takes on this CPU, how to switch to a GPU runtime and how to choose
FAST mode instead. The repository URL and branch come from ``_config.yml`` (``repository:``), the same place the
book's launch buttons take them from; the run times come from ``RUNTIMES`` below, which a chapter can override in
its notebook metadata (``"normbook": {"runtime": {"cpu": "...", "gpu": "...", "fast": "..."}}``).

    python tools/setup_cell.py --check [chapters/NN_x.ipynb ...]   # exit 1 if a chapter's set-up cell differs
    python tools/setup_cell.py --write [chapters/NN_x.ipynb ...]   # put the rendered cell first in each chapter
    python tools/setup_cell.py --show chapters/NN_x.ipynb          # print the cell

The set-up cell is the notebook's first cell, tagged ``setup`` and ``remove-cell`` (the book's pages do not need
it; Colab, Jupyter and the Colab edition do). A previous set-up cell is recognised by its tag or by
``google.colab`` in its source, and replaced.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent


def d2l_requirement(root: Path = ROOT) -> str:
    """The d2l pin, from requirements-d2l.txt (its one place; the Makefile and binder/postBuild read it too)."""
    lines = (root / "requirements-d2l.txt").read_text().splitlines()
    return next(line.split("#")[0].strip() for line in lines if line.split("#")[0].strip())


TAGS = ["setup", "remove-cell"]

# Expected run time per chapter (number prefix): full mode on a GPU runtime, full mode on a 2-core CPU, FAST mode
# on a CPU. Measured on the book's reference machines (CPU: 2 cores); chapters not listed use DEFAULT.
RUNTIMES = {
    "01": {"gpu": "under a minute", "cpu": "about 1 minute", "fast": "under a minute"},
    "02": {"gpu": "under a minute", "cpu": "about 1 minute", "fast": "under a minute"},
    "03": {"gpu": "under a minute", "cpu": "about 1 minute", "fast": "under a minute"},
    "04": {"gpu": "under a minute", "cpu": "about 1 minute", "fast": "under a minute"},
    "05": {"gpu": "under a minute", "cpu": "about 1 minute", "fast": "under a minute"},
    "06": {"gpu": "about 3 minutes", "cpu": "about 8 minutes", "fast": "about 1 minute",
           "accelerator": "GPU"},  # the Colab edition asks Colab for a GPU runtime
    "07": {"gpu": "about 2 minutes", "cpu": "about 2 minutes", "fast": "about 1 minute"},
    "08": {"gpu": "about 3 minutes", "cpu": "about 1 minute", "fast": "about 1 minute"},  # CPU processes (gloo)
    "09": {"gpu": "about 1 minute", "cpu": "about 2 minutes", "fast": "about 1 minute"},
    "10": {"gpu": "about 1 minute", "cpu": "about 1 minute", "fast": "about 1 minute"},
}
DEFAULT = {"gpu": "a few minutes", "cpu": "up to 6 minutes", "fast": "about 1 minute"}

TEMPLATE = '''\
# Set-up. In Google Colab this installs d2l (without its outdated pins) and normbook;
# elsewhere it installs nothing. Expected run time of this chapter:
#   on a GPU {gpu}; on a CPU {cpu}; in FAST mode {fast}.
import os, subprocess, sys
FAST = False  # True: smaller experiments (same code), for a quick run on a CPU
if FAST:
    os.environ["NORMBOOK_FAST"] = "1"
if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "{d2l}"], check=True)
    subprocess.run(pip + ["git+{repo}@{branch}"], check=True)
import logging
# torch built for CUDA but run without a GPU (a Colab CPU runtime) logs "No CUDA
# runtime is found" when torch.utils.cpp_extension is imported: not about the chapter.
logging.getLogger("torch.utils.cpp_extension").addFilter(
    lambda record: "No CUDA runtime is found" not in record.getMessage())
import torch
from normbook.config import is_fast
if not torch.cuda.is_available() and not is_fast():
    print("No GPU found. This chapter takes {cpu} on a CPU,\\n"
          "{gpu} on a GPU. In Colab: Runtime > Change runtime type > GPU,\\n"
          "then run it again; or set FAST = True above ({fast}).")'''


# The Chinese edition's set-up cell (tools/colab_edition.py --lang zh_CN): the same code, its comments and message
# in Chinese, and the run times translated by zh_duration().
TEMPLATE_ZH = '''\
# 环境设置。在 Google Colab 中，本单元安装 d2l（不带其过时的版本锁定）和 normbook；
# 在其他环境中什么也不安装。本章预计运行时间：
#   GPU 上{gpu}；CPU 上{cpu}；FAST 模式下{fast}。
import os, subprocess, sys
FAST = False  # True：缩小实验规模（代码相同），在 CPU 上快速运行
if FAST:
    os.environ["NORMBOOK_FAST"] = "1"
if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "{d2l}"], check=True)
    subprocess.run(pip + ["git+{repo}@{branch}"], check=True)
import logging
# 为 CUDA 构建的 torch 在没有 GPU 的环境（Colab 的 CPU 运行时）中导入
# torch.utils.cpp_extension 时会记录 "No CUDA runtime is found"：与本章无关。
logging.getLogger("torch.utils.cpp_extension").addFilter(
    lambda record: "No CUDA runtime is found" not in record.getMessage())
import torch
from normbook.config import is_fast
if not torch.cuda.is_available() and not is_fast():
    print("未检测到 GPU。本章在 CPU 上需要{cpu}，\\n"
          "在 GPU 上需要{gpu}。在 Colab 中：代码执行程序 > 更改运行时类型 > GPU，\\n"
          "然后重新运行；或在上方设置 FAST = True（{fast}）。")'''
TEMPLATES = {"en": TEMPLATE, "zh_CN": TEMPLATE_ZH}


def zh_duration(text: str) -> str:
    """"about 8 minutes" -> "约 8 分钟" (the phrases RUNTIMES uses); anything else is left as it is."""
    numbers = {"a": "1", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6"}
    m = re.fullmatch(r"(under|about|up to) (\w+) minutes?", text.strip())
    if m:
        n = numbers.get(m.group(2), m.group(2))
        return {"under": f"不到 {n} 分钟", "about": f"约 {n} 分钟", "up to": f"最多 {n} 分钟"}[m.group(1)]
    if text.strip() == "a few minutes":
        return "几分钟"
    return text


def config(root: Path = ROOT) -> dict:
    """The repository URL and branch, from _config.yml."""
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    repo = cfg.get("repository", {})
    return {"repo": repo["url"].rstrip("/"), "branch": repo.get("branch", "main")}


def runtimes(nb, path: Path) -> dict:
    prefix = path.name[:2]
    out = dict(RUNTIMES.get(prefix, DEFAULT))
    out.update(nb.metadata.get("normbook", {}).get("runtime", {}))
    return out


def render(nb, path: Path, root: Path = ROOT, lang: str = "en") -> str:
    times = runtimes(nb, path)
    if lang == "zh_CN":
        times = {k: zh_duration(v) for k, v in times.items()}
    return TEMPLATES[lang].format(d2l=d2l_requirement(root), **config(root), **times)


def find(nb) -> int | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and ("setup" in cell.metadata.get("tags", [])
                                         or "google.colab" in cell.source):
            return i
    return None


def problems(nb, path: Path, root: Path = ROOT) -> list[str]:
    i = find(nb)
    if i is None:
        return [f"{path}: no set-up cell"]
    out = []
    if i != 0:
        out.append(f"{path}: the set-up cell is cell {i}, not the first")
    cell = nb.cells[i]
    if cell.source != render(nb, path, root):
        out.append(f"{path}: the set-up cell differs from tools/setup_cell.py's template")
    if [t for t in TAGS if t not in cell.metadata.get("tags", [])]:
        out.append(f"{path}: the set-up cell lacks the tags {TAGS}")
    return out


def apply(nb, path: Path, root: Path = ROOT, lang: str = "en") -> None:
    """Put the rendered set-up cell first (replacing an old one); its outputs are dropped."""
    i = find(nb)
    cell = nbformat.v4.new_code_cell(render(nb, path, root, lang))
    if i is not None:
        old = nb.cells.pop(i)
        cell.metadata = old.metadata
        cell.id = getattr(old, "id", cell.id)
    tags = cell.metadata.setdefault("tags", [])
    tags.extend(t for t in TAGS if t not in tags)
    cell.metadata.pop("execution", None)
    nb.cells.insert(0, cell)


def chapter_paths(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--show", action="store_true")
    ap.add_argument("notebooks", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.notebooks or chapter_paths()
    bad = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if args.show:
            print(render(nb, path))
        elif args.check:
            bad += problems(nb, path)
        elif problems(nb, path):
            apply(nb, path)
            nbformat.write(nb, path)
            print(f"{path}: set-up cell written")
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
