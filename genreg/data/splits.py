"""In-memory datasets: every split is a few tensors, moved to the device once.

Dataset plugins return :class:`DataSplits`; the trainer slices batches out of
the resident tensors instead of running a per-sample ``DataLoader``.

Besides the images, a split holds condition columns, one value per image: the
class label (column ``label``) and any others a dataset provides, e.g. the
derived ``ink`` of the MNIST datasets or arrays named in an ``npz`` spec. A class
column holds class indices 0..K-1; a float column is a continuous quantity. A class
column whose values in the data are not 0..K-1 (strings such as "CD14+ Monocyte",
ids such as 3000 and 7000) has a vocabulary: the sorted values, class k being the
k-th. Samples of vectors may carry a fitted :class:`~genreg.data.transforms.Transform`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from genreg.data.columns import LABEL
from genreg.data.sparse import RowStore
from genreg.data.transforms import Step, Transform
from genreg.errors import ConditionError

#: A class's value in the data: a string ("CD14+ Monocyte") or an integer id.
ClassValue = str | int


class DatasetConfig(BaseModel):
    """Fields every dataset accepts; a dataset's config class subclasses this.

    ``binarize``: ``none`` keeps grey levels in [0, 1]; ``dynamic`` draws a fresh
    Bernoulli sample of every training image each time it is used (the usual
    regulariser for Bernoulli VAEs); ``threshold`` rounds every image once.
    ``transform``: steps applied in order to vector features, fitted on the training
    split and kept with the model (see :mod:`genreg.data.transforms`), e.g.
    ``["log1p", "standardize"]``.
    """

    model_config = ConfigDict(extra="forbid")

    binarize: Literal["none", "dynamic", "threshold"] = "none"
    transform: Step | list[Step] = Field(
        "none", description="'log1p', 'standardize', 'minmax' or a list of them, in order; fitted on the training split"
    )

    @property
    def transform_steps(self) -> list[str]:
        """``transform`` as a list of steps, ``none`` left out."""
        steps = [self.transform] if isinstance(self.transform, str) else self.transform
        return [step for step in steps if step != "none"]


class Split:
    """Samples and condition columns, one value per sample.

    ``images`` holds the samples as float32: images (N, C, H, W) in [0, 1], or vectors (N, F) of any
    finite real values (a table's rows, spectra, expression profiles), dense or, for a mostly-zero matrix (counts
    of genes in cells), :class:`~genreg.data.sparse.SparseRows` (or rows read from disk, another
    :class:`~genreg.data.sparse.RowStore`), whose batches are dense when gathered.

    ``columns`` maps each column's name to its values (N,): int64 for classes,
    float32 for a continuous quantity. The class labels are the column ``label``
    (``labels`` for short); ``Split(images, labels, columns)`` puts them there.
    ``vocabularies`` maps a class column whose values in the data are not its indices
    to those values, sorted (class k is ``vocabularies[column][k]``). ``labelled`` is
    False for data without class labels (the column ``label`` then holds one class, 0).
    """

    def __init__(
        self,
        images: torch.Tensor | RowStore,
        labels: torch.Tensor,
        columns: Mapping[str, torch.Tensor] = (),
        vocabularies: Mapping[str, Sequence[ClassValue]] = (),
        labelled: bool = True,
    ) -> None:
        self.images = images
        self.columns = {LABEL: labels, **{name: values for name, values in dict(columns).items() if name != LABEL}}
        self.vocabularies = {name: list(values) for name, values in dict(vocabularies).items()}
        self.labelled = labelled

    @property
    def labels(self) -> torch.Tensor:
        """The class label of each image (N,), int64: the column ``label``."""
        return self.columns[LABEL]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        """The same split with every tensor on ``device``."""
        return self._with(self.images.to(device), {name: values.to(device) for name, values in self.columns.items()})

    def take(self, index: torch.Tensor | slice) -> Split:
        """The images at ``index`` with all their columns (sparse rows stay sparse)."""
        images = self.images.take(index) if isinstance(self.images, RowStore) else self.images[index]
        return self._with(images, self.condition(index))

    def with_images(self, images: torch.Tensor) -> Split:
        """The same columns beside other images (e.g. binarised ones)."""
        return self._with(images, self.columns)

    def condition(self, index: torch.Tensor | slice = slice(None)) -> dict[str, torch.Tensor]:
        """Every condition column at ``index``: what a model's conditioners read."""
        return {name: values[index] for name, values in self.columns.items()}

    def _with(self, images: torch.Tensor | RowStore, columns: Mapping[str, torch.Tensor]) -> Split:
        return Split(images, columns[LABEL], columns, self.vocabularies, self.labelled)


