"""Measuring a model: every metric genreg reports for it on a split of its dataset, and ``eval.json``.

The numbers come from :mod:`genreg.evaluation.metrics` (likelihood bounds, the
latent space and, for vectors, the reconstructions' R^2) and, for a model conditioned on the class label, from
:mod:`genreg.evaluation.classifier` (conditional accuracy).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from genreg.data.loading import recorded_data
from genreg.data.splits import DataSplits, Split, fixed_binarization
from genreg.errors import GenregError, OutputError
from genreg.evaluation.classifier import (
    conditional_accuracy,
    reconstruction_accuracy,
    reference_classifier,
    trust_warning,
)
from genreg.evaluation.metrics import (
    NO_LABELS,
    SKIPPED,
    Posterior,
    active_mask,
    is_probabilistic,
    latent_metrics,
    likelihood_bounds,
    posterior,
    reconstruction_r2,
)
from genreg.evaluation.mixing import neighbourhood_scores
from genreg.evaluation.profiles import profile_agreement
from genreg.files.atomic import check_writable, write_json
from genreg.files.model_files import load_model, model_file, read_metadata, read_spec
from genreg.files.run_folder import RunFolder
from genreg.files.tensors import CHECKSUM
from genreg.model.generative import GenerativeModel
from genreg.model.losses import metric_units
from genreg.spec.overrides import MAX_JSON_CHARS, parse_json
from genreg.spec.train import TrainConfig
from genreg.training.distributed import resolve_device
from genreg.training.loop import average_losses

#: What an ``eval.json`` measured; one of another format is measured again, never shown beside new ones.
#: 2 (issue 16): k-NN on draws z ~ q(z|x) of the active units, the classifier's reading of reconstructions.
EVAL_FORMAT = "genreg-eval/2"


def evaluate_model(
    model: GenerativeModel,
    data: DataSplits,
    split_name: str = "test",
    *,
    data_spec: dict | None = None,
    iw_samples: int = 1000,
    n_per_class: int = 100,
    seed: int = 0,
    precision: str = "auto",
    precision_label: str = "precision",
) -> dict:
    """Every metric genreg reports for one model on one split of its dataset, as a JSON-ready dict.

    ``format`` (:data:`EVAL_FORMAT`), ``images`` (how many samples the split holds), ``losses`` (each term, the
    total and the objective ``neg_elbo`` or ``nll``, each in its unit: ``units``), for a
    VAE/cVAE ``neg_elbo`` and ``nll_iwae`` (nats per sample, ``iw_samples`` draws: Burda et al. 2016),
    ``active_units``, ``gaussian_kl``, ``mmd``, ``knn_accuracy``, ``knn_on`` (what k-NN read) and
    ``chance`` (see :mod:`genreg.evaluation.metrics`), and for a model conditioned on the label with a
    ``data_spec`` (the resolved dataset spec, which keys the cached reference classifier)
    ``conditional_accuracy`` overall and per class, beside the classifier's own test accuracy and its
    accuracy on the model's reconstructions of the split (``classifier_reconstruction_accuracy``); when
    that is low, ``conditional_accuracy_trusted`` is false and a ``UserWarning`` says why; for vectors also
    ``profile_r``, ``profile_r_per_class``, ``profile_classes`` and ``profile_matched``: how each class's samples
    match its mean profile over both splits (see :mod:`genreg.evaluation.profiles`).
    For vectors (F,) also ``features`` (F), the R^2 of the reconstructions (posterior means decoded):
    ``reconstruction_r2`` (the mean over features), ``reconstruction_r2_per_feature`` and ``r2_features`` (see
    :func:`~genreg.evaluation.metrics.reconstruction_r2`), and every unit per vector (``nats/vector``, where a
    term declares ``nats/image``: a term's value is per sample). Not for images, whatever their likelihood: they
    are measured exactly as before, and a pixel's R^2 is undefined where the pixel never varies (an MNIST
    border). ``columns`` maps each class column with at least 2 classes in the split (``label`` of labelled data,
    a batch, ...) to how its classes sit among each sample's 15 nearest neighbours in the latent space:
    ``knn_accuracy`` beside ``chance``, ``mixing_entropy`` beside ``mixing_entropy_expected`` (its value if the
    classes were perfectly mixed), ``k``, ``on`` (the codes read: posterior means of the active units) and ``role``
    (``conditioned`` when the model's conditioner reads the column, else ``not conditioned``); see
    :func:`column_neighbourhoods`. A batch should mix (entropy near its expected value, k-NN near chance), a cell
    type stay apart (k-NN high). A dynamically binarised split is binarised once, with ``seed``, as in training's
    test metrics.
    ``precision`` (``auto``, ``fp32``, ``bf16``) is what the decoder's products run in for the likelihood bounds
    (K draws per image, the slow part): ``auto`` is bf16 where training would use it and where it moves neither
    bound by more than 0.1 nat, else fp32 (see :func:`~genreg.evaluation.metrics.likelihood_bounds`);
    ``precision`` and ``precision_note`` in the result say which and why (naming the setting as
    ``precision_label``). The losses, one pass, are fp32.

    Units: every figure is on the model's scale. For data with a ``transform`` (vectors fitted with ``log1p``,
    ``standardize``, ...; see :mod:`genreg.data.transforms`) the losses, bounds and R^2 are of the transformed
    values the likelihood models, not of the data's own units: ``transform`` lists the steps and ``scale`` says so
    in words (neither is there without a transform). ``classes`` names each class of the label column as the data
    does (``CD14+ Monocyte``, or ``"3"``), in the order of ``conditional_accuracy_per_class``; ``feature_names``
    the features of vectors whose data names them (a table's columns), in the order of
    ``reconstruction_r2_per_feature``.

    A metric with no meaning here is None, and ``skipped`` maps it to why (see
    :data:`~genreg.evaluation.metrics.SKIPPED`): for data without labels (``DataInfo.labelled`` false)
    ``knn_accuracy`` (with ``knn_on`` and ``chance``) and ``conditional_accuracy``, ``"the data has no labels"``;
    ``conditional_accuracy`` of a conditional model that does not read the label; the latent-space figures
    and the R^2 of a split of fewer than 2 samples; and ``columns`` ({}) of a latent without an active unit.
    """
    split = fixed_binarization(getattr(data, split_name), data.binarize, seed)
    model.eval()
    torch.manual_seed(seed)
    result: dict = {"format": EVAL_FORMAT, "model": (model.spec or {}).get("type"), "split": split_name}
    result["images"] = len(split)
    # first, right after the seed (their draws do not depend on the bounds' K or precision); one pass, fp32
    result["losses"] = average_losses(model, split, TrainConfig(device=str(model.device), precision="fp32"))
    info = model.data_info
    result["units"] = metric_units(model.losses, info.singular)
    if info.is_vectors:
        result["features"] = info.image_shape[0]
        if info.features is not None:
            result["feature_names"] = info.features
    if info.transform is not None:
        steps = list(info.transform.steps)
        result["transform"] = steps
        result["scale"] = (
            f"the model's, after the dataset's transform ({', '.join(steps)}): the losses, bounds and R² are of "
            "the transformed values"
        )
    if is_probabilistic(model):
        bounds = likelihood_bounds(model, split, iw_samples, seed=seed, precision=precision, label=precision_label)
        result.update(bounds)
    if info.is_vectors:
        result.update(reconstruction_r2(model, split))
    post = posterior(model, split)
    result.update(latent_metrics(post, seed, labelled=info.labelled, noun=info.noun))
    skipped = result.pop(SKIPPED, {})
    columns = column_neighbourhoods(model, split, post, seed)
    if columns is None:
        skipped["columns"] = NO_ACTIVE_UNITS
    result["columns"] = columns or {}
    if info.is_vectors and len(split) < 2:  # no feature varies over one row
        skipped["reconstruction_r2"] = skipped["gaussian_kl"]
    if model.conditional and data_spec is not None:
        if model.conditioner.num_classes is None:
            result["conditional_accuracy"] = None
            skipped["conditional_accuracy"] = "the model is not conditioned on the class label"
        elif not info.labelled:
            result["conditional_accuracy"] = None
            skipped["conditional_accuracy"] = NO_LABELS
        else:
            result.update(_conditional(model, data, split, data_spec, n_per_class, seed))
            if info.is_vectors:
                pooled = [data.train, data.test]  # a class's profile over all its samples (few in one split)
                result.update(profile_agreement(model, pooled, n_per_class, seed))
    if skipped:
        result[SKIPPED] = skipped
    return result


#: neighbours of each cell in :func:`column_neighbourhoods` (fewer in a split of at most this many samples)
NEIGHBOURS = 15
#: why a model's class columns are not scored: its latent carries nothing
NO_ACTIVE_UNITS = "no latent unit is active: the codes carry no column"


def column_neighbourhoods(model: GenerativeModel, split: Split, post: Posterior, seed: int = 0) -> dict | None:
    """For each class column of ``split`` with at least 2 classes present (the label of labelled data among
    them), whether its classes mix or stay apart in the latent space: the scores of
    :func:`~genreg.evaluation.mixing.neighbourhood_scores` of :data:`NEIGHBOURS` neighbours, with ``k`` and ``on``
    (the codes read) and ``role``: ``conditioned`` for a column the model's conditioner reads, else
    ``not conditioned``. {} when there is no such column; None when no latent unit is active.

    The codes are the posterior means (scVI's latent representation of a cell) of the active units only:
    a cVAE's encoder sees its conditions, and their offsets on units the decoder ignores (posterior ~ prior)
    would show a conditioned batch as unmixed. An AE's codes, every dimension.
    """
    columns = {
        name: values.cpu()
        for name, values in split.columns.items()
        if not values.is_floating_point() and len(values.unique()) >= 2
    }
    if not columns:
        return {}
    active = torch.ones(post.mu.shape[1], dtype=torch.bool) if post.log_var is None else active_mask(post.mu)
    if not active.any():
        return None
    on = f"codes, {len(active)} dims" if post.log_var is None else f"posterior means, {int(active.sum())} active units"
    read = set(model.conditioner.columns) if model.conditional else set()
    k = min(NEIGHBOURS, len(split) - 1)
    return {
        name: neighbourhood_scores(post.mu[:, active], values, k=k, seed=seed)
        | {"k": k, "on": on, "role": "conditioned" if name in read else "not conditioned"}
        for name, values in columns.items()
    }


def _conditional(
    model: GenerativeModel, data: DataSplits, split: Split, data_spec: dict, n_per_class: int, seed: int
) -> dict:
    """Conditional accuracy beside the reference classifier's accuracy on test images and on reconstructions."""
    classifier, accuracy = reference_classifier(data_spec, data)
    conditional = conditional_accuracy(model, classifier, n_per_class, seed)
    reconstruction = reconstruction_accuracy(model, classifier, split)
    warning = trust_warning(accuracy, reconstruction, conditional["overall"], model.data_info.noun)
    if warning:
        warnings.warn(warning, stacklevel=3)
    return {
        "conditional_accuracy": conditional["overall"],
        "conditional_accuracy_per_class": conditional["per_class"],
        "classes": conditional["classes"],
        "classifier_test_accuracy": accuracy,
        "classifier_reconstruction_accuracy": reconstruction,
        "conditional_accuracy_trusted": warning is None,
    }


def evaluate_file(
    path: str | Path,
    split_name: str = "test",
    *,
    iw_samples: int = 1000,
    n_per_class: int = 100,
    seed: int = 0,
    keep_if_possible: bool = False,
    precision: str = "auto",
) -> tuple[dict, Path | None]:
    """Evaluate a model file or run folder on the dataset it records; write and return the JSON.

    The result goes to ``eval.json`` in a run folder (``eval-<split>.json`` for other splits;
    ``<stem>.eval.json`` beside a model file with another name), with the model file's
    checksum under ``model_checksum``: it belongs to that model and no other (see :func:`recorded_evaluation`).
    Raises :class:`~genreg.errors.OutputError` before any work when that file cannot be written; with
    ``keep_if_possible`` (``genreg compare``, for which the file is only a cache) the model is measured anyway,
    a ``UserWarning`` says the file is not kept, and the path returned is None.
    """
    file = model_file(path)
    out: Path | None = RunFolder.evaluation_file(file, split_name)
    try:
        check_writable(out, "the evaluation file")  # before the work
    except OutputError as exc:
        if not keep_if_possible:
            raise
        out = _not_kept(exc)
    model = load_model(file, device=resolve_device("auto"))  # CUDA when present; a bad file is refused before its data
    data_spec, data = recorded_data(file)
    label = "precision"
    if precision == "auto" and trained_precision(file) == "fp32":  # where training would: this run did not
        precision, label = "fp32", "the run's train.precision"
    result = evaluate_model(
        model,
        data,
        split_name,
        data_spec=data_spec,
        iw_samples=iw_samples,
        n_per_class=n_per_class,
        seed=seed,
        precision=precision,
        precision_label=label,
    )
    result["model_checksum"] = read_metadata(file).get(CHECKSUM)
    if out is not None:
        try:
            write_json(out, result)
        except OutputError as exc:  # e.g. the disk filled up meanwhile
            if not keep_if_possible:
                raise
            out = _not_kept(exc)
    return result, out


def trained_precision(file: Path) -> str | None:
    """The ``train.precision`` the model file's run was trained with, as its metadata records it (None if none)."""
    try:
        spec = read_spec(file)
    except GenregError:  # a file composed from unregistered parts records no spec
        return None
    train = spec.get("train")
    value = train.get("precision") if isinstance(train, dict) else None
    return value if value in ("auto", "fp32", "bf16") else None


def _not_kept(exc: OutputError) -> None:
    """Say in one warning line that an evaluation is shown but its file not written (why: ``exc``); None, the
    file written."""
    reason = str(exc).split("; choose another place")[0].rstrip(".;")
    warnings.warn(f"{reason}; the evaluation is shown but not kept, so it is measured again next time.", stacklevel=3)


def recorded_evaluation(file: Path, split_name: str = "test") -> dict | None:
    """The evaluation ``evaluate_file`` wrote for the model file ``file``, if it was of this very model.

    None when there is none, or when it records another model's checksum (the run was
    overwritten or retrained since), or none at all (written before checksums were recorded),
    or when it measured what an older genreg measured (another ``format``, :data:`EVAL_FORMAT`),
    or when it cannot be read within :func:`~genreg.spec.overrides.parse_json`'s bounds (not a regular file,
    damaged, nested too deeply): such a file is measured again, never a crash.
    """
    saved = RunFolder.evaluation_file(file, split_name)
    if not saved.is_file():  # follows links; a FIFO or a folder is not read
        return None
    try:
        with saved.open(encoding="utf-8") as handle:
            result = parse_json(handle.read(MAX_JSON_CHARS + 1), str(saved), GenregError)
    except (OSError, ValueError, GenregError):  # unreadable, not JSON, or beyond parse_json's bounds
        return None
    checksum = read_metadata(file).get(CHECKSUM)
    if not isinstance(result, dict) or result.get("format") != EVAL_FORMAT:
        return None
    return result if checksum and result.get("model_checksum") == checksum else None
