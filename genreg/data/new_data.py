"""New data for a trained model: a file of the kind it was trained on, or a dataset spec, read whole in file order
(``genreg encode`` and ``genreg reconstruct``, :mod:`genreg.cli.apply`), and the posterior of samples
(:func:`posterior_of`: means and variances, batched).

A file is read with the dataset spec the model file records (its keys, features, label, columns, layer), its path
replaced: every row in file order, no split, nothing fitted again. Samples stay in the data's units (the model
applies the transform it was trained with on the way in and inverts it on the way out); the features of a table or
an ``.h5ad`` are taken by name, in the model's order; each class column the model reads is mapped through the
model's own vocabulary, by value, and the columns it does not read are carried through as they are. A model file
that records no dataset (saved from Python) reads a ``.npz`` of its shapes. A dataset spec (a ``.json`` naming
any registered dataset, plugins' too) is loaded with :func:`~genreg.data.loading.load_data`, its ``transform``
off: its training split, then its test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genreg.data.columns import LABEL
from genreg.data.sparse import dense
from genreg.data.splits import Split
from genreg.errors import DataError, GenregError, ModelFileError, listing
from genreg.files.model_files import missing_plugins, model_file, read_metadata, read_spec
from genreg.model.conditions import is_continuous
from genreg.model.generative import GenerativeModel, Units
from genreg.model.inputs import Given, Images
from genreg.model.losses import check_values

#: The arrays ``genreg encode`` and ``reconstruct`` write besides the condition columns, whose names they keep.
RESERVED = ("mu", "var", "x", "images", "features", "row", "split", "obs_names")
#: Samples the model takes at a time.
BATCH_SIZE = 1000
# The files of each recorded dataset kind new data is read from, in words.
_KINDS = {"npz": "a .npz", "table": "a .csv, .tsv, .csv.gz, .tsv.gz, .parquet or .pq", "anndata": "an .h5ad"}


@dataclass
class NewData:
    """New data read for a model. ``samples`` (N, *sample shape) float32 in the data's units; ``condition`` the
    columns the model reads, as it reads them (classes int64, continuous values float32; None for an unconditional
    model); ``columns`` every condition column the data holds, in its own values (text as a unicode array);
    ``extras``: ``row`` (each sample's row in the file, or in its split), and ``split`` ("train"/"test", for a
    dataset spec) or ``obs_names`` (an ``.h5ad``); ``source`` names the data in messages."""

    samples: torch.Tensor
    condition: dict[str, torch.Tensor] | None
    columns: dict[str, np.ndarray]
    extras: dict[str, np.ndarray]
    source: str

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class _Read:
    """What a reader found: the samples, each condition column's values as the data holds them (by genreg's names:
    ``label`` is the class label), what the data calls each column it may hold (for messages), extras and the
    features' names."""

    samples: torch.Tensor
    values: dict[str, np.ndarray]
    named: dict[str, str]
    source: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    features: list[str] | None = None


def read_new_data(run: str | Path, data: str | Path, model: GenerativeModel | None = None) -> NewData:
    """``data`` read for the model of ``run`` (a run folder or model file; ``model``: that model, loaded already).

    ``data`` is a file of the kind the run's dataset reads (``npz``: a ``.npz``; ``table``: a CSV, TSV or Parquet
    file; ``anndata``: an ``.h5ad``), or a dataset spec (a ``.json``: ``{"type": ..., ...}`` or a whole spec with
    one under ``data``). Raises :class:`~genreg.errors.DataError` naming the file (and the column) for a file of
    another kind, a feature or a condition column the model needs that the data lacks, samples of another shape,
    or a class the model does not know; :class:`~genreg.errors.ModelFileError` for a recorded dataset that does
    not validate here; :class:`~genreg.errors.SpecError` for a dataset spec that does not.
    """
    if model is None:
        from genreg.files.model_files import load_model

        model = load_model(run)
    path = str(data)
    if path.lower().endswith(".json"):
        read = _dataset_spec(path)
    else:
        read = _file(path, read_spec(run).get("data"), str(run), model)
    return _for_model(read, model, str(run))


# --------------------------------------------------------------------------- reading