def column_classes(values: torch.Tensor) -> int:
    """A column's kind as :class:`DataInfo` records it: the number of classes, or 0 for a continuous one."""
    if values.is_floating_point():
        return 0
    return int(values.max()) + 1 if values.numel() else 1


class DataInfo:
    """What a model needs to know about its data to be rebuilt without it.

    ``image_shape`` is the shape of one sample: (C, H, W) for images, (F,) for vectors
    (:attr:`is_vectors`). ``columns`` names every condition column with its
    number of classes (0 for a continuous column); the class label's column,
    ``label``, is always there, and ``num_classes`` is its number of classes.
    ``absent`` names, for a class column, the classes the training split has no
    image of (so that a picture of one can say the model never saw it); it
    describes the data, not the model, and is no part of equality.
    ``vocabularies`` gives, for a class column whose values are not its indices, the
    value of each class (sorted strings or integer ids); ``features`` names the
    features of vectors when the data names them; ``labelled`` is False for data
    without class labels; ``transform`` is the fitted transform of vector features
    (:class:`~genreg.data.transforms.Transform`), or None.
    """

    def __init__(
        self,
        image_shape: tuple[int, ...],
        num_classes: int,
        columns: Mapping[str, int] = (),
        absent: Mapping[str, Sequence[int]] = (),
        *,
        vocabularies: Mapping[str, Sequence[ClassValue]] = (),
        features: Sequence[str] | None = None,
        labelled: bool = True,
        transform: Transform | None = None,
    ) -> None:
        self.image_shape = tuple(int(size) for size in image_shape)
        self.columns = {LABEL: int(num_classes), **{k: int(v) for k, v in dict(columns).items() if k != LABEL}}
        self.absent = {str(k): sorted(int(c) for c in v) for k, v in dict(absent).items() if len(v)}
        self.vocabularies = {str(k): list(v) for k, v in dict(vocabularies).items()}
        self.features = None if features is None else [str(name) for name in features]
        self.labelled = bool(labelled)
        self.transform = transform

    @property
    def num_classes(self) -> int:
        """Classes of the label column."""
        return self.columns[LABEL]

    @property
    def is_vectors(self) -> bool:
        """Whether a sample is a vector of features (F,) rather than an image (C, H, W)."""
        return len(self.image_shape) == 1

    @property
    def noun(self) -> str:
        """What one calls the samples in a message: ``vectors`` or ``images``."""
        return "vectors" if self.is_vectors else "images"

    @property
    def singular(self) -> str:
        """One sample, in a unit: ``vector`` or ``image`` (``nats/vector``)."""
        return self.noun.removesuffix("s")

    @property
    def samples(self) -> str:
        """What the samples are, for messages: ``images of 1x28x28`` or ``vectors of 50 features``."""
        size = f"{self.image_shape[0]} features" if self.is_vectors else "x".join(map(str, self.image_shape))
        return f"{self.noun} of {size}"

    def class_names(self, column: str = LABEL) -> list[str]:
        """How each class of a class column is called, in class order: its value in the data (``"CD14+ Monocyte"``,
        ``"3000"``), or its index for a column without a vocabulary (``"0"``, ``"1"``, ...)."""
        vocabulary = self.vocabularies.get(column)
        return [str(value) for value in vocabulary] if vocabulary else [str(k) for k in range(self.columns[column])]

    def class_index(self, column: str, value: object) -> int:
        """The class of ``value``, a value of class column ``column`` as the data holds it (for a column with a
        vocabulary: one of its strings or ids, or the text of an id: ``"3000"``; else the class index itself).

        Raises :class:`~genreg.errors.ConditionError` naming the column and listing its values when the vocabulary
        does not hold ``value``.
        """
        vocabulary = self.vocabularies.get(column)
        if not vocabulary:
            return int(value)
        if value in vocabulary and not isinstance(value, bool):
            return vocabulary.index(value)
        texts = [str(known) for known in vocabulary]
        if str(value) in texts:
            return texts.index(str(value))
        shown = ", ".join(repr(known) for known in vocabulary[:30]) + (" ..." if len(vocabulary) > 30 else "")
        raise ConditionError(
            f"column '{column}' has no class {value!r}: the model knows the {len(vocabulary)} values of its training "
            f"data: {shown}."
        )

    def _compared(self) -> tuple:
        transform = None if self.transform is None else self.transform.to_json()
        return self.image_shape, self.columns, self.vocabularies, self.labelled, transform

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataInfo) and self._compared() == other._compared()

    def __repr__(self) -> str:
        return f"DataInfo(image_shape={self.image_shape}, columns={self.columns})"

    def to_json(self) -> dict:
        """As JSON; ``absent``, ``vocabularies``, ``features``, ``labelled`` and ``transform`` only when they say
        something (files of complete, labelled, untransformed images are unchanged)."""
        value = {"image_shape": list(self.image_shape), "num_classes": self.num_classes, "columns": self.columns}
        optional = {
            "absent": self.absent,
            "vocabularies": self.vocabularies,
            "features": self.features,
            "labelled": None if self.labelled else False,
            "transform": None if self.transform is None else self.transform.to_json(),
        }
        return {**value, **{key: item for key, item in optional.items() if item is not None and item != {}}}

    @classmethod
    def from_json(cls, value: dict) -> DataInfo:
        columns = {str(k): int(v) for k, v in value.get("columns", {}).items()}
        transform = value.get("transform")
        return cls(
            tuple(value["image_shape"]),
            int(value["num_classes"]),
            columns,
            value.get("absent", {}),
            vocabularies=value.get("vocabularies", {}),
            features=value.get("features"),
            labelled=value.get("labelled", True),
            transform=None if transform is None else Transform.from_json(transform),
        )


