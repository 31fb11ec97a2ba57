"""Tests examples/latent_study/: the study's ordering, on short seeded runs of the study's own specs.

Theory: without KLD (AE) the latent is far from N(0, I); with KLD (VAE) it is close
but keeps the classes apart; with KLD and the condition (cVAE) it is closest and the
classes mix, while the samples follow the asked class.
"""

from __future__ import annotations

import json

import pytest
import torch

import genreg
from genreg.evaluation.classifier import conditional_accuracy, reference_classifier
from genreg.evaluation.metrics import latent_metrics, posterior
from tests.helpers import EXAMPLES

pytestmark = pytest.mark.slow

STUDY = EXAMPLES / "latent_study"
SHORT = ["train.epochs=20", "model.encoder.hidden=[256]", "model.decoder.hidden=[256]"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, dict]:
    cache = tmp_path_factory.mktemp("cache")
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENREG_CACHE", str(cache))
        for name in ("ae", "vae", "cvae"):
            spec = genreg.load_spec(json.loads((STUDY / f"{name}.json").read_text()), SHORT)
            torch.manual_seed(spec.seed)
            data = genreg.load_data(spec.data)
            model = genreg.build_model(spec.model, data.info)
            genreg.train(model, data, spec.train, seed=spec.seed, progress=False)
            results[name] = latent_metrics(posterior(model, data.test))
            if model.conditional:
                classifier, accuracy = reference_classifier(spec.data.model_dump(mode="json"), data)
                results[name]["conditional"] = conditional_accuracy(model, classifier, n_per_class=100)["overall"]
                results[name]["classifier"] = accuracy
    return results


def test_gaussianity_distance_orders_ae_vae_cvae(study: dict[str, dict]) -> None:
    kl = {name: result["gaussian_kl"] for name, result in study.items()}
    mmd = {name: result["mmd"] for name, result in study.items()}
    assert kl["ae"] > kl["vae"] > kl["cvae"], kl
    assert mmd["ae"] > mmd["vae"] > mmd["cvae"], mmd
    assert kl["ae"] > 10 * kl["vae"]


def test_vae_keeps_classes_apart_and_cvae_mixes_them(study: dict[str, dict]) -> None:
    vae, cvae = study["vae"]["knn_accuracy"], study["cvae"]["knn_accuracy"]
    assert vae > cvae + 0.15, (vae, cvae)
    assert cvae < 0.3 and study["cvae"]["chance"] == pytest.approx(0.1)


def test_cvae_samples_follow_the_asked_class(study: dict[str, dict]) -> None:
    assert study["cvae"]["classifier"] >= 0.95
    assert study["cvae"]["conditional"] >= 0.9
