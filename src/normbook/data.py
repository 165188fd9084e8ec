"""Fashion-MNIST {cite}`xiao2017fashion`, found offline when possible and held in memory as tensors.

The four IDX files are looked for, in this order:

1. ``$NORMBOOK_DATA`` (a folder holding the four files, gzipped or not);
2. the repository's cache, ``data/fashion-mnist/`` (``make data`` fills it);
3. ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``);
4. torchvision's download (needs the internet; used on Colab), saved into the repository's ``data/`` folder
   or, outside a checkout, ``~/.cache/normbook``.

The whole set (70,000 images of 28x28 bytes, 55 MB as float32) is decoded once per process and kept; loaders
then slice tensors, so training needs no worker processes and runs as fast on two CPU cores as the model allows.

**Train, validation, test.** The book tunes on a validation split and reports the test set once, for the chosen
settings. :func:`train_val_split` carves the same fixed validation set out of the 60,000 training images in every
chapter (:data:`VALIDATION_SIZE` = 10,000 images chosen with :data:`SPLIT_SEED`), leaving 50,000 to train on;
:func:`load_splits` gives loaders over the three. The test file's 10,000 images are never used for a choice.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch

__all__ = [
    "CLASSES", "FILES", "DataNotFoundError", "read_idx", "candidate_dirs", "find_fashion_mnist",
    "load_fashion_mnist", "TensorLoader", "load_data", "prepare_d2l", "text_labels",
    "VALIDATION_SIZE", "SPLIT_SEED", "train_val_split", "Splits", "load_splits",
]

#: Images of the training file held out for validation (tuning), the same in every chapter.
VALIDATION_SIZE = 10_000
#: The seed of the permutation that chooses them.
SPLIT_SEED = 0

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]

# (images, labels) base names per split, as published by Zalando Research; each may carry a ".gz" suffix.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# IDX type codes -> numpy dtypes (big-endian as the format stores them).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataNotFoundError(FileNotFoundError):
    """Raised when no source of Fashion-MNIST works; the message lists every way to get it."""


def read_idx(path: os.PathLike | str) -> torch.Tensor:
    """Read one IDX file (optionally gzipped) into a tensor of its stored dtype and shape.

    Format: two zero bytes, a type code, the number of dims d, then d big-endian uint32 sizes, then the data.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file: it should start with two zero bytes, got {raw[:4]!r}")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x}; expected one of "
                         f"{[hex(k) for k in _IDX_DTYPES]}")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = raw[4 + 4 * ndim:]
    if len(data) != expected:
        raise ValueError(f"{path}: header says shape {tuple(shape)} ({expected} bytes of data) but the file holds "
                         f"{len(data)} bytes; the file is truncated or corrupt, delete it and fetch it again")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def _repo_root() -> Optional[Path]:
    """The checkout this package was installed from in editable mode, if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "_toc.yml").exists() else None


def _download_root() -> Path:
    root = _repo_root()
    return root / "data" if root else Path.home() / ".cache" / "normbook"


def candidate_dirs() -> list[tuple[str, Path]]:
    """The folders searched for the four IDX files, in order, each with a description of where it comes from."""
    dirs: list[tuple[str, Path]] = []
    if os.environ.get("NORMBOOK_DATA"):
        dirs.append(("$NORMBOOK_DATA", Path(os.environ["NORMBOOK_DATA"]).expanduser()))
    root = _repo_root()
    if root is not None:
        dirs.append(("the repository's data/ cache", root / "data" / "fashion-mnist"))
    dirs.append(("the Debian package dataset-fashion-mnist", SYSTEM_DIR))
    # where an earlier torchvision download (ours, or d2l's from the chapters folder) left the files
    dirs.append(("an earlier torchvision download", _download_root() / "FashionMNIST" / "raw"))
    return dirs


def _find_file(folder: Path, base: str) -> Optional[Path]:
    for name in (base, base + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _complete(folder: Path) -> bool:
    return all(_find_file(folder, base) for pair in FILES.values() for base in pair)


def _not_found_message(tried: Sequence[tuple[str, Path]], download_error: Optional[BaseException]) -> str:
    """The error text: where normbook looked, then only the remedies that apply where it runs now."""
    from .config import in_colab
    names = ", ".join(base + "[.gz]" for pair in FILES.values() for base in pair)
    lines = [f"Fashion-MNIST was not found. normbook looks for the four IDX files ({names}) in:"]
    lines += [f"  - {where}: {path}" for where, path in tried]
    if in_colab():
        # Colab has internet unless the runtime was disconnected: the download is the only sensible way there.
        ways = ["normbook downloads the set with torchvision.datasets.FashionMNIST; check that the runtime is "
                "connected (Runtime > Reconnect) and that `import torchvision` works, then run the cell again;",
                "or upload the four files and set os.environ['NORMBOOK_DATA'] to their folder."]
    else:
        ways = ["set NORMBOOK_DATA to a folder that holds the four files (gzipped or not);"]
        if _repo_root() is not None:  # only a checkout has a data/ cache and a Makefile
            ways.append("copy them into the repository's data/fashion-mnist/ folder (`make data` does it when "
                        "the Debian package below is installed);")
        if Path("/etc/debian_version").exists():
            ways.append("`sudo apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist);")
        ways.append("connect to the internet with torchvision installed: normbook then downloads the set with "
                    "torchvision.datasets.FashionMNIST.")
    lines.append("Any one of these ways makes the data available:")
    lines += [f"  {i}. {way}" for i, way in enumerate(ways, 1)]
    if download_error is not None:
        lines.append(f"The download failed with: {type(download_error).__name__}: {download_error}")
    return "\n".join(lines)


def find_fashion_mnist(download: bool = True) -> Path:
    """Return the first folder holding all four Fashion-MNIST files, downloading with torchvision if allowed.

    Raises :class:`DataNotFoundError`, listing every way to get the data, when nothing works.
    """
    tried = candidate_dirs()
    for _, folder in tried:
        if _complete(folder):
            return folder
    error: Optional[BaseException] = None
    if download:
        try:
            import torchvision
            root = _download_root()
            torchvision.datasets.FashionMNIST(root=str(root), train=True, download=True)
            torchvision.datasets.FashionMNIST(root=str(root), train=False, download=True)
            folder = root / "FashionMNIST" / "raw"
            if _complete(folder):
                return folder
        except Exception as exc:  # no torchvision, no network, a broken mirror: report it with the rest
            error = exc
    raise DataNotFoundError(_not_found_message(tried, error))


_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def load_fashion_mnist(split: str = "train", root: os.PathLike | str | None = None,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as tensors: images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64 in 0..9.

    ``split`` is "train" (60,000 images) or "test" (10,000). Decoded once per process, then served from memory
    (callers get the cached tensors: copy before modifying them in place).
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(root) if root is not None else find_fashion_mnist(download=download)
    key = (str(folder.resolve()), split)
    if key not in _CACHE:
        image_base, label_base = FILES[split]
        image_path, label_path = _find_file(folder, image_base), _find_file(folder, label_base)
        if image_path is None or label_path is None:
            raise DataNotFoundError(_not_found_message([("root", folder)], None))
        images = read_idx(image_path)
        labels = read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{folder}: images {tuple(images.shape)} and labels {tuple(labels.shape)} do not "
                             "form a data set of (N, H, W) images with N labels")
        _CACHE[key] = (images.unsqueeze(1).float().div_(255.0), labels.long())
    return _CACHE[key]


def text_labels(labels: Sequence[int] | torch.Tensor) -> list[str]:
    """Class names for integer labels."""
    return [CLASSES[int(i)] for i in labels]


class TensorLoader:
    """Mini-batches from in-memory tensors: a DataLoader without worker processes.

    Iterating yields ``(X[idx], y[idx])`` for consecutive slices of a permutation drawn from a generator seeded
    with ``seed`` plus the epoch number, so every run (and every epoch) sees the same order on any machine.
    Tensors are moved to ``device`` once, up front.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device: torch.device | str | None = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same length, got {len(X)} and {len(y)}")
        if device is not None:
            X, y = X.to(device), y.to(device)
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.X)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.X)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.X)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen).to(self.X.device)
        else:
            order = None
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                yield self.X[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                yield self.X[idx], self.y[idx]


def _subset(X: torch.Tensor, y: torch.Tensor, size: Optional[int], seed: int):
    if size is None or size >= len(X):
        return X, y
    if size < 1:
        raise ValueError(f"subset size must be positive, got {size}")
    idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:size]
    return X[idx], y[idx]


