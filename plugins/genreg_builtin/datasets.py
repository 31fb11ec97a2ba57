"""Built-in datasets: a bundled MNIST sample, torchvision's MNIST/Fashion-MNIST, and user ``.npz`` files.

Every factory turns raw arrays into checked splits with :func:`genreg.data.as_split`
and :func:`genreg.data.finish`, so all datasets share one set of checks and error
messages.

Data credit: ``data/mnist_5k.npz`` holds 5,000 digits from the MNIST database of
handwritten digits by Yann LeCun and Corinna Cortes, licensed under CC BY-SA 3.0
(https://creativecommons.org/licenses/by-sa/3.0/).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy
from pydantic import Field, field_validator

from genreg.data import DatasetConfig, DataSplits, Split, as_split, finish
from genreg.data.checks import Layout
from genreg.data.columns import LABEL
from genreg.data.sparse import RowStore
from genreg.errors import DataError, file_kind, first_line
from genreg.limits import check_memory, gb

__all__ = [
    "MnistSampleConfig",
    "NpzConfig",
    "TorchvisionConfig",
    "MNISTConfig",
    "FashionMNISTConfig",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_sample",
    "load_npz",
]

# The bundled sample's split must never change, whatever seed a spec uses, so
# results on it stay comparable across runs and genreg versions.
_SAMPLE_SPLIT_SEED = 0
_SAMPLE_TEST_FRACTION = 0.2

# The uncompressed files torchvision's MNIST-style datasets read from <root>/<Class>/raw/.
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _stratified_split(split: Split, test_fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off ``test_fraction`` of every class, chosen by a generator seeded with ``seed``.

    Stratifying keeps the class balance of both halves equal to the whole, and the
    private generator makes the split depend only on ``seed`` and the labels, not on
    global random state. Every class keeps at least one training example. The rows keep
    their order within each half. ``split`` is the caller's to give up: its samples'
    memory becomes the training half's (see :func:`_compacted`), so that splitting a large
    table costs the test half's copy, not a copy of the whole.
    """
    labels = split.labels.cpu().numpy()
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(int(round(len(members) * test_fraction)), len(members) - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train_idx, test_idx = np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))
    test = split.take(torch.from_numpy(test_idx))  # a copy of the test rows, before their memory is written over
    columns = split.condition(torch.from_numpy(train_idx))
    kept = split.images.take(train_idx) if isinstance(split.images, RowStore) else _compacted(split.images, train_idx)
    train = Split(kept, columns[LABEL], columns, split.vocabularies, split.labelled)
    return train, test


def _compacted(samples: torch.Tensor, rows: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """``samples[rows]`` for sorted ``rows``, written over ``samples`` itself from its start, ``chunk`` rows at
    a time (each chunk's rows lie at or after where they go, and after every row written before them), and
    returned as a view of its first ``len(rows)`` rows: no second copy of a large table."""
    index = torch.from_numpy(rows)
    for start in range(0, len(rows), chunk):
        taken = index[start : start + chunk]
        samples[start : start + len(taken)] = samples[taken]
    return samples[: len(rows)]


def with_ink(split: Split) -> Split:
    """Add the derived continuous column ``ink``: each image's mean pixel intensity (how thick the stroke is)."""
    return Split(split.images, split.labels, {**split.columns, "ink": split.images.mean(dim=(1, 2, 3))})


# --------------------------------------------------------------------------- mnist-sample


class MnistSampleConfig(DatasetConfig):
    """5,000 bundled MNIST digits, fixed stratified 4,000/1,000 split (no download).

    Needs no download, so examples and tests run anywhere. Condition columns: ``label``
    and the derived ``ink`` (mean pixel intensity of the grey image).
    """


def load_mnist_sample(config: MnistSampleConfig) -> DataSplits:
    """5,000 bundled MNIST digits with a fixed stratified 4,000/1,000 train/test split (no download).

    The split uses its own fixed seed, independent of the spec's seed, so every run
    on this dataset sees exactly the same 400 training and 100 test digits per class.
    """
    source = "mnist-sample (genreg_builtin/data/mnist_5k.npz)"
    resource = files("genreg_builtin") / "data" / "mnist_5k.npz"
    with resource.open("rb") as handle, np.load(handle) as archive:
        images, labels = archive["images"], archive["labels"]
    digits = with_ink(as_split(images, labels, source))
    train, test = _stratified_split(digits, _SAMPLE_TEST_FRACTION, _SAMPLE_SPLIT_SEED)
    return finish(train, test, config, source)


# --------------------------------------------------------------------------- torchvision


class TorchvisionConfig(DatasetConfig):
    """A torchvision MNIST-style dataset stored under ``root`` (columns ``label`` and the derived ``ink``).

    ``root``: the folder torchvision reads from (and downloads into), e.g. ``data``
    holds ``data/MNIST/raw/train-images-idx3-ubyte``. ``download``: fetch missing
    files from the internet; off by default so a run never touches the network
    unless asked to.
    """

    root: str = Field("data", description="folder torchvision reads from and downloads into")
    download: bool = Field(False, description="fetch missing files from the internet")


class MNISTConfig(TorchvisionConfig):
    """MNIST handwritten digits via torchvision (60,000 train / 10,000 test, 28x28 grey)."""


class FashionMNISTConfig(TorchvisionConfig):
    """Fashion-MNIST clothing images via torchvision (60,000 train / 10,000 test, 28x28 grey)."""


def _load_torchvision(class_name: str, config: TorchvisionConfig) -> DataSplits:
    """Load both splits of ``torchvision.datasets.<class_name>``, turning its errors into :class:`DataError`.

    torchvision is imported here rather than at module level because importing it
    takes seconds, and this module is imported whenever genreg lists its plugins.
    """
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, class_name)
    source = f"{class_name} in '{config.root}'"
    try:
        train = dataset_class(config.root, train=True, download=config.download)
        test = dataset_class(config.root, train=False, download=False)
    except (RuntimeError, OSError) as error:
        raise DataError(_unavailable_message(class_name, config, error)) from error
    except (AssertionError, TypeError, ValueError) as error:
        raise DataError(
            f"{source}: the files in '{Path(config.root) / class_name / 'raw'}' are not valid IDX files "
            f"({first_line(error)}); delete them and set `download: true` to fetch fresh copies."
        ) from error
    train_split = with_ink(as_split(train.data, train.targets, source))
    test_split = with_ink(as_split(test.data, test.targets, source))
    return finish(train_split, test_split, config, source)


