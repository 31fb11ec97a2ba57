"""What AE, VAE and cVAE do to the latent space, in numbers.

Every sample is an image (C, H, W) or a vector of features (F,) (``DataInfo.is_vectors``); nothing here
depends on which, except the words it writes.

Likelihood: the negative ELBO and the importance-weighted (IWAE) estimate of the
negative log-likelihood (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted
Autoencoders"), both in nats per sample, from the model's likelihood term (``bce`` for
images, ``gaussian`` for real-valued vectors, any term with ``log_likelihood``).
Reconstruction, for vectors: the coefficient of determination R^2 of each feature
(:func:`reconstruction_r2`). Latent space: active units (also Burda et
al. 2016), how far the aggregate posterior is from N(0, I) (a fitted Gaussian's
KL, and the MMD of Gretton et al. 2012, "A Kernel Two-Sample Test"), and how well
a k-NN classifier reads the class off the latent codes the decoder gets (next to the
chance level): one draw z ~ q(z|x) per image on the active units, or an AE's codes.
The means would not do: a cVAE's encoder sees the label, and label-dependent offsets
of its means far smaller than the posterior noise (even on inactive units) let k-NN
read the label that was fed in, though no draw of z carries it.

Everything here is on the model's scale: splits hold samples after the dataset's ``transform``
(:mod:`genreg.data.transforms`), the likelihood models those, so the bounds and the R^2 are of the transformed
values (model methods are called with ``units="model"``). A metric that has no meaning for the data (k-NN of the
class for data without labels, or of fewer than 2 samples) is None, and :data:`SKIPPED` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Normal

from genreg.data.splits import Split
from genreg.errors import UsageError
from genreg.model.conditions import Condition
from genreg.model.generative import GenerativeModel
from genreg.training.precision import autocast, choose

ACTIVE_UNIT_THRESHOLD = 0.01
#: The key of a result that maps each metric left out (None) to why: ``{"knn_accuracy": "the data has no labels"}``.
SKIPPED = "skipped"
#: Why the class-based metrics of data without labels are left out.
NO_LABELS = "the data has no labels"


@dataclass
class Posterior:
    """Per-image posterior parameters of a split (log_var is None for a deterministic latent)."""

    mu: torch.Tensor
    log_var: torch.Tensor | None
    labels: torch.Tensor


def batches(model: GenerativeModel, split: Split, size: int):
    """Images and the model's condition columns, ``size`` images at a time, on the model's device."""
    for start in range(0, len(split), size):
        index = slice(start, start + size)
        yield split.images[index].to(model.device), model.condition_of(split, index)


@torch.no_grad()
def posterior(model: GenerativeModel, split: Split, batch_size: int = 1000) -> Posterior:
    """The encoder's mu (and log_var when the latent provides it) for every image, on the CPU."""
    mus, log_vars = [], []
    with model.evaluating():
        for x, condition in batches(model, split, batch_size):
            sample = model.latent(model.encoder(x, model.condition(condition) if model.condition_encoder else None))
            mus.append(sample.params.get("mu", sample.z).float().cpu())
            if "log_var" in sample.params:
                log_vars.append(sample.params["log_var"].float().cpu())
    return Posterior(torch.cat(mus), torch.cat(log_vars) if log_vars else None, split.labels.cpu())


def _likelihood_term(model: GenerativeModel):
    for term in model.losses:
        if hasattr(term, "log_likelihood"):
            return term
    raise UsageError(
        "this model has no reconstruction term with a log-likelihood (such as 'bce' or 'gaussian'); cannot compute it."
    )


def is_probabilistic(model: GenerativeModel) -> bool:
    """Whether the model has a Gaussian posterior and a likelihood, so ELBO and IWAE exist."""
    has_likelihood = any(hasattr(term, "log_likelihood") for term in model.losses)
    return {"mu", "log_var"} <= set(getattr(model.latent, "provides", ())) and has_likelihood