def load_data(batch_size: int = 256, *, train_size: Optional[int] = None, test_size: Optional[int] = None,
              resize: Optional[int | tuple[int, int]] = None, seed: int = 0,
              device: torch.device | str | None = None, root: os.PathLike | str | None = None,
              test_batch_size: Optional[int] = None) -> tuple[TensorLoader, TensorLoader]:
    """Train and test loaders over Fashion-MNIST held in memory: all 60,000 training images, as d2l's
    ``load_data_fashion_mnist`` gives them (for an experiment that tunes nothing; one that tunes uses
    :func:`load_splits`, which holds out the validation split).

    - ``train_size`` / ``test_size``: a random subset of that many examples (chosen with ``seed``), e.g. in
      FAST mode; None keeps the whole split.
    - ``resize``: bilinear resize of the 28x28 images to ``resize`` (an int or (H, W)), as d2l's loader offers.
    - The train loader shuffles every epoch (seeded); the test loader keeps the file order.

    Returns ``(train_loader, test_loader)``; batches are ``(X, y)`` with X (B, 1, H, W) float32 in [0, 1] and
    y (B,) int64.
    """
    loaders = []
    for split, size, shuffle in (("train", train_size, True), ("test", test_size, False)):
        X, y = load_fashion_mnist(split, root=root)
        X, y = _subset(X, y, size, seed)
        if resize is not None:
            X = torch.nn.functional.interpolate(X, size=resize, mode="bilinear", align_corners=False)
        bs = batch_size if split == "train" or test_batch_size is None else test_batch_size
        loaders.append(TensorLoader(X, y, bs, shuffle=shuffle, seed=seed, device=device))
    return loaders[0], loaders[1]