def _unavailable_message(class_name: str, config: TorchvisionConfig, error: Exception) -> str:
    """One paragraph saying where the files were expected and how to get them."""
    raw = Path(config.root) / class_name / "raw"
    expected = ", ".join(str(raw / name) for name in _IDX_FILES)
    if config.download:
        return (
            f"could not download {class_name} into the root folder '{config.root}' ({first_line(error)}). "
            f"Check the network connection, or place the uncompressed files yourself: {expected}."
        )
    missing = [name for name in _IDX_FILES if not (raw / name).is_file()]
    missing_note = f" (missing: {', '.join(missing)})" if 0 < len(missing) < len(_IDX_FILES) else ""
    return (
        f"{class_name} was not found in the root folder '{config.root}': torchvision expects the uncompressed "
        f"IDX files {expected}{missing_note}. Set `download: true` in the dataset spec to fetch them "
        "(needs internet), or set `root` to a folder that already holds them."
    )


def load_mnist(config: MNISTConfig) -> DataSplits:
    """MNIST handwritten digits via torchvision (60,000 train / 10,000 test, 28x28 grey)."""
    return _load_torchvision("MNIST", config)


def load_fashion_mnist(config: FashionMNISTConfig) -> DataSplits:
    """Fashion-MNIST clothing images via torchvision (60,000 train / 10,000 test, 28x28 grey)."""
    return _load_torchvision("FashionMNIST", config)


# --------------------------------------------------------------------------- npz


class FileConfig(DatasetConfig):
    """The fields of a dataset read from a file of the user's: the file, its condition columns and the held-out
    split (a second file, or a stratified share of the first chosen with ``split_seed`` alone)."""

    path: str = Field(description="the data file")
    columns: list[str] = Field([], description="more columns to read as condition columns (text or ints: classes)")
    test_path: str | None = Field(None, description="a second file of the same kind for the test split")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="held-out share when test_path is null")
    split_seed: int = Field(0, ge=0, description="seed of the stratified held-out split")

    @field_validator("path", "test_path")
    @classmethod
    def _absolute(cls, path: str | None) -> str | None:
        """Relative to the working folder now, absolute from here on: a run's recorded spec then finds its
        files from any folder (``genreg transfer``, ``genreg eval`` read the data the run recorded)."""
        return None if path is None else str(Path(path).expanduser().absolute())