def _file(path: str, recorded: Any, run: str, model: GenerativeModel) -> _Read:
    """A file read as the recorded dataset reads one (a ``.npz`` of the model's shapes without a record)."""
    kind = recorded.get("type") if isinstance(recorded, dict) else None
    if kind in _KINDS:
        _check_kind(path, kind, run)
        config = _recorded_config(recorded, run).model_copy(update={"path": path, "test_path": None})
        if kind == "npz":
            return _npz(path, config, config.binarize)
        return _table(path, config, model) if kind == "table" else _anndata(path, config, model)
    if path.lower().endswith(".npz"):  # no dataset recorded, or one of another kind (mnist): arrays of its shapes
        from genreg_builtin.datasets import NpzConfig

        columns = [column for column in getattr(model.conditioner, "columns", []) if column != LABEL]
        binarize = recorded.get("binarize", "none") if isinstance(recorded, dict) else "none"
        return _npz(path, NpzConfig(path=path, columns=columns), binarize)
    arrays = (
        f"a .npz holding `images` (N, C, H, W) or `x` (N, F): {model.data_info.samples}, beside `labels` and any "
        "condition column the model reads as arrays of one value per sample"
    )
    example = f'{{"type": "table", "path": "{Path(path).name}"}}'
    if kind is None:
        raise DataError(
            f"{path}: the model file {run} records no dataset (its model was saved from Python, not by `genreg "
            f"run`), so genreg does not know how its data were read; give {arrays}, or a dataset spec (a .json file "
            f"naming the dataset and its settings, e.g. {example})."
        )
    raise DataError(
        f"{path}: the model {run} was trained on the `{kind}` dataset, which reads no file given alone; give "
        f"{arrays}, or a dataset spec (a .json file naming the dataset and its settings, e.g. {example})."
    )


def _check_kind(path: str, kind: str, run: str) -> None:
    """A file whose suffix is not one the recorded dataset ``kind`` reads is a :class:`DataError`."""
    from genreg_builtin.tables import SUFFIXES

    suffixes = {"npz": (".npz",), "table": SUFFIXES, "anndata": (".h5ad",)}[kind]
    if path.lower().endswith(suffixes):
        return
    ending = f"ends in {Path(path).suffix!r}" if Path(path).suffix else "has no suffix"
    raise DataError(
        f"{path}: the model {run} was trained on the `{kind}` dataset, so new data for it is {_KINDS[kind]} file, "
        f"read with the same settings; this file {ending}. Save the data as such a file, or give a dataset spec "
        f'(a .json file naming the dataset, e.g. {{"type": "table", "path": "{Path(path).name}"}}) instead.'
    )


def _recorded_config(recorded: dict, run: str) -> Any:
    """The dataset config the model file records, validated (naming the plugins it was saved with that are not
    loaded here when it does not validate)."""
    from genreg.spec.validate import validate_part

    try:
        return validate_part("dataset", recorded)
    except GenregError as exc:
        missing = missing_plugins(read_metadata(model_file(run)))
        raise ModelFileError(
            f"the model file {run} records a dataset that does not validate here: {exc}{missing}"
        ) from None


def _npz(path: str, config: Any, binarize: str) -> _Read:
    """Every sample of a ``.npz`` (rounded as the model's images were for ``binarize: threshold``)."""
    from genreg_builtin.datasets import read_npz_rows

    split = read_npz_rows(path, config)
    samples = split.images
    if binarize == "threshold" and samples.dim() == 4:
        samples = (samples > 0.5).float()
    named = {LABEL: f"the labels (array {config.labels_key!r})", **{c: f"the array {c!r}" for c in config.columns}}
    return _Read(samples, _split_values(split), named, path)


def _table(path: str, config: Any, model: GenerativeModel) -> _Read:
    """Every row of a CSV, TSV or Parquet file, the model's features in its order."""
    from genreg_builtin.tables import read_table_rows

    features = model.data_info.features or config.features
    if features is None:
        raise DataError(f"{path}: the model records no feature names, by which a table's columns are read.")
    rows = read_table_rows(path, config, list(features))
    label = f"the label column {config.label!r}" if config.label else "the label (`label` is null in the run's spec)"
    named = {LABEL: label, **{c: f"the column {c!r}" for c in config.columns}}
    return _Read(torch.from_numpy(rows.x), _rows_values(rows), named, path, features=list(features))


def _anndata(path: str, config: Any, model: GenerativeModel) -> _Read:
    """Every cell of an ``.h5ad`` file, the model's features (var names) in its order, and the obs names."""
    from genreg_builtin.h5ad import read_h5ad_rows

    rows, names, obs_names = read_h5ad_rows(path, config, model.data_info.features)
    label = f"the label (.obs column {config.label!r})" if config.label else "the label (`label` is null)"
    named = {LABEL: label, **{c: f"the .obs column {c!r}" for c in config.columns}}
    extras = {"obs_names": obs_names}
    return _Read(torch.from_numpy(rows.x), _rows_values(rows), named, path, extras, names)


def _rows_values(rows: Any) -> dict[str, np.ndarray]:
    """The condition columns of a table's rows (``label`` for its labels, where it has them)."""
    return {**({} if rows.labels is None else {LABEL: rows.labels}), **rows.columns}


