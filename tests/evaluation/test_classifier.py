"""Tests genreg/evaluation/classifier.py: the reference classifier is accurate, cached per dataset, robust to
bad cache files, and its conditional accuracy tells a model drawing the asked class from one that does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import genreg
from genreg.evaluation import classifier as clf
from genreg.evaluation import networks
from genreg.files.tensors import read_tensors, save_tensors
from genreg_builtin.conditioners import OneHot, OneHotConfig
from genreg_builtin.latents import GaussianConfig, GaussianLatent
from genreg_builtin.losses import BCE, BCEConfig, Gaussian
from genreg_builtin.losses import GaussianConfig as GaussianTermConfig
from tests.helpers import MNIST_SPEC, Trained, single_thread

SHAPE = (1, 28, 28)
# the spec of a dataset genreg does not load itself: the first 1,000 / 400 digits of mnist-sample
SUBSET_SPEC = {"type": "mnist-sample", "binarize": "none", "subset": "train[:1000] test[:400]"}


@pytest.fixture
def small(mnist: genreg.DataSplits) -> genreg.DataSplits:
    """A quarter of the data: enough to exercise caching in a second of training."""
    train = genreg.Split(mnist.train.images[:1000], mnist.train.labels[:1000])
    test = genreg.Split(mnist.test.images[:400], mnist.test.labels[:400])
    return genreg.DataSplits(train, test, mnist.num_classes)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENREG_CACHE", str(tmp_path))
    return tmp_path


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the classifier was retrained instead of loaded from the cache")

    monkeypatch.setattr(clf, "train_classifier", fail)


def count_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = clf.train_classifier

    def counted(*args: object, **kwargs: object) -> networks.ReferenceCNN:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(clf, "train_classifier", counted)
    return calls


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the classifier itself -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (1, 9, 13), (2, 64, 48)])
def test_cnn_gives_logits_for_any_image_size(shape: tuple[int, int, int]) -> None:
    model = networks.ReferenceCNN(shape, num_classes=7).eval()
    assert model(torch.rand(5, *shape)).shape == (5, 7)


def test_cnn_rejects_images_too_small() -> None:
    with pytest.raises(ValueError, match="at least 8x8"):
        networks.ReferenceCNN((1, 7, 28), num_classes=10)


@pytest.mark.slow
def test_trained_classifier_is_accurate_and_reports_its_true_accuracy(trained: Trained) -> None:
    assert trained.accuracy >= 0.95
    assert not trained.model.training
    predicted = clf.classify(trained.model, trained.data.test.images, batch_size=300)
    assert predicted.dtype == torch.long and predicted.shape == trained.data.test.labels.shape
    assert trained.accuracy == (predicted == trained.data.test.labels).float().mean().item()


@pytest.mark.slow
def test_classify_restores_training_mode_and_handles_no_images(trained: Trained) -> None:
    trained.model.train()
    try:
        assert clf.classify(trained.model, torch.empty(0, *SHAPE)).shape == (0,)
        assert trained.model.training
    finally:
        trained.model.eval()


# --- the cache -------------------------------------------------------------------------------


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENREG_CACHE", str(tmp_path))
    assert clf.cache_dir() == tmp_path
    monkeypatch.delenv("GENREG_CACHE")
    assert clf.cache_dir() == Path.home() / ".cache" / "genreg"


def test_dataset_key_is_short_stable_and_distinct() -> None:
    key = clf.dataset_key(MNIST_SPEC)
    assert len(key) == 16 and int(key, 16) >= 0
    assert clf.dataset_key({"binarize": "none", "type": "mnist-sample"}) == key
    others = [
        {"type": "mnist-sample", "binarize": "threshold"},
        {"type": "mnist", "binarize": "none"},
        {"type": "npz", "path": "a.npz", "binarize": "none"},
        {"type": "npz", "path": "b.npz", "binarize": "none"},
    ]
    keys = {clf.dataset_key(spec) for spec in others}
    assert key not in keys and len(keys) == len(others)


@pytest.mark.slow
def test_second_call_loads_the_cached_classifier(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREG_CACHE", str(trained.cache))
    path = trained.cache / "classifiers" / f"{clf.dataset_key(MNIST_SPEC)}.safetensors"
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    forbid_training(monkeypatch)
    model, accuracy = clf.reference_classifier(MNIST_SPEC, trained.data)
    assert accuracy == trained.accuracy
    assert same_weights(model, trained.model)
    assert not model.training
    assert path.stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_training_is_seeded_and_leaves_global_rng_alone(small: genreg.DataSplits) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = clf.train_classifier(small, epochs=1, seed=5)
    assert torch.equal(torch.rand(3), expected)
    assert same_weights(first, clf.train_classifier(small, epochs=1, seed=5))
    assert not same_weights(first, clf.train_classifier(small, epochs=1, seed=6))


def write_garbage(path: Path, model: networks.ReferenceCNN) -> None:
    path.write_bytes(b"this is not a safetensors file")


def write_truncated(path: Path, model: networks.ReferenceCNN) -> None:
    path.write_bytes(path.read_bytes()[:500])


def write_foreign(path: Path, model: networks.ReferenceCNN) -> None:
    save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})


def write_wrong_weights(path: Path, model: networks.ReferenceCNN) -> None:
    """The right metadata over weights of a different network: must not be trusted."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    save_file({"head.4.weight": torch.zeros(2, 2)}, str(path), metadata=metadata)