class NpzConfig(FileConfig):
    """Your own images or vectors and labels from a .npz file (optionally a second file for the test split).

    ``path``: a ``.npz`` with ``images`` of shape (N, H, W) or (N, C, H, W), uint8
    0..255 or float in [0, 1], or else ``x``: vectors (N, F) of any finite real
    numbers (a table's rows), and 1-D ``labels`` (integer ids or strings, mapped to
    classes through a sorted vocabulary when they are not 0..K-1; an archive
    without ``labels`` is unlabelled data, one class); ``layout: "NHWC"`` reads
    channels-last images (N, H, W, C) instead, and the default ``auto`` refuses images
    that look channels-last (last axis 1, 3 or 4 and axis 1 not); ``images_key`` /
    ``labels_key`` rename those arrays. ``columns``: more 1-D arrays (one value per
    sample) to read as condition columns: integers and strings are classes, floats are
    continuous. ``test_path``: a second ``.npz`` (same keys) for the test split;
    without it, a stratified ``test_fraction`` of ``path`` is held out, chosen with
    ``split_seed`` so the split stays fixed across runs.
    """

    path: str = Field(description="the .npz file with images and labels")
    images_key: str = Field("images", description="name of the images array")
    x_key: str = Field("x", description="name of the vectors array (N, F), read when the images array is absent")
    labels_key: str = Field("labels", description="name of the labels array")
    layout: Layout = Field(
        "auto", description="'NCHW', 'NHWC' (channels last), or 'auto': NCHW, refusing arrays that look NHWC"
    )
    columns: list[str] = Field([], description="more 1-D arrays to read as condition columns (ints: classes)")
    test_path: str | None = Field(None, description="a second .npz for the test split")


# The .npy versions numpy writes; 3.0 differs from 2.0 only in encoding the header as utf-8 (for field names).
_HEADER_READERS = {
    (1, 0): npy.read_array_header_1_0,
    (2, 0): npy.read_array_header_2_0,
    (3, 0): npy.read_array_header_2_0,
}
# What reading a damaged archive raises: zipfile's and zlib's errors, numpy's ValueErrors, an encrypted member's
# RuntimeError, an unknown compression's NotImplementedError.
_UNREADABLE = (OSError, ValueError, EOFError, RuntimeError, NotImplementedError, zlib.error, zipfile.BadZipFile)


def _read_npz(path: str, config: NpzConfig) -> Split:
    """Read and check one ``.npz`` file; every error is a :class:`DataError` naming ``path``.

    A ``.npz`` is a zip archive of ``.npy`` members, so the zip check up front gives a plain message for the
    common mistakes (a ``.npy``, a CSV); every array's header is read before any data, so an array that claims
    more bytes than the file or the machine holds is refused before anything allocates it.
    """
    kind = file_kind(path)  # before opening: a FIFO or /dev/zero would be read for ever
    if kind is None:
        raise DataError(f"{path}: file not found (working folder: {Path.cwd()}).")
    if kind != "a regular file":
        raise DataError(f"{path} is {kind}, not a regular file; give a .npz file written by numpy.savez.")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .npz archive; save images and labels with numpy.savez(_compressed).")
    try:
        with zipfile.ZipFile(path) as archive:
            samples_key = _samples_key(archive.namelist(), config)
            images, labels, columns = _arrays(archive, path, config, samples_key)
    except MemoryError as error:
        raise DataError(f"{path}: too large to load into this machine's memory ({first_line(error)}).") from None
    except _UNREADABLE as error:
        raise DataError(f"{path}: not a valid .npz file ({first_line(error)}).") from error
    keys = (samples_key, config.labels_key)
    return as_split(images, labels, path, columns, keys=keys, layout=config.layout)


