"""Whether a conditional model's samples of each class look like that class's data: mean profiles compared.

For vectors (expression profiles, spectra, a table's rows) the question a scientist asks of a cVAE is whether
the samples it draws for cell type k have cell type k's profile. The mean of n samples asked for class k is
compared with the mean of the data's samples of class k (every split given, pooled: a class of a few cells has
a noisy mean in any one split), both in the data's units and both centred by the data's overall mean profile,
so that the baseline every class shares (a gene expressed everywhere) does not count and what is compared is
how the class differs from the rest: the Pearson correlation of those two deviations, per class. A class's
samples "match" when their deviation correlates best with their own class's among every class the data holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genreg.data.columns import LABEL
from genreg.data.sparse import dense
from genreg.data.splits import Split
from genreg.model.generative import GenerativeModel


@torch.no_grad()
def profile_agreement(model: GenerativeModel, splits: Sequence[Split], n_per_class: int = 100, seed: int = 0) -> dict:
    """Per class of the data (the ``splits`` pooled; every class with at least one sample there), the Pearson r
    between the centred mean profile of ``n_per_class`` samples the model draws for it and the centred mean
    profile of its data; (F,) profiles in the data's units, the data's overall mean profile subtracted from both.

    Returns ``profile_r`` (the mean of the classes' r), ``profile_r_per_class`` and ``profile_classes`` (the
    classes' names, as :meth:`~genreg.data.splits.DataInfo.class_names` gives them), and ``profile_matched``: the
    share of classes whose sample profile correlates best with their own class's data profile. Sampling is seeded
    (``torch.manual_seed(seed)``). For a model of vectors conditioned on the label (``ValueError`` otherwise).
    """
    if not model.data_info.is_vectors or not model.conditional or model.conditioner.num_classes is None:
        raise ValueError(
            "profile_agreement compares the samples of each class of a model of vectors conditioned on it."
        )
    data = model.out_of_model(
        torch.cat([dense(split.images) for split in splits]).to(model.device)
    )  # (N, F), data's units
    labels = torch.cat([split.labels for split in splits]).to(model.device)
    classes = [k for k in range(model.data_info.num_classes) if bool((labels == k).any())]
    centre = data.mean(0)
    truth = torch.stack([data[labels == k].mean(0) for k in classes]) - centre  # (K, F)
    torch.manual_seed(seed)
    with model.evaluating():
        drawn = torch.stack([_samples_of(model, k, n_per_class).mean(0) for k in classes]) - centre  # (K, F)
    r = _correlations(drawn, truth)  # (K, K): r[i, j] between class i's samples and class j's data
    own = r.diagonal()
    names = model.data_info.class_names(LABEL)
    return {
        "profile_r": own.mean().item(),
        "profile_r_per_class": own.tolist(),
        "profile_classes": [names[k] for k in classes],
        "profile_matched": (r.argmax(1) == torch.arange(len(classes), device=r.device)).float().mean().item(),
    }


def _samples_of(model: GenerativeModel, k: int, n: int) -> torch.Tensor:
    """n samples asked for class k (any other condition column at class 0 or its training mean), data's units."""
    return model.sample(condition=model.conditioner.constant(n, {LABEL: k}))


def _correlations(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r of every row of ``a`` (K, F) with every row of ``b`` (K, F): (K, K), float64."""
    a, b = a.double() - a.double().mean(1, keepdim=True), b.double() - b.double().mean(1, keepdim=True)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return a @ b.T