@pytest.mark.slow
@pytest.mark.parametrize("damage", [write_garbage, write_truncated, write_foreign, write_wrong_weights])
def test_bad_cache_file_is_retrained_and_replaced(
    damage, cache: Path, small: genreg.DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_training(monkeypatch)
    original, accuracy = clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    path = clf.classifier_path(SUBSET_SPEC)
    damage(path, original)

    model, again = clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    assert len(calls) == 2
    assert again == accuracy and same_weights(model, original)  # seeded: the same classifier
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left

    forbid_training(monkeypatch)
    reloaded, third = clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    assert third == accuracy and same_weights(reloaded, original)


@pytest.mark.slow
def test_cached_file_for_other_settings_is_not_reused(
    cache: Path, small: genreg.DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_training(monkeypatch)
    clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    clf.reference_classifier(SUBSET_SPEC, small, epochs=1, seed=1)
    assert len(calls) == 2
    other = genreg.DataSplits(
        genreg.Split(small.train.images[:, :, :20, :20].contiguous(), small.train.labels),
        genreg.Split(small.test.images[:, :, :20, :20].contiguous(), small.test.labels),
        small.num_classes,
    )
    model, _ = clf.reference_classifier(SUBSET_SPEC, other, epochs=1)
    assert len(calls) == 3 and model.image_shape == (1, 20, 20)


@pytest.mark.slow
def test_the_same_spec_over_changed_data_is_retrained(
    cache: Path, small: genreg.DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An npz file rewritten under the same path must not reuse the classifier of its old contents."""
    calls = count_training(monkeypatch)
    clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    flipped = genreg.DataSplits(
        genreg.Split(small.train.images.flip(-1), small.train.labels), small.test, small.num_classes
    )
    clf.reference_classifier(SUBSET_SPEC, flipped, epochs=1)
    clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    assert len(calls) == 3  # one file per spec: the last call finds the flipped data's classifier there


@pytest.mark.slow
def test_a_file_of_the_old_recipe_is_not_reused(
    cache: Path, small: genreg.DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16, case 3: classifiers cached before training blurred and shifted images was the recipe."""
    calls = count_training(monkeypatch)
    clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    path = clf.classifier_path(SUBSET_SPEC)
    metadata, tensors = read_tensors(path)
    old = {k: v for k, v in metadata.items() if k != "genreg.recipe"}
    save_tensors(path, tensors, {**old, "genreg.format": "genreg-classifier/1"})  # as genreg wrote it before
    clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    assert len(calls) == 2
    assert read_tensors(path)[0]["genreg.format"] == clf.CLASSIFIER_FORMAT


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (2, 9, 30)])
def test_augmentation_blurs_and_shifts_any_image_shape(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    images = torch.rand(70, *shape)
    augmented = clf._augment(images)
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    assert augmented.min() >= 0 and augmented.max() <= 1
    changed = (augmented - images).flatten(1).abs().amax(1) > 1e-6
    assert changed.float().mean() > 0.5  # most chunks are blurred or shifted; some draws leave a chunk as it is


def test_unwritable_cache_warns_and_still_returns(
    tmp_path: Path, small: genreg.DataSplits, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GENREG_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not cache"):
        model, accuracy = clf.reference_classifier(SUBSET_SPEC, small, epochs=1)
    assert 0.0 <= accuracy <= 1.0 and not model.training


# --- conditional accuracy --------------------------------------------------------------------


class LookupDecoder(torch.nn.Module):
    """A "decoder" that draws real test images of the class in the condition (or always ``fixed``).

    Its logits are those of the stored images, so ``model.sample`` returns them
    (up to the clamp): the ideal conditional generator, or a maximally wrong one.
    """

    def __init__(self, split: genreg.Split, num_classes: int, fixed: int | None = None) -> None:
        super().__init__()
        per_class = min(int((split.labels == k).sum()) for k in range(num_classes))
        bank = torch.stack([split.images[split.labels == k][:per_class] for k in range(num_classes)])
        self.register_buffer("logits", torch.logit(bank.clamp(1e-4, 1 - 1e-4)))
        self.fixed = fixed

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        n, per_class = z.shape[0], self.logits.shape[1]
        if condition is None:
            classes = torch.zeros(n, dtype=torch.long)
        else:
            classes = condition.argmax(1) if self.fixed is None else torch.full((n,), self.fixed)
        # the i-th image asked for class k is the k-th class's i-th image: each is used once
        rank = torch.zeros(n, dtype=torch.long)
        for k in classes.unique():
            mask = classes == k
            rank[mask] = torch.arange(int(mask.sum())) % per_class
        return self.logits[classes, rank]


class FlattenEncoder(torch.nn.Module):
    out_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(784, 8)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return self.net(x.flatten(1))


def stub_model(decoder: LookupDecoder, conditional: bool = True) -> genreg.GenerativeModel:
    return genreg.GenerativeModel(
        conditioner=OneHot(OneHotConfig(), num_classes=10) if conditional else None,
        encoder=FlattenEncoder(),
        latent=GaussianLatent(GaussianConfig(), in_features=8, dim=2),
        decoder=decoder,
        losses=[BCE(BCEConfig())],
        data=genreg.DataInfo(SHAPE, 10),
    )


@pytest.mark.slow
def test_model_that_draws_the_asked_class_scores_the_classifiers_accuracy(trained: Trained) -> None:
    test = trained.data.test
    model = stub_model(LookupDecoder(test, 10))
    result = clf.conditional_accuracy(model, trained.model, n_per_class=100)
    assert set(result) == {"overall", "per_class", "classes", "n_per_class"}
    assert result["classes"] == [str(k) for k in range(10)]  # digits: classes that are their indices
    assert result["n_per_class"] == 100 and len(result["per_class"]) == 10
    assert result["overall"] >= 0.95
    assert result["overall"] == pytest.approx(trained.accuracy, abs=0.01)  # the test set, class by class
    assert min(result["per_class"]) >= 0.85
    assert result["overall"] == pytest.approx(sum(result["per_class"]) / 10)


@pytest.mark.slow
def test_model_that_draws_a_fixed_class_scores_zero_elsewhere(trained: Trained) -> None:
    model = stub_model(LookupDecoder(trained.data.test, 10, fixed=3))
    result = clf.conditional_accuracy(model, trained.model, n_per_class=50)
    assert result["per_class"][3] >= 0.9
    assert all(acc <= 0.05 for k, acc in enumerate(result["per_class"]) if k != 3)
    assert result["overall"] <= 0.15


@pytest.mark.slow
def test_conditional_accuracy_is_reproducible_and_restores_mode(trained: Trained) -> None:
    model = genreg.build_model({"type": "cvae", "latent_dim": 2}, genreg.DataInfo(SHAPE, 10)).train()
    first = clf.conditional_accuracy(model, trained.model, n_per_class=20, seed=4)
    assert model.training
    assert clf.conditional_accuracy(model, trained.model, n_per_class=20, seed=4) == first


@pytest.mark.slow
def test_unconditional_model_is_refused(trained: Trained) -> None:
    model = stub_model(LookupDecoder(trained.data.test, 10), conditional=False)
    with pytest.raises(ValueError, match="model conditioned on the class label"):
        clf.conditional_accuracy(model, trained.model)


def test_classifier_for_another_dataset_is_refused() -> None:
    model = genreg.build_model({"type": "cvae", "latent_dim": 2}, genreg.DataInfo(SHAPE, 10))
    with pytest.raises(ValueError, match="5 classes"):
        clf.conditional_accuracy(model, networks.ReferenceCNN(SHAPE, num_classes=5))
    with pytest.raises(ValueError, match="n_per_class"):
        clf.conditional_accuracy(model, networks.ReferenceCNN(SHAPE, num_classes=10), n_per_class=0)


@pytest.mark.slow
def test_reconstruction_accuracy_is_the_classifiers_reading_of_what_the_model_draws(trained: Trained) -> None:
    # The lookup decoder "reconstructs" each image as a real test image of the class in its condition: read like
    # the test set; one that always draws a 3 is right only for the 3s (a tenth of the images).
    test = trained.data.test
    assert clf.reconstruction_accuracy(stub_model(LookupDecoder(test, 10)), trained.model, test) == pytest.approx(
        trained.accuracy, abs=0.03
    )
    fixed = clf.reconstruction_accuracy(stub_model(LookupDecoder(test, 10, fixed=3)), trained.model, test)
    assert fixed == pytest.approx(0.1, abs=0.02)
    assert clf.trust_warning(trained.accuracy, fixed, 0.1) is not None
    assert clf.trust_warning(0.98, 0.9, 0.9) is None  # 8 points below the test images: within TRUST_GAP


# --- vectors: the MLP ------------------------------------------------------------------------

FEATURES = 12
VECTOR_SPEC = {"type": "npz", "path": "table.npz", "binarize": "none"}  # any spec: it only names the cache file


@pytest.fixture
def one_thread() -> Iterator[None]:
    """This test on one intra-op thread: the MLP's 500 small steps take 0.5 s, against 15 s on two busy cores."""
    with single_thread():
        yield


def separable_vectors(n_train: int = 300, n_test: int = 150, seed: int = 0) -> genreg.DataSplits:
    """Three classes of 12-feature vectors in their own units (~1000 +- 300 per feature): the class centres lie
    ~4 noise standard deviations apart along every feature, so a linear read of the standardised features
    separates them (a nearest-centre rule is right ~99.9% of the time)."""
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(3, FEATURES, generator=g)

    def split(n: int) -> genreg.Split:
        labels = torch.arange(n) % 3
        x = centres[labels] + torch.randn(n, FEATURES, generator=g)
        return genreg.Split(1000.0 + 300.0 * x, labels)

    return genreg.DataSplits(split(n_train), split(n_test), 3)


def test_reference_network_is_an_mlp_for_vectors_and_a_cnn_for_images() -> None:
    assert isinstance(networks.reference_network((FEATURES,), 3), networks.ReferenceMLP)
    assert isinstance(networks.reference_network(SHAPE, 10), networks.ReferenceCNN)
    mlp = networks.ReferenceMLP((FEATURES,), num_classes=4).eval()
    assert mlp(torch.randn(5, FEATURES)).shape == (5, 4) and mlp.image_shape == (FEATURES,)
    with pytest.raises(ValueError, match=r"vectors of shape \(F,\)"):
        networks.ReferenceMLP((1, 8, 8), num_classes=3)


def test_mlp_standardises_each_feature_by_the_training_split() -> None:
    data = separable_vectors()
    mlp = networks.ReferenceMLP((FEATURES,), 3)
    mlp.standardise_by(torch.cat([data.train.images, torch.full((300, 1), 5.0)], 1)[:, 1:])  # last feature constant
    x = data.train.images.double()
    torch.testing.assert_close(mlp.shift[:-1].double(), x[:, 1:].mean(0), rtol=1e-6, atol=1e-3)
    torch.testing.assert_close(mlp.scale[:-1].double(), x[:, 1:].std(0), rtol=1e-6, atol=1e-4)
    assert (mlp.shift[-1], mlp.scale[-1]) == (5.0, 1.0)  # a constant feature is shifted, never divided by 0
    # forward reads the standardised features: data in other units, standardised alike, give the same logits
    x = data.test.images
    logits = mlp.eval()(x)
    with torch.no_grad():
        mlp.shift.mul_(3).add_(7)
        mlp.scale.mul_(3)
    torch.testing.assert_close(mlp(3 * x + 7), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("one_thread")
def test_mlp_reads_separable_vectors_in_any_units() -> None:
    data = separable_vectors()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mlp = clf.train_classifier(data, epochs=1, seed=0)  # at least MLP["min_steps"] steps: 167 epochs of 3 batches
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG is left alone
    assert isinstance(mlp, networks.ReferenceMLP) and not mlp.training
    # Measured 0.993-1.000 over 5 data and training seeds (a nearest-centre rule: 1.000).
    assert clf.accuracy(mlp, data.test) >= 0.97
    assert clf._epochs_for_steps(300, networks.MLP["min_steps"]) == 167
    untrained = networks.reference_network((FEATURES,), 3)
    assert clf.accuracy(untrained, data.test) < 0.8  # what the training bought: untrained, chance (0.09-0.39)


@pytest.mark.usefixtures("one_thread")
def test_mlp_is_cached_with_its_sample_shape_and_reloaded(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = separable_vectors()
    calls = count_training(monkeypatch)
    first, accuracy = clf.reference_classifier(VECTOR_SPEC, data)
    metadata, _ = read_tensors(clf.classifier_path(VECTOR_SPEC))
    assert metadata["genreg.image_shape"] == f"[{FEATURES}]" and metadata["genreg.num_classes"] == "3"
    assert '"network": "mlp"' in metadata["genreg.recipe"] and len(calls) == 1
    forbid_training(monkeypatch)
    again, same = clf.reference_classifier(VECTOR_SPEC, data)
    assert isinstance(again, networks.ReferenceMLP) and same == accuracy >= 0.97
    assert same_weights(again, first)  # the standardisation buffers too
    assert torch.equal(again.shift, first.shift) and torch.equal(again.scale, first.scale)


def test_a_cnn_file_written_before_vectors_is_still_read(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CNN's cache metadata is what genreg wrote before it knew vectors: those files are used, not retrained."""
    split = genreg.Split(torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 2)
    data = genreg.DataSplits(split, split, 2)
    cnn = networks.ReferenceCNN((1, 8, 8), 2).eval()
    old_recipe = '{"lr": 0.001, "batch_size": 128, "augmentation": {"blur_sigma": 0.05, "shift": 0.1, "chunk": 32}}'
    metadata = {
        "genreg.format": "genreg-classifier/2",
        "genreg.data": '{"binarize":"none","type":"mnist-sample"}',
        "genreg.data_digest": clf.data_digest(data),
        "genreg.image_shape": "[1, 8, 8]",
        "genreg.num_classes": "2",
        "genreg.epochs": "8",
        "genreg.seed": "0",
        "genreg.recipe": old_recipe,
        "genreg.test_accuracy": "0.625",
        "genreg.version": "0.0.0",
    }
    clf.classifier_path(MNIST_SPEC).parent.mkdir(parents=True)
    save_tensors(clf.classifier_path(MNIST_SPEC), {k: v.contiguous() for k, v in cnn.state_dict().items()}, metadata)
    forbid_training(monkeypatch)
    loaded, accuracy = clf.reference_classifier(MNIST_SPEC, data)
    assert isinstance(loaded, networks.ReferenceCNN) and accuracy == 0.625 and same_weights(loaded, cnn)


class ClassCentres(torch.nn.Module):
    """A "decoder" of vectors that ignores z: the asked class's centre (or always class ``fixed``'s)."""

    def __init__(self, centres: torch.Tensor, fixed: int | None = None) -> None:
        super().__init__()
        self.register_buffer("centres", centres)
        self.fixed = fixed

    def forward(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        classes = condition.argmax(1) if self.fixed is None else torch.full((len(z),), self.fixed)
        return self.centres[classes] + 0 * z[:, :1]


class ConcatCondition(torch.nn.Module):
    """Encoder: the features beside the one-hot condition."""

    out_features = FEATURES + 3

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([x, condition], 1)


def vector_cvae(data: genreg.DataSplits, fixed: int | None = None) -> genreg.GenerativeModel:
    """A cVAE of vectors whose samples and reconstructions are class centres: the asked class's, or ``fixed``'s."""
    centres = torch.stack([data.train.images[data.train.labels == k].mean(0) for k in range(3)])
    return genreg.GenerativeModel(
        conditioner=OneHot(OneHotConfig(), num_classes=3),
        encoder=ConcatCondition(),
        latent=GaussianLatent(GaussianConfig(), in_features=FEATURES + 3, dim=2),
        decoder=ClassCentres(centres, fixed),
        losses=[Gaussian(GaussianTermConfig(), output_shape=(FEATURES,))],
        data=data.info,
    )


@pytest.mark.usefixtures("one_thread")
def test_conditional_accuracy_of_vectors_tells_the_asked_class_from_a_fixed_one() -> None:
    data = separable_vectors()
    mlp = clf.train_classifier(data, epochs=1)
    right, wrong = vector_cvae(data), vector_cvae(data, fixed=2)
    assert clf.conditional_accuracy(right, mlp, n_per_class=20)["overall"] == 1.0
    assert clf.conditional_accuracy(wrong, mlp, n_per_class=20)["per_class"] == [0.0, 0.0, 1.0]
    assert clf.reconstruction_accuracy(right, mlp, data.test) == 1.0
    assert clf.reconstruction_accuracy(wrong, mlp, data.test) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"3 classes of vectors of 8 features, but the model generates 3 classes of "):
        clf.conditional_accuracy(right, networks.ReferenceMLP((8,), 3))


# --------------------------------------------------------------------------------------------------
# Data in other units: the classifier reads what it was trained on, the splits in the model's units


class Recording(torch.nn.Module):
    """A classifier of 3 classes that reads every sample as class 0 and keeps what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.nn.functional.pad(torch.ones(len(x), 1), (0, 2), value=-1.0) * self.scale


def test_the_classifier_reads_samples_and_reconstructions_in_the_models_units() -> None:
    """Splits hold a transformed model's units (log1p, standardize: about 0 +- 1), and the classifier is trained on
    them; the counts of the data's own units (tens to hundreds) would be misread."""
    from tests.viz.vectors import SPECS, named_data

    data = named_data()
    model = genreg.build_model(SPECS["cvae"], data.info).eval()
    classifier = Recording()
    result = clf.conditional_accuracy(model, classifier, n_per_class=20)
    assert result["classes"] == ["B", "CD14+ Monocyte", "T"] and result["per_class"] == [1.0, 0.0, 0.0]
    assert clf.reconstruction_accuracy(model, classifier, data.test) == pytest.approx(
        float((data.test.labels == 0).float().mean())
    )
    seen = torch.cat(classifier.seen)
    assert seen.shape == (60 + len(data.test), 12) and seen.abs().mean() < 5  # the data's mean is over 50