def _arrays(
    archive: zipfile.ZipFile, path: str, config: NpzConfig, samples_key: str
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """The samples (``samples_key``), labels (None for an archive without them) and column arrays of an open
    archive, every header checked before any data is read.

    Raises :class:`DataError` listing the arrays present when one is missing, or naming the array whose
    header is damaged or claims more than the file or this machine's memory holds.
    """
    names = archive.namelist()
    members = {}
    samples_option = "images_key" if samples_key == config.images_key else "x_key"
    labels = [(config.labels_key, "labels_key")] if _labelled(names, config) else []
    for key, option in [(samples_key, samples_option), *labels] + [(name, "columns") for name in config.columns]:
        members[key] = next((name for name in (key, f"{key}.npy") if name in names), None)
        if members[key] is None:
            present = ", ".join(repr(name.removesuffix(".npy")) for name in names) or "none"
            vectors = f" (nor '{config.x_key}', `x_key`, for vectors)" if option == "images_key" else ""
            raise DataError(
                f"{path}: no array named '{key}' (named in `{option}`){vectors}; arrays present: {present}."
            )
    needed = sum(_claimed_bytes(archive, member, key, path) for key, member in members.items())
    what = f"{path}: loading the arrays {', '.join(map(repr, members))}"
    check_memory(needed, what, "use a smaller file or a machine with more memory.", DataError)
    arrays = {}
    for key, member in members.items():
        with archive.open(member) as stream:
            arrays[key] = npy.read_array(stream, allow_pickle=False)
    columns = {name: arrays[name] for name in config.columns}
    return arrays[samples_key], arrays.get(config.labels_key) if labels else None, columns


def _labelled(names: list[str], config: NpzConfig) -> bool:
    """Whether the archive's samples have labels: it holds ``labels_key``, or the spec names that array (whose
    absence is then an error)."""
    return "labels_key" in config.model_fields_set or any(
        n in names for n in (config.labels_key, f"{config.labels_key}.npy")
    )


def _samples_key(names: list[str], config: NpzConfig) -> str:
    """The array holding the samples: ``images_key`` where the archive has it, else ``x_key`` where it has that."""
    held = {name.removesuffix(".npy") for name in names}
    if "x_key" in config.model_fields_set and "images_key" not in config.model_fields_set:
        return config.x_key  # the user named the vectors: a missing one is reported under that name
    return config.x_key if config.images_key not in held and config.x_key in held else config.images_key


def _claimed_bytes(archive: zipfile.ZipFile, member: str, key: str, path: str) -> int:
    """The bytes the ``.npy`` header of ``member`` claims for its data, checked against what the member holds.

    Raises :class:`DataError` naming ``path`` and the array ``key`` for a header that is not one, an array of
    Python objects (never unpickled), a negative size, or more data claimed than the member holds.
    """
    with archive.open(member) as stream:
        try:
            version = npy.read_magic(stream)
            if version not in _HEADER_READERS:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not one numpy writes")
            shape, _, dtype = _HEADER_READERS[version](stream)
        except (ValueError, TypeError, SyntaxError) as error:
            raise DataError(f"{path}: array '{key}' is not a valid .npy array ({first_line(error)}).") from None
        offset = stream.tell()
    if dtype.hasobject:
        raise DataError(
            f"{path}: array '{key}' holds Python objects (dtype {dtype}), which genreg never unpickles; "
            "save it as numbers (integers, floats or booleans)."
        )
    if any(size < 0 for size in shape):
        raise DataError(f"{path}: array '{key}' claims a negative shape {shape}; the file is damaged.")
    claimed, held = math.prod(shape) * dtype.itemsize, archive.getinfo(member).file_size - offset
    if claimed > held:
        raise DataError(
            f"{path}: array '{key}' claims shape {shape} of {dtype} ({gb(claimed)}), but the file holds only "
            f"{gb(held)} for it: it is truncated or damaged; save it again."
        )
    return claimed


def load_npz(config: NpzConfig) -> DataSplits:
    """Your own images and labels from a .npz file (optionally a second file for the test split).

    With no ``test_path`` the held-out split is stratified by class and seeded by
    ``split_seed`` alone, so it does not move when the training seed changes.
    """
    data = _read_npz(config.path, config)
    if config.test_path is None:
        train, test = _stratified_split(data, config.test_fraction, config.split_seed)
        return finish(train, test, config, config.path)
    test = _read_npz(config.test_path, config)
    return finish(data, test, config, f"{config.path} and {config.test_path}")


# --------------------------------------------------------------------------- one file, every row (new data for a model)


def read_npz_rows(path: str, config: NpzConfig) -> Split:
    """Every sample of the ``.npz`` at ``path`` in file order, read with ``config``'s keys, ``layout`` and
    ``columns`` (``genreg encode`` reads new data for a trained model so): not split, binarised nor transformed;
    class columns hold this file's own codes, with ``split.vocabularies`` (see :func:`genreg.data.as_split`).

    The labels and the ``columns`` the archive lacks are left out (an unlabelled split, fewer columns): the caller
    says which it needs. Raises :class:`DataError` as :func:`load_npz` does for the file and its arrays.
    """
    held = _array_names(path)
    values = {**config.model_dump(), "path": path, "test_path": None}
    values["columns"] = [name for name in config.columns if name in held]
    named = {"path", "columns", "layout"} | ({"labels_key"} if config.labels_key in held else set())
    return _read_npz(path, NpzConfig.model_construct(_fields_set=named, **values))


def _array_names(path: str) -> set[str]:
    """The names of the arrays in the ``.npz`` at ``path``; none for a path :func:`_read_npz` refuses (it says
    why)."""
    if file_kind(path) != "a regular file" or not zipfile.is_zipfile(path):
        return set()
    try:
        with zipfile.ZipFile(path) as archive:
            return {name.removesuffix(".npy") for name in archive.namelist()}
    except _UNREADABLE:
        return set()
