"""normbook.data: IDX parsing, the lookup order, the error when nothing is found, loaders, d2l offline."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from normbook import data


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, compress: bool = False) -> Path:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_tiny_set(folder: Path, n_train: int = 12, n_test: int = 5, compress: bool = True, seed: int = 0) -> dict:
    """Four tiny IDX files in Fashion-MNIST's names; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        image_base, label_base = data.FILES[split]
        write_idx(folder / image_base, images, compress=compress)
        write_idx(folder / label_base, labels, compress=compress)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No real data anywhere: empty repo cache, empty system folder, no $NORMBOOK_DATA, downloads fail."""
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    system = tmp_path / "system"
    monkeypatch.delenv("NORMBOOK_DATA", raising=False)
    monkeypatch.setattr(data, "_repo_root", lambda: repo)
    monkeypatch.setattr(data, "SYSTEM_DIR", system)
    import torchvision

    class Offline:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no network in this test")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    data._CACHE.clear()
    yield {"repo": repo, "system": system, "tmp": tmp_path}
    data._CACHE.clear()


# -- IDX parsing -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip_uint8(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "x-idx3-ubyte", array, compress=compress)
    tensor = data.read_idx(path)
    assert tensor.dtype == torch.uint8
    assert tensor.shape == (2, 3, 4)
    assert np.array_equal(tensor.numpy(), array)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([[1, -2, 70000], [3, 2**30, -5]], dtype=np.int32)
    tensor = data.read_idx(write_idx(tmp_path / "ints", array, type_code=0x0C))
    assert tensor.dtype == torch.int32
    assert tensor.tolist() == array.tolist()


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)


def test_read_idx_rejects_truncated_file(tmp_path):
    array = np.zeros((4, 5), dtype=np.uint8)
    path = write_idx(tmp_path / "trunc", array)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.read_idx(path)


# -- lookup order and the error ---------------------------------------------------------------------------------

def test_lookup_order(isolated, monkeypatch, tmp_path):
    env_dir, repo_dir, system_dir = tmp_path / "env", isolated["repo"] / "data" / "fashion-mnist", isolated["system"]
    for folder in (env_dir, repo_dir, system_dir):
        write_tiny_set(folder)
    monkeypatch.setenv("NORMBOOK_DATA", str(env_dir))
    assert data.find_fashion_mnist(download=False) == env_dir            # 1. $NORMBOOK_DATA
    monkeypatch.delenv("NORMBOOK_DATA")
    assert data.find_fashion_mnist(download=False) == repo_dir           # 2. the repository's data/ cache
    for f in repo_dir.iterdir():
        f.unlink()
    assert data.find_fashion_mnist(download=False) == system_dir         # 3. the Debian package's folder


def test_incomplete_folder_is_skipped(isolated, monkeypatch, tmp_path):
    env_dir = tmp_path / "env"
    write_tiny_set(env_dir)
    next(env_dir.glob("t10k-labels*")).unlink()
    write_tiny_set(isolated["system"])
    monkeypatch.setenv("NORMBOOK_DATA", str(env_dir))
    assert data.find_fashion_mnist(download=False) == isolated["system"]


def test_download_is_the_last_resort(isolated, monkeypatch):
    """4. torchvision's download, into the repository's data/ folder, when nothing is found locally."""
    import torchvision
    calls = []

    class FakeDownload:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_tiny_set(Path(root) / "FashionMNIST" / "raw", compress=False)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeDownload)
    folder = data.find_fashion_mnist()
    assert folder == isolated["repo"] / "data" / "FashionMNIST" / "raw"
    assert calls and all(download for _, _, download in calls)


def test_error_lists_every_way_to_get_the_data(isolated):
    with pytest.raises(data.DataNotFoundError) as info:
        data.find_fashion_mnist()
    message = str(info.value)
    assert "NORMBOOK_DATA" in message
    assert "data/fashion-mnist" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "torchvision" in message and "no network in this test" in message
    assert isinstance(info.value, FileNotFoundError)


def test_error_outside_a_checkout_offers_no_repository_remedies(isolated, monkeypatch):
    monkeypatch.setattr(data, "_repo_root", lambda: None)   # normbook installed with `pip install .`
    with pytest.raises(data.DataNotFoundError) as info:
        data.find_fashion_mnist()
    message = str(info.value)
    assert "make data" not in message and "repository" not in message
    assert "NORMBOOK_DATA" in message and "torchvision" in message


def test_error_in_colab_names_the_runtime_and_no_apt_or_make(isolated, monkeypatch):
    from normbook import config
    monkeypatch.setattr(data, "_repo_root", lambda: None)
    monkeypatch.setattr(config, "in_colab", lambda: True)
    with pytest.raises(data.DataNotFoundError) as info:
        data.find_fashion_mnist()
    message = str(info.value)
    assert "Reconnect" in message and "torchvision" in message
    assert "apt-get" not in message and "make data" not in message


def test_no_download_when_disallowed(isolated):
    with pytest.raises(data.DataNotFoundError) as info:
        data.find_fashion_mnist(download=False)
    assert "failed with" not in str(info.value)


# -- loading and loaders on the tiny set ---------------------------------------------------------------------

def test_load_tiny_set(isolated, monkeypatch, tmp_path):
    arrays = write_tiny_set(tmp_path / "env", n_train=12, n_test=5)
    monkeypatch.setenv("NORMBOOK_DATA", str(tmp_path / "env"))
    X, y = data.load_fashion_mnist("train")
    assert X.shape == (12, 1, 28, 28) and X.dtype == torch.float32
    assert y.dtype == torch.int64
    assert torch.equal(X[:, 0] * 255, torch.from_numpy(arrays["train"][0]).float())
    assert y.tolist() == arrays["train"][1].tolist()
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_fashion_mnist("validation")


def test_tensor_loader_covers_every_example_once_and_is_seeded():
    X = torch.arange(10.0).reshape(10, 1)
    y = torch.arange(10)
    loader = data.TensorLoader(X, y, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3
    epoch1 = torch.cat([yb for _, yb in loader])
    epoch2 = torch.cat([yb for _, yb in loader])
    assert sorted(epoch1.tolist()) == list(range(10))
    assert not torch.equal(epoch1, epoch2)  # reshuffled every epoch
    again = data.TensorLoader(X, y, batch_size=4, shuffle=True, seed=3)
    assert torch.equal(torch.cat([yb for _, yb in again]), epoch1)  # same seed, same order
    for xb, yb in data.TensorLoader(X, y, batch_size=4, shuffle=True, seed=3):
        assert torch.equal(xb[:, 0].long(), yb)  # images and labels stay paired
    assert len(data.TensorLoader(X, y, batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        data.TensorLoader(X, y, batch_size=0)
    with pytest.raises(ValueError, match="same length"):
        data.TensorLoader(X, y[:5], batch_size=2)


def test_load_data_subset_and_resize(isolated, monkeypatch, tmp_path):
    write_tiny_set(tmp_path / "env", n_train=12, n_test=5)
    monkeypatch.setenv("NORMBOOK_DATA", str(tmp_path / "env"))
    train, test = data.load_data(4, train_size=8, resize=32, seed=1)
    assert train.num_examples == 8 and test.num_examples == 5
    xb, yb = next(iter(train))
    assert xb.shape == (4, 1, 32, 32) and yb.shape == (4,)
    train2, _ = data.load_data(4, train_size=8, resize=32, seed=1)
    assert torch.equal(train.y, train2.y)


# -- the real data set ---------------------------------------------------------------------------------------

def _real_set_available() -> bool:
    try:
        data.find_fashion_mnist(download=False)
    except data.DataNotFoundError:
        return False
    return True


real = pytest.mark.skipif(not _real_set_available(), reason="Fashion-MNIST is not installed here")


@real
def test_real_fashion_mnist():
    data._CACHE.clear()
    for split, n in (("train", 60000), ("test", 10000)):
        X, y = data.load_fashion_mnist(split)
        assert X.shape == (n, 1, 28, 28)
        assert X.dtype == torch.float32
        assert float(X.min()) == 0.0 and float(X.max()) == 1.0
        assert y.min() == 0 and y.max() == 9
        # Fashion-MNIST is exactly balanced: 6000 training and 1000 test images per class
        assert torch.bincount(y, minlength=10).tolist() == [n // 10] * 10


@real
def test_d2l_loader_runs_offline_after_prepare(tmp_path, monkeypatch):
    import torchvision
    d2l = pytest.importorskip("d2l.torch")

    def no_download(*args, **kwargs):
        raise RuntimeError("d2l tried to download")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_download)
    workdir = tmp_path / "chapters"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    target = data.prepare_d2l("../data")  # where d2l.load_data_fashion_mnist looks, relative to the cwd
    assert sorted(p.name for p in target.iterdir()) == sorted(b for pair in data.FILES.values() for b in pair)
    monkeypatch.setattr(d2l, "get_dataloader_workers", lambda: 0)
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    X, y = next(iter(train_iter))
    assert X.shape == (256, 1, 28, 28) and y.shape == (256,)
    assert len(train_iter.dataset) == 60000 and len(test_iter.dataset) == 10000