def _dataset_spec(path: str) -> _Read:
    """The dataset a ``.json`` spec names, loaded with its transform off: training split, then test split."""
    from genreg.data.loading import load_data
    from genreg.spec.overrides import read_json
    from genreg.spec.validate import validate_part

    raw = read_json(path)
    if isinstance(raw, dict) and "type" not in raw and isinstance(raw.get("data"), dict):
        raw = raw["data"]  # a whole spec: its dataset
    if not isinstance(raw, dict) or "type" not in raw:
        raise DataError(
            f'{path}: a dataset spec is a JSON object naming a registered dataset, e.g. {{"type": "table", "path": '
            '"new.csv"}, or a whole spec with one under "data"; this file names none.'
        )
    config = validate_part("dataset", raw)
    if "transform" in type(config).model_fields:
        config = config.model_copy(update={"transform": "none"})  # the model applies its own
    data = load_data(config)
    splits = {"train": data.train, "test": data.test}
    values = [_split_values(split) for split in splits.values()]
    columns = {name: np.concatenate([part[name] for part in values]) for name in values[0] if name in values[1]}
    extras = {
        "row": np.concatenate([np.arange(len(split), dtype=np.int64) for split in splits.values()]),
        "split": np.array([name for name, split in splits.items() for _ in range(len(split))], dtype=str),
    }
    samples = torch.cat([dense(data.train.images), dense(data.test.images)])
    named = {name: f"the column {name!r}" for name in columns}
    return _Read(samples, columns, named, f"{path} ({data.source})", extras, data.features)


def _split_values(split: Split) -> dict[str, np.ndarray]:
    """Each condition column of ``split`` in the data's own values: a class column with a vocabulary as its values
    (strings as a unicode array, or ids), one without as its class indices, a continuous one as floats; the
    labels of a split without any are left out."""
    values = {}
    for name, codes in split.columns.items():
        if name == LABEL and not split.labelled:
            continue
        vocabulary = split.vocabularies.get(name)
        array = codes.cpu().numpy()
        values[name] = np.asarray(vocabulary)[array] if vocabulary else array
    return values


# --------------------------------------------------------------------------- as the model reads it


def _for_model(read: _Read, model: GenerativeModel, run: str) -> NewData:
    """``read`` checked against the model: features reordered to its, sample shape, condition columns."""
    info = model.data_info
    samples = read.samples
    if read.features is not None and info.features is not None and read.features != info.features:
        where = {name: j for j, name in enumerate(read.features)}
        absent = [name for name in info.features if name not in where]
        if absent:
            raise DataError(
                f"{read.source}: the model {run} was trained on {len(info.features)} features, and this data lacks "
                f"{len(absent)} of them: {listing(absent)}; every feature the model knows must be there (in any "
                "order)."
            )
        samples = samples[:, [where[name] for name in info.features]]
    if tuple(samples.shape[1:]) != info.image_shape:
        shape = samples.shape[1:]
        size = f"vectors of {shape[0]} features" if len(shape) == 1 else f"images of {'x'.join(map(str, shape))}"
        raise DataError(
            f"{read.source}: its samples are {size}, but the model {run} takes {info.samples}; give data of the kind "
            "it was trained on."
        )
    clash = [name for name in read.values if name in RESERVED]
    if clash:
        raise DataError(
            f"{read.source}: the condition column(s) {listing(clash)} have the name of an array genreg writes "
            f"beside them ({', '.join(RESERVED)}); rename them in the data."
        )
    check_values(model.losses, samples, read.source, "the new data")  # counts: no fractions, negatives, empty rows
    extras = {"row": np.arange(len(samples), dtype=np.int64), **read.extras}
    condition = _condition(read, model, run)
    return NewData(samples.float().contiguous(), condition, read.values, extras, read.source)


def _condition(read: _Read, model: GenerativeModel, run: str) -> dict[str, torch.Tensor] | None:
    """The columns the model reads, as it reads them; None for an unconditional model."""
    if model.conditioner is None:
        return None
    columns = model.conditioner.columns
    missing = [column for column in columns if column not in read.values]
    if missing:
        lacks = ", ".join(read.named.get(column, f"the column {column!r}") for column in missing)
        raise DataError(
            f"{read.source}: the model {run} is conditional on {listing(columns)}, so every row needs its value of "
            f"each, and this data lacks {lacks}; add them (with the values the model was trained on)."
        )
    condition = {}
    for column, part in zip(columns, model.conditioner.parts, strict=True):
        where = read.named.get(column, f"the column {column!r}")
        if is_continuous(part):
            condition[column] = _continuous(read.values[column], where, read.source)
        else:
            count = int(getattr(part, "num_classes", model.data_info.columns.get(column, 0)))
            vocabulary = model.data_info.vocabularies.get(column)
            condition[column] = _classes(read.values[column], count, vocabulary, where, read.source, run)
    return condition