@torch.no_grad()
def log_weights(
    model: GenerativeModel, x: torch.Tensor, condition: Condition | None, k: int, bf16: bool = False
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for ``k`` draws z ~ q(z|x) per sample: shape (k, B), nats.

    ``x`` is (B, C, H, W) images or (B, F) vectors; log p(x|z) is the likelihood term's ``log_likelihood``
    (every constant included, e.g. a Gaussian's -0.5 log 2 pi sigma^2 per feature). The prior is N(0, I) and q is
    the encoder's diagonal Gaussian, both in fp32; with ``bf16`` the decoder's matrix products (the k x B rows, the
    bulk of the work) run under bf16 autocast, its likelihood in fp32.
    """
    condition = model.condition(condition)
    params = model.latent(model.encoder(x, condition if model.condition_encoder else None)).params
    mu, std = params["mu"].float(), torch.exp(0.5 * params["log_var"].float())
    q = Normal(mu, std)
    z = q.sample((k,))  # (k, B, d)
    flat_z = z.reshape(-1, z.shape[-1])
    flat_c = None if condition is None else condition.repeat(k, *[1] * (condition.dim() - 1))
    with autocast(x.device, bf16):
        logits = model.decoder(flat_z.to(x.dtype), flat_c)
    log_px = _likelihood_term(model).log_likelihood(x.repeat(k, *[1] * (x.dim() - 1)), logits).view(k, -1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    return log_px + log_pz - q.log_prob(z).sum(-1)


#: decoder values (rows x pixels) alive at once by default: 4M floats, 16 MB, so that the likelihood's
#: element-wise passes stay in a CPU's cache (measured 1.7x faster than 50,000 rows of 784 pixels)
DECODED_VALUES = 2**22
#: how far bf16 may move the negative ELBO or the IWAE NLL (nats per image) before evaluation stays fp32
BF16_TOLERANCE = 0.1
#: images on which ``precision="auto"`` compares bf16 with fp32 (whole chunks of them)
CHECKED_IMAGES = 100


@torch.no_grad()
def likelihood_bounds(
    model: GenerativeModel,
    split: Split,
    k: int = 1000,
    max_rows: int | None = None,
    seed: int = 0,
    precision: str = "auto",
    label: str = "precision",
) -> dict[str, float | str]:
    """Negative ELBO and IWAE negative log-likelihood (nats per sample), from the same ``k`` draws per sample.

    IWAE: -log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016), which
    tightens towards -log p(x) as k grows; the ELBO is the mean of the same log weights.
    Raises :class:`UsageError` for a model without a Gaussian latent and a likelihood term.

    Images are processed in chunks so that at most ``max_rows`` decoder rows are alive at once (by
    default as many as hold :data:`DECODED_VALUES` values). ``precision`` (``auto``, ``fp32`` or ``bf16``)
    is what the decoder's products run in, chosen as for training (:mod:`genreg.training.precision`); ``auto``
    measures the first :data:`CHECKED_IMAGES` images (rounded up to whole chunks) both ways with the same draws
    and keeps bf16 for the rest only if it moved neither bound by more than :data:`BF16_TOLERANCE` nats per
    image. ``precision`` in the result is ``bf16`` or ``fp32``, ``precision_note`` says why (naming the
    setting as ``label``, e.g. ``--precision``).
    """
    if not is_probabilistic(model):
        raise UsageError(
            "ELBO and IWAE need a Gaussian latent (mu, log_var) and a likelihood term such as 'bce' or 'gaussian'."
        )
    model.eval()
    rows = max_rows or max(1, DECODED_VALUES // math.prod(split.images.shape[1:]))
    per_chunk = max(1, rows // k)
    chosen = choose(precision, model.device, label)
    bf16, note = chosen.bf16, chosen.describe()
    torch.manual_seed(seed)
    if not (bf16 and precision == "auto"):
        elbo, iwae = _per_image(model, split, k, per_chunk, rows, bf16)
    else:  # the first whole chunks both ways, with the same draws; the rest in the precision that passed
        checked = min(len(split), -(-CHECKED_IMAGES // per_chunk) * per_chunk)
        head = split.take(slice(0, checked))
        in_bf16 = _per_image(model, head, k, per_chunk, rows, bf16=True)
        torch.manual_seed(seed)
        in_fp32 = _per_image(model, head, k, per_chunk, rows, bf16=False)  # leaves the RNG where bf16's did
        change = max(abs(float((a - b).mean())) for a, b in zip(in_bf16, in_fp32, strict=True))
        bf16 = change <= BF16_TOLERANCE
        compared = f"{change:.3f} nats from fp32 on the first {checked} {model.data_info.noun}"
        note = (
            f"bf16 autocast ({chosen.reason}; {compared})"
            if bf16
            else (f"fp32 (bf16 autocast was {compared}, more than {BF16_TOLERANCE})")
        )
        rest = _per_image(model, split.take(slice(checked, None)), k, per_chunk, rows, bf16)
        elbo, iwae = (torch.cat(pair) for pair in zip(in_bf16 if bf16 else in_fp32, rest, strict=True))
    return {
        "neg_elbo": -float(elbo.mean()),
        "nll_iwae": -float(iwae.mean()),
        "iw_samples": k,
        "precision": "bf16" if bf16 else "fp32",
        "precision_note": note,
    }


def _per_image(
    model: GenerativeModel, split: Split, k: int, per_chunk: int, rows: int, bf16: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's ELBO and IWAE estimate (N,) each, float64 on the CPU, ``per_chunk`` images at a time, from
    the global RNG's current state: two precisions started from the same state see the same z."""
    elbos, iwaes = [torch.zeros(0, dtype=torch.float64)], [torch.zeros(0, dtype=torch.float64)]
    for x, condition in batches(model, split, per_chunk):
        weights = torch.cat([log_weights(model, x, condition, part, bf16) for part in _parts(k, rows)])
        elbos.append(weights.mean(0).double().cpu())
        iwaes.append((torch.logsumexp(weights, 0) - math.log(k)).double().cpu())
    return torch.cat(elbos), torch.cat(iwaes)


def _parts(k: int, max_rows: int) -> list[int]:
    """Split ``k`` draws into pieces of at most ``max_rows`` (for one image at a time when k is huge)."""
    size = max(1, min(k, max_rows))
    return [size] * (k // size) + ([k % size] if k % size else [])


def r2_per_feature(x: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """The coefficient of determination of each feature, (F,) float64: 1 - SS_res / SS_tot.

    ``x`` and ``reconstructed`` are (N, F) (or (N, ...), flattened to features). SS_res = sum_n (x - x_hat)^2 and
    SS_tot = sum_n (x - mean_n x)^2 per feature, the mean taken over these N rows: the R^2 of regression
    (e.g. Draper & Smith, "Applied Regression Analysis"; scikit-learn's ``r2_score`` per output). 1 is a
    perfect reconstruction, 0 no better than the feature's mean, below 0 worse. A feature that does not vary
    over the rows (SS_tot = 0, or fewer than 2 rows) has no R^2: NaN.
    """
    x, reconstructed = x.flatten(1).double(), reconstructed.flatten(1).double()
    residual = (x - reconstructed).square().sum(0)
    total = (x - x.mean(0)).square().sum(0)
    return torch.where(total > 0, 1 - residual / total.clamp_min(torch.finfo(total.dtype).tiny), math.nan)


@torch.no_grad()
def reconstruction_r2(
    model: GenerativeModel, split: Split, batch_size: int = 1000
) -> dict[str, float | int | list[float | None] | None]:
    """R^2 of the model's reconstructions of ``split``, per feature and its mean over features (as
    :func:`r2_per_feature` computes it); measured for vectors, whose features are real numbers in their own units.
    It is on the model's scale, after the dataset's ``transform`` (the split's values and the likelihood's): of
    log1p values, say, not of the counts.

    The reconstruction decodes each sample's posterior mean with its own condition (``model.reconstruct``: for a
    count likelihood, at the row's own total count), so the figure says how much of each feature's variance over
    the split the code keeps. Computed ``batch_size`` rows at a time in two passes (the features' means, then the
    sums of squares, float64), so that no dense copy of the split is made (a sparse or on-disk one stays so).
    Returns ``reconstruction_r2`` (the mean over the features that vary; None if none does),
    ``reconstruction_r2_per_feature`` (F values, None for a feature that does not vary) and ``r2_features`` (how
    many features the mean is over).
    """
    features = math.prod(split.images.shape[1:])
    mean = torch.zeros(features, dtype=torch.float64, device=model.device)
    for x, _ in batches(model, split, batch_size):
        mean += x.flatten(1).double().sum(0)
    mean /= max(len(split), 1)
    residual, total = torch.zeros_like(mean), torch.zeros_like(mean)
    with model.evaluating():
        for x, condition in batches(model, split, batch_size):
            flat = x.flatten(1).double()
            decoded = model.reconstruct(x, condition, units="model").flatten(1).double()
            residual += (flat - decoded).square().sum(0)
            total += (flat - mean).square().sum(0)
    r2 = torch.where(total > 0, 1 - residual / total.clamp_min(torch.finfo(total.dtype).tiny), math.nan).cpu()
    defined = r2[~r2.isnan()]
    return {
        "reconstruction_r2": float(defined.mean()) if len(defined) else None,
        "reconstruction_r2_per_feature": [None if math.isnan(v) else v for v in r2.tolist()],
        "r2_features": len(defined),
    }


def active_mask(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Active latent dims, (d,) bool: Cov_x(E[z|x]) > threshold over the means ``mu`` (n, d) (Burda et al.)."""
    return mu.var(0) > threshold


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """How many latent dims are active (see :func:`active_mask`)."""
    return int(active_mask(mu, threshold).sum())


def gaussian_kl_to_standard(z: torch.Tensor) -> float:
    """KL(N(m, S) || N(0, I)) for the Gaussian N(m, S) fitted to the points ``z`` (n, d)."""
    z = z.double()
    m = z.mean(0)
    s = torch.cov(z.T).reshape(z.shape[1], z.shape[1]) + 1e-9 * torch.eye(z.shape[1], dtype=z.dtype)
    return float(0.5 * (torch.trace(s) + m @ m - z.shape[1] - torch.logdet(s)))


def mmd_to_standard(z: torch.Tensor, seed: int = 0) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012) between ``z`` (n, d) and as many N(0, I) draws, RBF kernel
    exp(-|a-b|^2 / (2 d)).

    The bandwidth sqrt(d) matches the scale of N(0, I) in d dimensions; 0 means indistinguishable.
    """
    z = z.double()
    n, d = z.shape
    generator = torch.Generator().manual_seed(seed)
    prior = torch.randn(n, d, generator=generator, dtype=z.dtype)

    def kernel_mean(a: torch.Tensor, b: torch.Tensor, same: bool) -> torch.Tensor:
        k = torch.exp(-torch.cdist(a, b).square() / (2 * d))
        if same:
            return (k.sum() - k.diagonal().sum()) / (n * (n - 1))
        return k.mean()

    return float(kernel_mean(z, z, True) + kernel_mean(prior, prior, True) - 2 * kernel_mean(z, prior, False))


def knn_accuracy(z: torch.Tensor, labels: torch.Tensor, k: int = 5, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier (Euclidean, majority vote).

    ``z`` is (n, d); with d = 0 (nothing to read) every point ties and each fold gets its training
    part's most frequent class, the chance level. Raises :class:`UsageError` for fewer than 2 points: a point
    left out has no neighbour to be read from.
    """
    n = z.shape[0]
    if n < 2:
        raise UsageError(
            f"k-NN accuracy reads each point's class from its neighbours, so it needs at least 2 points; got {n}."
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    correct = 0
    for fold in order.chunk(folds):
        train = torch.ones(n, dtype=torch.bool)
        train[fold] = False
        if z.shape[1] == 0:
            predicted = torch.mode(labels[train]).values.expand(len(fold))
        else:
            predicted = _knn_predictions(z[fold].double(), z[train].double(), labels[train], k)
        correct += int((predicted == labels[fold]).sum())
    return correct / n


#: distances alive at once in a k-NN search (float64: 128 MB); a larger fold is searched in parts of queries
KNN_DISTANCES = 2**24


def _knn_predictions(queries: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """The majority class of each query's ``k`` nearest ``points`` (Euclidean), at most :data:`KNN_DISTANCES`
    distances at a time."""
    rows = max(1, KNN_DISTANCES // max(1, len(points)))
    predicted = []
    for part in queries.split(rows):
        neighbours = labels[torch.cdist(part, points).topk(min(k, len(points)), largest=False).indices]
        predicted.append(torch.mode(neighbours, dim=1).values)
    return torch.cat(predicted)


def chance_level(labels: torch.Tensor) -> float:
    """Accuracy of always guessing the most frequent class."""
    return float(torch.bincount(labels).max()) / labels.numel()


def aggregate_sample(post: Posterior, seed: int = 0) -> torch.Tensor:
    """One draw z ~ q(z|x) per image: a sample of the aggregate posterior (the means for an AE)."""
    if post.log_var is None:
        return post.mu
    noise = torch.randn(post.mu.shape, generator=torch.Generator().manual_seed(seed))
    return post.mu + torch.exp(0.5 * post.log_var) * noise


def class_features(post: Posterior, z: torch.Tensor) -> tuple[torch.Tensor, str]:
    """What k-NN reads the class from, (n, d'), and those words for the table.

    For a Gaussian posterior: ``z``, one draw z ~ q(z|x) per image (see :func:`aggregate_sample`),
    on the active units only. Offsets of the means smaller than the posterior noise are drowned
    in the draw, and inactive units (posterior ~ prior) are left out, both their label offsets
    and their noise, which would only hide the class the active units carry. For a deterministic
    latent (an AE, which never sees the label): its codes, every dimension.
    """
    if post.log_var is None:
        return post.mu, f"codes, {post.mu.shape[1]} dims"
    active = active_mask(post.mu)
    return z[:, active], f"draws z ~ q, {int(active.sum())} active units"


def latent_metrics(
    post: Posterior, seed: int = 0, labelled: bool = True, noun: str = "samples"
) -> dict[str, float | int | str | None | dict[str, str]]:
    """Active units, Gaussianity of the aggregate posterior and k-NN separability of the codes.

    ``knn_accuracy`` is read off :func:`class_features` (``knn_on`` says which), so a chance-level
    figure means that the codes the decoder gets do not carry the class. Data without labels (``labelled``
    false: one class, which any classifier reads) has no such figure: ``knn_accuracy``, ``knn_on`` and
    ``chance`` are None and ``skipped`` (:data:`SKIPPED`) says why; so are they, and the Gaussianity of
    the points, for fewer than 2 of them (``noun`` names what they are in that reason).
    """
    z = aggregate_sample(post, seed)
    n, skipped = len(z), {}
    result: dict = {"latent_dim": post.mu.shape[1], "active_units": active_units(post.mu) if n > 1 else None}
    few = f"the split has {n} {noun if n != 1 else noun.removesuffix('s')}; it needs at least 2"
    if n < 2:
        result |= {"gaussian_kl": None, "mmd": None}
        skipped |= {"active_units": few, "gaussian_kl": few, "mmd": few}
    else:
        result |= {"gaussian_kl": gaussian_kl_to_standard(z), "mmd": mmd_to_standard(z, seed)}
    if not labelled or n < 2:
        result |= {"knn_accuracy": None, "knn_on": None, "chance": None}
        skipped["knn_accuracy"] = NO_LABELS if not labelled else few
    else:
        features, described = class_features(post, z)
        result |= {
            "knn_accuracy": knn_accuracy(features, post.labels, seed=seed),
            "knn_on": described,
            "chance": chance_level(post.labels),
        }
    return result | ({SKIPPED: skipped} if skipped else {})