def absent_classes(values: torch.Tensor, count: int) -> list[int]:
    """The classes of 0..count-1 that no value of the class column ``values`` is."""
    seen = torch.zeros(count, dtype=torch.bool)
    seen[values[values < count].cpu()] = True
    return (~seen).nonzero().flatten().tolist()


@dataclass
class DataSplits:
    """A dataset: a training split, a test split and the number of classes of the label column.

    ``num_classes`` may exceed the classes present (a dataset that declares
    classes it has no images of). ``source`` names where the data came from (a
    file, a bundled sample), so that a later error about the data, e.g. at model
    assembly, can name it too.
    """

    train: Split
    test: Split
    num_classes: int
    binarize: str = "none"
    source: str = ""
    features: list[str] | None = None
    transform: Transform | None = field(default=None, repr=False)

    @property
    def info(self) -> DataInfo:
        """The description a model is built for: image shape and each column's classes (over both splits)."""
        counts = {
            name: max(column_classes(values), column_classes(self.test.columns.get(name, values)))
            for name, values in self.train.columns.items()
        }
        counts[LABEL] = self.num_classes
        absent = {
            name: absent_classes(values, counts[name])
            for name, values in self.train.columns.items()
            if not values.is_floating_point() and len(values)
        }
        return DataInfo(
            tuple(self.train.images.shape[1:]),
            self.num_classes,
            counts,
            absent,
            vocabularies=self.train.vocabularies,
            features=self.features,
            labelled=self.train.labelled,
            transform=self.transform,
        )


def fixed_binarization(split: Split, binarize: str, seed: int = 0) -> Split:
    """With dynamic binarisation, one fixed Bernoulli draw: training's test metrics and `genreg eval` share it."""
    if binarize != "dynamic":
        return split
    generator = torch.Generator(device=split.images.device).manual_seed(seed)
    return split.with_images(torch.bernoulli(split.images, generator=generator))