def _continuous(values: np.ndarray, where: str, source: str) -> torch.Tensor:
    """A continuous column's values as float32; text or a value that is not finite is a :class:`DataError`."""
    if values.dtype.kind not in "biuf":
        raise DataError(f"{source}: {where} holds text ({values[0].item()!r}, ...); the model reads it as numbers.")
    floats = torch.from_numpy(values.astype(np.float32))
    bad = (~torch.isfinite(floats)).nonzero()
    if len(bad):
        raise DataError(f"{source}: {where} holds a NaN or infinite value at row {int(bad[0])}; fill or drop it.")
    return floats


def _classes(
    values: np.ndarray, count: int, vocabulary: list | None, where: str, source: str, run: str
) -> torch.Tensor:
    """A class column's values as the model's class indices (int64): through ``vocabulary`` by value (or its
    text: ``"3000"`` for the id 3000), or, without one, integer ids that are the indices 0..count-1."""
    if vocabulary:
        distinct, inverse = np.unique(values, return_inverse=True)
        by_value = {value: k for k, value in enumerate(vocabulary)}
        by_text = {str(value): k for k, value in enumerate(vocabulary)}
        classes, unknown = [], []
        for value in distinct.tolist():
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            k = None if isinstance(value, bool) else by_value.get(value)
            k = by_text.get(str(value)) if k is None else k
            classes.append(-1 if k is None else k)
            if k is None:
                unknown.append(value)
        if unknown:
            raise DataError(
                f"{source}: {where} holds {len(unknown)} value(s) the model {run} does not know: "
                f"{listing(unknown)}; it knows the {len(vocabulary)} values of its training data: "
                f"{listing(vocabulary)}. Drop those rows, or map them to values the model knows."
            )
        return torch.as_tensor(np.asarray(classes, dtype=np.int64)[inverse.reshape(-1)])
    if values.dtype.kind not in "biuf":
        raise DataError(
            f"{source}: {where} holds text ({values[0].item()!r}, ...), but the model {run} knows its classes as the "
            f"integer ids 0..{count - 1} of its training data; give those ids."
        )
    ids = values.astype(np.int64)
    bad = np.flatnonzero((ids != values) | (ids < 0) | (ids >= count))
    if len(bad):
        raise DataError(
            f"{source}: {where} holds {values[bad[0]].item()!r} at row {bad[0]}, but the model {run} knows the classes "
            f"0..{count - 1} of it; drop those rows, or map them to classes the model knows."
        )
    return torch.from_numpy(ids)


# --------------------------------------------------------------------------- the model on it


@torch.no_grad()
def posterior_of(
    model: GenerativeModel,
    x: Images,
    condition: Given | None = None,
    *,
    units: Units = "data",
    batch_size: int = BATCH_SIZE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The posterior q(z|x) of each sample: its mean ``mu`` (B, latent_dim), what ``model.encode`` gives, and its
    variance ``var`` (B, latent_dim), exp(log_var), float32 on the model's device; ``var`` is None for a latent
    that gives none (an autoencoder's deterministic code). One sample without the batch axis gives (latent_dim,).

    ``x`` and ``condition`` are what :meth:`~genreg.model.generative.GenerativeModel.encode` takes (numpy or torch,
    in the data's ``units`` by default); ``batch_size`` samples go through the encoder at a time, and the caller's
    random state is left as it was. Raises what ``encode`` raises.
    """
    single = getattr(x, "ndim", None) == len(model.data_info.image_shape)
    x = x[None] if single else x
    n = x.shape[0] if hasattr(x, "shape") else len(x)  # a scipy sparse matrix has no len
    needed = model.condition_encoder or condition is not None  # as encode: a q(z|x) encoder needs none
    given = model.given(condition, n) if needed else None
    device, gives_var = model.device, "log_var" in getattr(model.latent, "provides", ())
    mus, variances = [], []
    with model.evaluating(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for start in range(0, n, batch_size):
            batch, _ = model.images(x[start : start + batch_size], units)
            part = None if given is None else {column: v[start : start + batch_size] for column, v in given.items()}
            features = model.encoder(batch, model.condition(part) if model.condition_encoder else None)
            mus.append(model.latent.mean(features).float())
            if gives_var:  # the latent's forward draws a sample: hence the forked random state
                variances.append(model.latent(features).params["log_var"].float().exp())
    empty = torch.empty(0, model.latent.dim, device=device)
    mu = torch.cat(mus) if mus else empty
    var = (torch.cat(variances) if variances else empty) if gives_var else None
    return (mu[0], None if var is None else var[0]) if single else (mu, var)
