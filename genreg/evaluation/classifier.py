"""The reference classifier: does a conditional model draw the class it was asked for?

A cVAE's samples can look like digits and still be the wrong digits. To measure
that, genreg trains a small classifier on the dataset's training split once, caches it
(one file per dataset, keyed by a hash of the dataset spec), and reports its own
test accuracy beside every conditional-accuracy figure, so a reader can tell
how far the classifier itself can be trusted. For images (C, H, W) it is a small CNN
(:class:`ReferenceCNN`); for vectors (F,), a table's rows say, an MLP on standardised
features (:class:`ReferenceMLP`); :func:`reference_network` picks by the sample's shape.

Generated images are not test images: a decoder's are blurry, and a classifier
that has only seen sharp images can misread samples that look right (issue 16:
squares, rings and crosses scored 0.39 while the classifier read 97.8% of the
test images). So the CNN trains on randomly blurred and shifted copies
(:func:`train_classifier`), and :func:`reconstruction_accuracy` measures how well it
reads the model's own reconstructions of test samples, whose class is known: when
that is low, :func:`trust_warning` says the conditional accuracy is not to be trusted.
Vectors have no neighbouring pixels to blur or shift, so the MLP trains on the rows as they are;
the reading of reconstructions guards it all the same.

The classifier is trained on the splits as they are, in the model's units (after a dataset's ``transform``), so
the model's samples and reconstructions are read in those units too (``units="model"``).

The cache lives in ``$GENREG_CACHE/classifiers/`` (default ``~/.cache/genreg``).
Each file is safetensors, written atomically, with the dataset spec, sample
shape (``genreg.image_shape``: (C, H, W) or (F,), which says which network the weights are),
number of classes, training settings and test accuracy in its metadata.
A file that cannot be read, or that describes something else, is retrained and
replaced, never trusted and never a crash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from genreg.data.sparse import RowStore, dense
from genreg.data.splits import LABEL, DataSplits, Split
from genreg.errors import GenregError, UsageError
from genreg.evaluation.metrics import batches
from genreg.evaluation.networks import MLP, ReferenceClassifier, ReferenceMLP, reference_network
from genreg.files.tensors import cpu_tensors, read_tensors, save_tensors
from genreg.limits import check_memory
from genreg.model.generative import GenerativeModel
from genreg.version import __version__

CLASSIFIER_FORMAT = "genreg-classifier/2"
LEARNING_RATE = 1e-3
BATCH_SIZE = 128
#: The augmentation of ``_augment``, part of a cached file's key: a change of recipe retrains.
AUGMENTATION = {"blur_sigma": 0.05, "shift": 0.1, "chunk": 32}
#: Reconstructions read this much less often than test images make the conditional accuracy untrustworthy.
TRUST_GAP = 0.1


def cache_dir() -> Path:
    """genreg's cache folder: ``$GENREG_CACHE`` if set, else ``~/.cache/genreg``."""
    configured = os.environ.get("GENREG_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "genreg"


def _canonical(data_spec: Mapping[str, Any] | Any) -> str:
    """Sorted-key compact JSON of a dataset spec (a dict or a validated pydantic config)."""
    if hasattr(data_spec, "model_dump"):
        data_spec = data_spec.model_dump(mode="json")
    return json.dumps(data_spec, sort_keys=True, separators=(",", ":"))


def dataset_key(data_spec: Mapping[str, Any]) -> str:
    """16 hex chars of sha256 over the canonical spec: distinct datasets never share a classifier.

    Pass the *resolved* spec (every default filled in) so that a spec written
    with and without its defaults names the same file.
    """
    return hashlib.sha256(_canonical(data_spec).encode()).hexdigest()[:16]


def classifier_path(data_spec: Mapping[str, Any]) -> Path:
    """Where the classifier for ``data_spec`` is cached."""
    return cache_dir() / "classifiers" / f"{dataset_key(data_spec)}.safetensors"


def reference_classifier(
    data_spec: Mapping[str, Any],
    data: DataSplits,
    *,
    epochs: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[ReferenceClassifier, float]:
    """The classifier for this dataset (a CNN for images, an MLP for vectors) and its test accuracy, from the
    cache or freshly trained.

    A cached file is used only if it was trained for the same spec, sample shape,
    number of classes, ``epochs`` and ``seed``; anything else (including a
    corrupt or foreign file) is retrained and atomically replaced.
    """
    device = torch.device(device)
    path = classifier_path(data_spec)
    settings = _settings(data_spec, data, epochs, seed)
    cached = _load_cached(path, settings)
    if cached is not None:
        return cached[0].to(device).eval(), cached[1]
    classifier = train_classifier(data, epochs=epochs, seed=seed, device=device)
    test_accuracy = accuracy(classifier, data.test)
    _save(path, classifier, settings, test_accuracy)
    return classifier.eval(), test_accuracy


def train_classifier(
    data: DataSplits, *, epochs: int = 8, seed: int = 0, device: str | torch.device = "cpu", augment: bool = True
) -> ReferenceClassifier:
    """Train the :func:`reference_network` for ``data`` on ``data.train`` (Adam, lr 1e-3, batch 128), seeded.

    Images: a :class:`ReferenceCNN` for ``epochs`` epochs; with ``augment`` (genreg's recipe) every batch is
    blurred and shifted by ``_augment`` first, ``augment=False`` trains on the images as they are (for
    comparison: benchmarks/classifier_blur.py). Vectors: a :class:`ReferenceMLP` standardised by the training
    split, for ``epochs`` epochs but at least ``MLP["min_steps"]`` steps, never augmented.
    The whole split sits on the device and batches are sliced out of it. The
    caller's RNG state is left untouched, so asking for the classifier does not
    change what a seeded experiment draws afterwards.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    device = torch.device(device)
    with torch.random.fork_rng(devices=_cuda_indices(device)):
        torch.manual_seed(seed)
        classifier = reference_network(data.info.image_shape, data.num_classes).to(device)
        images, labels = dense(data.train.images).to(device), data.train.labels.to(device)
        if isinstance(classifier, ReferenceMLP):
            classifier.standardise_by(images)
            epochs, augment = max(epochs, _epochs_for_steps(len(labels), MLP["min_steps"])), False
        _fit(classifier, images, labels, epochs, augment)
    return classifier.eval()


def _epochs_for_steps(n: int, steps: int) -> int:
    """Epochs of ``n`` samples in batches of :data:`BATCH_SIZE` that make at least ``steps`` optimiser steps."""
    return math.ceil(steps / max(1, math.ceil(n / BATCH_SIZE)))


def _fit(classifier: nn.Module, x: torch.Tensor, labels: torch.Tensor, epochs: int, augment: bool) -> None:
    """Cross-entropy with Adam (lr :data:`LEARNING_RATE`), shuffled batches of :data:`BATCH_SIZE` from the global
    RNG, images augmented by ``_augment`` if ``augment``; x (N, ...) and labels (N,) on the classifier's device."""
    optimizer = torch.optim.Adam(classifier.parameters(), lr=LEARNING_RATE)
    classifier.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), device=labels.device)
        for start in range(0, len(labels), BATCH_SIZE):
            index = order[start : start + BATCH_SIZE]
            batch = _augment(x[index]) if augment else x[index]
            loss = F.cross_entropy(classifier(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def _augment(images: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) blurred and shifted as a decoder's might be, for training: same shape and device.

    In chunks of ``AUGMENTATION["chunk"]`` images that share one draw: a Gaussian blur of sigma
    ~ U(0, 0.05 * the shorter side) pixels (1.4 at 28x28; none below 0.1) and a shift by a whole number
    of pixels up to 10% of each side, the vacated border filled with 0. Any size and channel count
    (torchvision.transforms.v2.functional); draws come from torch's global RNG.
    """
    height, width = images.shape[-2:]
    most = (round(AUGMENTATION["shift"] * width), round(AUGMENTATION["shift"] * height))
    chunks = []
    for chunk in images.split(AUGMENTATION["chunk"]):
        sigma = AUGMENTATION["blur_sigma"] * min(height, width) * float(torch.rand(()))
        if sigma >= 0.1:
            size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(height, width) - 1)  # reflect padding fits the image
            chunk = TF.gaussian_blur(chunk, [size, size], [sigma, sigma])
        shift = [int(torch.randint(-m, m + 1, ())) for m in most]
        chunks.append(TF.affine(chunk, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0]))
    return torch.cat(chunks)


def _cuda_indices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG ``fork_rng`` must save (none on CPU)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@torch.no_grad()
def classify(classifier: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted class (N,) of each sample (N, C, H, W) or (N, F), on their device; batched so big sets fit."""
    param = next(classifier.parameters())
    was_training = classifier.training
    classifier.eval()
    try:
        predictions = [
            classifier(images[start : start + batch_size].to(param.device, param.dtype)).argmax(1)
            for start in range(0, images.shape[0], batch_size)
        ]
    finally:
        classifier.train(was_training)
    if not predictions:
        return torch.empty(0, dtype=torch.long, device=images.device)
    return torch.cat(predictions).to(images.device)


def accuracy(classifier: nn.Module, split: Split) -> float:
    """Fraction of ``split`` classified correctly (NaN for an empty split)."""
    if len(split) == 0:
        return math.nan
    predicted = classify(classifier, dense(split.images))
    return (predicted == split.labels.to(predicted.device)).float().mean().item()


def conditional_accuracy(
    model: GenerativeModel, classifier: ReferenceClassifier, n_per_class: int = 100, seed: int = 0
) -> dict[str, Any]:
    """How often ``classifier`` reads a sample asked for class k as class k, per class and overall.

    ``per_class`` holds each class's figure in class order, ``classes`` each class's name as the data gives it
    (``CD14+ Monocyte``; ``"3"`` for classes that are their indices: see
    :meth:`~genreg.data.splits.DataInfo.class_names`). Sampling is seeded (``torch.manual_seed(seed)``) so the
    figure is reproducible; report it beside the classifier's own test accuracy.
    """
    _check_comparable(model, classifier, n_per_class)
    torch.manual_seed(seed)
    with model.evaluating():
        per_class = [_class_accuracy(model, classifier, k, n_per_class) for k in range(model.data_info.num_classes)]
    return {
        "overall": sum(per_class) / len(per_class),
        "per_class": per_class,
        "classes": model.data_info.class_names(LABEL),
        "n_per_class": n_per_class,
    }


def _class_accuracy(model: GenerativeModel, classifier: nn.Module, k: int, n: int) -> float:
    """Samples asked for class k (any other condition column at class 0 or its training mean), read as k? In the
    model's units, which the classifier was trained in."""
    images = model.sample(condition=model.conditioner.constant(n, {LABEL: k}), units="model")
    return (classify(classifier, images) == k).float().mean().item()


def reconstruction_accuracy(model: GenerativeModel, classifier: ReferenceClassifier, split: Split) -> float:
    """Fraction of the model's reconstructions of ``split`` that ``classifier`` reads as their own label.

    A reconstruction decodes the sample's posterior mean (a cVAE's with the sample's own condition),
    so it looks like the model's samples and its class is known: this calibrates the conditional
    accuracy. NaN for an empty split.
    """
    _check_shapes(model, classifier)
    if len(split) == 0:
        return math.nan
    with model.evaluating():
        predicted = [
            classify(classifier, model.reconstruct(x, condition, units="model"))
            for x, condition in batches(model, split, 500)
        ]
    return (torch.cat(predicted).cpu() == split.labels.cpu()).float().mean().item()


def trust_warning(
    test_accuracy: float, reconstruction: float, conditional: float, samples: str = "images"
) -> str | None:
    """Why a conditional accuracy is not to be trusted, or None: reconstructions read >= TRUST_GAP less often.

    ``samples`` names what the data holds (``images``, ``vectors``) in the message."""
    if not reconstruction < test_accuracy - TRUST_GAP:
        return None
    return (
        f"the reference classifier reads only {reconstruction:.1%} of this model's reconstructions of test {samples} "
        f"as their class, against {test_accuracy:.1%} of the test {samples} themselves: it misreads the model's "
        f"{samples}, so the conditional accuracy ({conditional:.3f}) is not to be trusted."
    )


def _check_comparable(model: GenerativeModel, classifier: nn.Module, n_per_class: int) -> None:
    """Refuse questions that have no answer rather than report a meaningless number."""
    if not model.conditional or model.conditioner.num_classes is None:
        raise ValueError(
            "conditional accuracy needs a model conditioned on the class label (e.g. a cVAE): this model "
            "cannot be asked for a class."
        )
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}.")
    shape = _check_shapes(model, classifier)
    pixels = math.prod(shape)
    check_memory(  # one class's samples are drawn at once: the decoder's outputs and their copies
        4 * n_per_class * pixels * 4,
        f"{n_per_class:,} samples per class of {described(shape)}",
        "ask for fewer samples per class (--n-per-class).",
        UsageError,
    )


def _check_shapes(model: GenerativeModel, classifier: nn.Module) -> tuple[int, ...]:
    """The model's sample shape, once it is known to be the classifier's, with the same number of classes."""
    shape, classes = tuple(model.data_info.image_shape), model.data_info.num_classes
    want_shape = getattr(classifier, "image_shape", shape)
    want_classes = getattr(classifier, "num_classes", classes)
    if tuple(want_shape) != shape or want_classes != classes:
        raise ValueError(
            f"the classifier is for {want_classes} classes of {described(tuple(want_shape), True)}, but the model "
            f"generates {classes} classes of {described(shape, True)}; use the classifier of the model's dataset."
        )
    return shape


def described(shape: tuple[int, ...], as_tuple: bool = False) -> str:
    """Samples of ``shape`` in words: ``1x28x28 images`` (or ``(1, 28, 28) images``) or ``vectors of 50 features``."""
    if len(shape) == 1:
        return f"vectors of {shape[0]} features"
    return f"{tuple(shape) if as_tuple else 'x'.join(map(str, shape))} images"


def _settings(data_spec: Mapping[str, Any], data: DataSplits, epochs: int, seed: int) -> dict[str, str]:
    """The metadata a cached file must carry to stand for this request; ``genreg.image_shape`` is the sample shape,
    (C, H, W) for a CNN or (F,) for an MLP, and the recipe names what trained it (a CNN's is as it always was)."""
    return {
        "genreg.format": CLASSIFIER_FORMAT,
        "genreg.data": _canonical(data_spec),
        "genreg.data_digest": data_digest(data),  # the same spec may name a file whose contents changed
        "genreg.image_shape": json.dumps(list(data.info.image_shape)),
        "genreg.num_classes": str(data.num_classes),
        "genreg.epochs": str(epochs),
        "genreg.seed": str(seed),
        "genreg.recipe": json.dumps(_recipe(data.info.is_vectors)),
    }


def _recipe(vectors: bool) -> dict[str, Any]:
    """How the classifier is trained: the CNN's optimiser and augmentation, or the MLP's optimiser and layers."""
    if vectors:
        return {"network": "mlp", "lr": LEARNING_RATE, "batch_size": BATCH_SIZE, **MLP}
    return {"lr": LEARNING_RATE, "batch_size": BATCH_SIZE, "augmentation": AUGMENTATION}


def data_digest(data: DataSplits) -> str:
    """16 hex chars of BLAKE2b over both splits' samples and labels (about 0.1 s per 100 MB)."""
    digest = hashlib.blake2b(digest_size=8)
    for tensor in (*_tensors(data.train.images), data.train.labels, *_tensors(data.test.images), data.test.labels):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _tensors(samples: torch.Tensor | RowStore) -> tuple[torch.Tensor, ...]:
    """The tensors that hold ``samples``: itself, or a row store's (see ``RowStore.digest_tensors``)."""
    return samples.digest_tensors() if isinstance(samples, RowStore) else (samples,)


def _load_cached(path: Path, settings: dict[str, str]) -> tuple[ReferenceClassifier, float] | None:
    """The cached classifier and accuracy, or None if the file is missing, unreadable or for other settings."""
    if not path.is_file():
        return None
    try:
        metadata, state = read_tensors(path)  # checksum verified
        if any(metadata.get(key) != value for key, value in settings.items()):
            return None
        shape = tuple(json.loads(settings["genreg.image_shape"]))  # (C, H, W): a CNN; (F,): an MLP
        classifier = reference_network(shape, int(settings["genreg.num_classes"]))
        classifier.load_state_dict(state)
        return classifier, float(metadata["genreg.test_accuracy"])
    except (GenregError, RuntimeError, KeyError, ValueError):  # a corrupt or foreign file is a cache miss
        return None


def _save(path: Path, classifier: ReferenceClassifier, settings: dict[str, str], test_accuracy: float) -> None:
    """Write the classifier atomically, checksummed; an unwritable cache only costs a retrain next time."""
    metadata = {**settings, "genreg.test_accuracy": repr(test_accuracy), "genreg.version": __version__}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, cpu_tensors(classifier.state_dict()), metadata)
    except OSError as exc:
        warnings.warn(f"could not cache the reference classifier at {path}: {exc}", stacklevel=3)