def train_val_split(validation_size: int = VALIDATION_SIZE, seed: int = SPLIT_SEED,
                    root: os.PathLike | str | None = None) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                                   tuple[torch.Tensor, torch.Tensor]]:
    """``((X_train, y_train), (X_val, y_val))``: the 60,000 training images split once, by a permutation seeded
    with ``seed``, into ``60000 - validation_size`` to train on and ``validation_size`` to tune on. The defaults
    are the book's one split; every chapter that tunes anything uses it."""
    X, y = load_fashion_mnist("train", root=root)
    if isinstance(validation_size, bool) or not isinstance(validation_size, int) or not 0 < validation_size < len(X):
        raise ValueError(f"validation_size must be an integer between 1 and {len(X) - 1}, got {validation_size!r}")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    val, train = order[:validation_size], order[validation_size:]
    return (X[train], y[train]), (X[val], y[val])


class Splits(NamedTuple):
    """Loaders over the book's three splits: ``train`` (shuffled), ``val`` and ``test`` (file order)."""
    train: TensorLoader
    val: TensorLoader
    test: TensorLoader


def load_splits(batch_size: int = 256, *, train_size: Optional[int] = None, val_size: Optional[int] = None,
                test_size: Optional[int] = None, seed: int = 0, device: torch.device | str | None = None,
                eval_batch_size: int = 1000, root: os.PathLike | str | None = None) -> Splits:
    """Loaders over the book's train (50,000), validation (10,000) and test (10,000) splits
    (:func:`train_val_split`). ``*_size``: a random subset of that many examples of each split (chosen with
    ``seed``, e.g. in FAST mode); None keeps the whole split. The train loader shuffles with ``seed``; the other
    two keep their order and use ``eval_batch_size``. Batches ``(X, y)``: X (B, 1, 28, 28) float32 in [0, 1],
    y (B,) int64."""
    (X_train, y_train), (X_val, y_val) = train_val_split(root=root)
    X_test, y_test = load_fashion_mnist("test", root=root)
    out = []
    for X, y, size, shuffle in ((X_train, y_train, train_size, True), (X_val, y_val, val_size, False),
                                (X_test, y_test, test_size, False)):
        X, y = _subset(X, y, size, seed)
        out.append(TensorLoader(X, y, batch_size if shuffle else eval_batch_size, shuffle=shuffle, seed=seed,
                                device=device))
    return Splits(*out)


def prepare_d2l(root: os.PathLike | str = "../data") -> Path:
    """Lay the four files out uncompressed in ``root/FashionMNIST/raw/``, where torchvision (and so
    ``d2l.load_data_fashion_mnist``, which reads ``../data``) finds them without downloading. Returns that folder.

    Run it from the folder d2l is called from (the chapters folder, for the book).
    """
    source = find_fashion_mnist()
    target = Path(root) / "FashionMNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for pair in FILES.values():
        for base in pair:
            out = target / base
            if out.is_file():
                continue
            src = _find_file(source, base)
            if src.suffix == ".gz":
                with gzip.open(src, "rb") as fin, open(out, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            else:
                shutil.copyfile(src, out)
    return target


def cache_in_repo() -> Optional[Path]:
    """Copy the four files into the repository's ``data/fashion-mnist/`` (if run from a checkout and the files
    are found elsewhere) and lay them out for d2l in ``data/FashionMNIST/raw/``. Returns the cache folder."""
    source = find_fashion_mnist()
    root = _repo_root()
    if root is None:
        return None
    cache = root / "data" / "fashion-mnist"
    if source.resolve() != cache.resolve():
        cache.mkdir(parents=True, exist_ok=True)
        for pair in FILES.values():
            for base in pair:
                src = _find_file(source, base)
                if not (cache / src.name).is_file():
                    shutil.copyfile(src, cache / src.name)
    prepare_d2l(root / "data")
    return cache


if __name__ == "__main__":  # `python -m normbook.data`, run by `make data`
    folder = cache_in_repo() or find_fashion_mnist()
    X_train, _ = load_fashion_mnist("train")
    X_test, _ = load_fashion_mnist("test")
    print(f"Fashion-MNIST ready in {folder}: {len(X_train)} training and {len(X_test)} test images")
