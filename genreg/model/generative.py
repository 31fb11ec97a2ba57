"""The generative model every recipe builds: conditioner, encoder, latent, decoder, losses.

AE, VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes") and cVAE (Sohn,
Lee & Yan 2015, "Learning Structured Output Representation using Deep Conditional
Generative Models") are the same class with different parts; there is one forward
pass and one loss for all of them. Shapes: images x (B, C, H, W) in [0, 1], latent
codes z (B, latent_dim), condition vectors (B, condition_dim); a condition is
given as ``{column: (B,) values}`` (a bare (B,) tensor for a model with one column).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from genreg.data.splits import LABEL, DataInfo, Split
from genreg.errors import AssemblyError, ConditionError, InputError
from genreg.model import inputs
from genreg.model.conditions import Condition, Conditions, is_continuous
from genreg.model.inputs import Codes, Given, Images, Labels
from genreg.model.losses import decoder_output_shape, full_precision, likelihood_mean, parameter_maps, weight_schedule
from genreg.plugin.protocols import LatentSample, ModelOutput

#: The units of samples a model method takes and returns: the data's (what users hold, the default), or the
#: model's own (after the dataset's ``transform``: what splits hold and the likelihood models).
Units = Literal["data", "model"]


class GenerativeModel(nn.Module):
    """An autoencoder-family model composed of parts.

    The condition (if a conditioner is given) is fed to the decoder, and to the
    encoder unless ``condition_encoder`` is false (then the posterior is q(z|x)
    and the encoder must have been built for no condition). ``spec`` is the
    model's resolved spec (a dict) when it is known; it is what a saved file
    records so the model can be rebuilt from that file alone.

    Raises :class:`~genreg.errors.AssemblyError` when the parts do not fit: loss
    terms with the same name, a term that needs latent parameters the latent does
    not provide, or a part that fails on (or returns the wrong shape for) a batch
    of two dummy images of ``data.image_shape``.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        latent: nn.Module,
        decoder: nn.Module,
        losses: Sequence[nn.Module],
        data: DataInfo,
        conditioner: Conditions | nn.Module | None = None,
        condition_encoder: bool = True,
        spec: dict | None = None,
    ) -> None:
        super().__init__()
        if conditioner is not None and not isinstance(conditioner, Conditions):
            conditioner = Conditions([conditioner], [LABEL])  # one conditioner part: it reads the class label
        self.conditioner = conditioner
        self.condition_encoder = condition_encoder
        self.encoder = encoder
        self.latent = latent
        self.decoder = decoder
        self.losses = nn.ModuleList(losses)
        self.data_info = data
        self.spec = spec
        self.weight_schedules = [
            weight_schedule(term.config, f"model.losses[{i}].schedule (loss term '{term.config.metric_name}')")
            for i, term in enumerate(self.losses)
        ]
        self._check_losses()
        self._check_shapes()

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.parameters()).device

    @contextmanager
    def evaluating(self) -> Iterator[GenerativeModel]:
        """Eval mode for a measurement or a picture, restoring the caller's mode afterwards."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    @property
    def conditional(self) -> bool:
        return self.conditioner is not None

    @property
    def loss_names(self) -> list[str]:
        return [term.config.metric_name for term in self.losses]

    def condition(self, condition: Condition | None) -> torch.Tensor | None:
        """The condition vectors for ``condition`` (None for an unconditional model).

        ``condition`` maps each column the model reads to one value per image (a
        split's ``condition()`` gives that); for a model with one condition column a
        bare tensor of its values will do, e.g. the class labels of a cVAE.
        """
        if self.conditioner is None:
            return None
        if condition is None:
            raise ConditionError(
                f"this model is conditional: pass its condition (column(s) {', '.join(self.conditioner.columns)}), "
                "e.g. the class labels."
            )
        return self.conditioner(condition)

    def condition_of(self, split: Split, index: slice | torch.Tensor = slice(None)) -> dict[str, torch.Tensor] | None:
        """The columns this model reads, of ``split``'s images at ``index``, on its device (None if none)."""
        if self.conditioner is None:
            return None
        condition = split.condition(index)
        return {column: condition[column].to(self.device) for column in self.conditioner.columns}

    def forward(self, x: torch.Tensor, condition: Condition | None = None) -> ModelOutput:
        """One pass: x (B, C, H, W) -> the latent sample (z (B, latent_dim) and its parameters) and the
        decoder's logits (B, C, H, W). Raises ConditionError if a conditional model gets no condition."""
        c = self.condition(condition)
        latent = self.latent(self.encoder(x, c if self.condition_encoder else None))
        return ModelOutput(self.decoder(latent.z, c), latent)

    def loss_values(self, x: torch.Tensor, out: ModelOutput) -> dict[str, torch.Tensor]:
        """Each loss term's value per example (B,), unweighted, by name; nats for likelihood and KL terms."""
        return {term.config.metric_name: term(x, out) for term in self.losses}

    def term_means(self, x: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        """Each loss term's batch mean (terms,), unweighted, float32, in ``loss_names`` order.

        One tensor rather than a dict, so the trainer can weight it with a device
        tensor inside a compiled or graph-captured step.
        """
        values = self.loss_values(x, self(x, condition))
        return torch.stack([full_precision(v).mean() for v in values.values()])

    def loss_weights(self, progress: float) -> list[float]:
        """Each term's weight after ``progress`` epochs: its ``weight`` times its schedule's factor."""
        return [
            term.config.weight * (schedule.factor(progress) if schedule is not None else 1.0)
            for term, schedule in zip(self.losses, self.weight_schedules, strict=True)
        ]

    def loss(
        self, x: torch.Tensor, condition: Condition | None = None, progress: float = math.inf
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total (a scalar) and each term's batch mean (scalars, nats per image for likelihood and
        KL terms), with the weights of ``progress`` epochs (the final weights by default)."""
        means = self.term_means(x, condition)
        weights = torch.tensor(self.loss_weights(progress), dtype=means.dtype, device=means.device)
        return (means * weights).sum(), dict(zip(self.loss_names, means.unbind(), strict=True))

    @torch.no_grad()
    def encode(self, x: Images, condition: Given | None = None, *, units: Units = "data") -> torch.Tensor:
        """The deterministic latent code of each sample, its posterior mean: x (B, C, H, W) or (B, F) ->
        (B, latent_dim), or one sample -> (latent_dim,), float32 on the model's device.

        ``x`` is a torch tensor or numpy array on any device: images uint8 (0..255) or float in [0, 1], vectors
        finite real numbers in the data's units (see :func:`~genreg.model.inputs.as_images`; ``units="model"``:
        already transformed, as a split holds them); ``condition`` one value per sample, or one for all (see
        :meth:`given`). Raises :class:`~genreg.errors.InputError` for samples of another shape, dtype or range,
        and :class:`~genreg.errors.ConditionError` for a condition the model cannot take.
        """
        x, batched = self.images(x, units)
        needed = self.condition_encoder or condition is not None  # a q(z|x) encoder needs none, but checks one
        z = self._encode(x, self.given(condition, len(x)) if needed else None)
        return z if batched else z[0]

    def _encode(self, x: torch.Tensor, condition: dict[str, torch.Tensor] | None) -> torch.Tensor:
        c = self.condition(condition) if self.condition_encoder else None
        return self.latent.mean(self.encoder(x, c))

    @torch.no_grad()
    def decode(self, z: Codes, condition: Given | None = None, *, units: Units = "data") -> torch.Tensor:
        """Latent codes z (B, latent_dim), or one (latent_dim,), -> the decoded samples, float32 on the model's device:
        the mean of the likelihood (its term's ``mean``): pixel means (B, C, H, W) in [0, 1] for Bernoulli images
        (the sigmoid of the logits), or (B, F) vectors in the data's units for a Gaussian (the dataset's
        ``transform`` inverted; ``units="model"``: as the likelihood models them); without the batch axis for one
        code.

        ``z`` is a torch tensor or numpy array of finite real numbers, on any device; ``condition`` as for
        :meth:`encode`. Raises :class:`~genreg.errors.InputError` for codes of another shape, a dtype that is not a
        real number or values that are not finite, and :class:`~genreg.errors.ConditionError` (a conditional
        model given no condition, say).
        """
        z, batched = self.codes(z)
        images = self.out_of_model(self._decode(z, self.given(condition, len(z))), units)
        return images if batched else images[0]

    def _decode(self, z: torch.Tensor, condition: dict | None, observed: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's mean for codes z; ``observed``: samples reconstructed (see ``likelihood_mean``)."""
        return likelihood_mean(self.losses, self.decoder(z, self.condition(condition)).float(), observed)

    @torch.no_grad()
    def sample(
        self,
        n: int | None = None,
        labels: Labels | None = None,
        condition: Given | None = None,
        *,
        units: Units = "data",
    ) -> torch.Tensor:
        """Decode draws z ~ p(z) (the latent's prior, N(0, I) for the built-ins): samples (n, *sample shape), as
        :meth:`decode` gives them (images (n, C, H, W) in [0, 1], or vectors (n, F) in the data's ``units``).

        A conditional model needs a condition (see :meth:`given`): one value per image sets n,
        one value for all takes n from ``n`` (1 without it). ``labels`` (classes as the data holds them: an int
        or a string, a list or an array; a tensor holds class indices) is short for ``condition={"label": labels}``.
        Raises
        ``ValueError`` without n, labels or a condition, or for an n that is not an integer >= 0,
        and :class:`~genreg.errors.ConditionError` for a condition the model cannot take.
        """
        if labels is not None:
            condition = {LABEL: labels, **({} if condition is None else self._columns_given(condition))}
        if n is None and condition is None:
            raise ValueError("pass n (number of images), labels or a condition.")
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0):
            raise ValueError(f"n is the number of images, an integer >= 0; got {n!r}.")
        given = self.given(condition, None if n is None else int(n))
        n = len(next(iter(given.values()))) if given is not None else int(n)
        return self.out_of_model(self._decode(self.latent.sample_prior(n, self.device), given), units)

    @torch.no_grad()
    def reconstruct(self, x: Images, condition: Given | None = None, *, units: Units = "data") -> torch.Tensor:
        """x (B, C, H, W) or (B, F), or one sample, -> the decoding (see :meth:`decode`) of each sample's posterior
        mean, of x's shape, in x's ``units`` (a count likelihood's for each row's own total count, as scVI does).
        ``x`` and ``condition`` are what :meth:`encode` takes; it raises what :meth:`encode` raises."""
        x, batched = self.images(x, units)
        given = self.given(condition, len(x))
        images = self.out_of_model(self._decode(self._encode(x, given), given, x), units)
        return images if batched else images[0]

    def images(self, x: Images, units: Units = "data") -> tuple[torch.Tensor, bool]:
        """``x`` as this model's input (see :func:`~genreg.model.inputs.as_images`), in the model's units (the
        dataset's ``transform`` applied to samples in the data's ``units``), and whether it had the batch axis."""
        x = inputs.frame_values(x, self.data_info.features)  # a DataFrame's columns by name
        x, batched = inputs.as_images(x, self.data_info.image_shape, self.device, next(self.parameters()).dtype)
        return (self.into_model(x) if units == "data" else x), batched

    def into_model(self, x: torch.Tensor) -> torch.Tensor:
        """Samples (B, *sample shape) in the data's units -> the model's: the dataset's ``transform`` (see
        :mod:`genreg.data.transforms`) applied, or ``x`` itself without one. Raises
        :class:`~genreg.errors.InputError` for values the transform cannot take (log1p of a value <= -1)."""
        transform = self.data_info.transform
        return x if transform is None else transform.apply(x, "x", InputError).to(x.dtype)

    def out_of_model(self, x: torch.Tensor, units: Units = "data") -> torch.Tensor:
        """Samples (B, *sample shape) in the model's units -> the data's (``units="data"``, the dataset's
        ``transform`` inverted), or ``x`` itself for ``units="model"`` or a model without a transform."""
        transform = self.data_info.transform
        return x if transform is None or units == "model" else transform.invert(x)

    def codes(self, z: Codes) -> tuple[torch.Tensor, bool]:
        """``z`` as this model's latent codes (see :func:`~genreg.model.inputs.as_codes`), and whether it had the
        batch axis."""
        return inputs.as_codes(z, int(self.latent.dim), self.device, next(self.parameters()).dtype)

    def given(self, condition: Given | None, n: int | None) -> dict[str, torch.Tensor] | None:
        """A condition as users hold it, for ``n`` images, as the model reads it: {column: (n,) values} on its
        device, classes as int64 and continuous values as float32; None for an unconditional model.

        ``condition`` is {column: values}, or the values of a model's only column; values are an int or float,
        a list, a numpy array or a tensor, one per image or one for all (``n`` None: as many as the longest
        column gives). Raises :class:`~genreg.errors.ConditionError` for a conditional model given none, an
        unconditional one given one, a column it does not read, a class it does not know, a NaN, a complex
        or boolean value, or a number of values that is neither 1 nor ``n``.
        """
        if self.conditioner is None:
            if condition is not None:
                raise ConditionError("this model is not conditional: it takes no condition (pass None).")
            return None
        if condition is None:
            self.condition(None)  # raises: the model is conditional
        values = inputs.condition_values(inputs.classes_of(self._columns_given(condition), self.data_info), n)
        checked = self.checked(values)
        parts = zip(self.conditioner.columns, self.conditioner.parts, strict=True)
        return {c: checked[c].float() if is_continuous(part) else checked[c].long() for c, part in parts}

    def _columns_given(self, condition: Given) -> Mapping[str, object]:
        """``condition`` as {column: values}: a bare value is the model's only column's."""
        if isinstance(condition, Mapping):
            return condition
        if len(self.conditioner.columns) > 1:
            raise ConditionError(
                f"this model has several conditions ({', '.join(self.conditioner.columns)}): pass a dict "
                "{column: values}."
            )
        return {self.conditioner.columns[0]: condition}

    @torch.no_grad()
    def transfer(
        self, x: torch.Tensor, condition: Condition, targets: Condition, *, units: Units = "data"
    ) -> torch.Tensor:
        """Counterfactual decoding: each image's latent code decoded under every target condition.

        Image i is encoded with its own condition to its posterior mean z_i; the result's
        row i, shape (T, *image_shape), decodes that same z_i under each of the T targets,
        so what the latent code carries (the writing style) stays and the condition
        changes. ``targets`` is a tensor of T classes, or {column: T values} for the
        columns to change; the columns it leaves out keep each image's own values. ``x``
        and the result are in the same ``units``.
        """
        if self.conditioner is None:
            raise ConditionError("this model is not conditional: it takes no condition.")
        own = self.conditioner.columns_of(condition, self.device)
        if not isinstance(targets, Mapping):
            targets = {LABEL: torch.as_tensor(targets)}
        targets = {column: torch.as_tensor(v).reshape(-1).to(self.device) for column, v in targets.items()}
        unknown = sorted(set(targets) - set(own))
        if unknown:
            raise ConditionError(
                f"cannot transfer to column(s) {', '.join(unknown)}: the model reads {', '.join(own)}."
            )
        count = len(next(iter(targets.values())))
        z = self._encode(self.images(x, units)[0], own)
        decoded_under = {
            column: targets[column].repeat(len(z)) if column in targets else values.repeat_interleave(count)
            for column, values in own.items()
        }
        decoded = self._decode(z.repeat_interleave(count, dim=0), self.checked(decoded_under))
        return self.out_of_model(decoded, units).view(len(z), count, *decoded.shape[1:])

    def checked(self, condition: Condition) -> dict[str, torch.Tensor]:
        """``condition`` as {column: values} on the model's device, each value one the model knows."""
        if self.conditioner is None:
            raise ConditionError("this model is not conditional: it takes no condition.")
        values = self.conditioner.columns_of(condition, self.device)
        self.conditioner.check(values)
        return values

    def _check_losses(self) -> None:
        names = self.loss_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise AssemblyError(f"loss terms must have distinct names; repeated: {', '.join(dupes)}. Set 'name'.")
        provided = set(getattr(self.latent, "provides", ()))
        for term in self.losses:
            missing = set(term.requires) - provided
            if missing:
                raise AssemblyError(
                    f"loss term '{term.config.metric_name}' needs {sorted(missing)} from the latent, but "
                    f"{describe(self.latent)} provides {sorted(provided) or 'nothing'}; "
                    "use a latent that provides them (e.g. 'gaussian') or drop the term."
                )

    def _check_shapes(self) -> None:
        """Run two dummy images through the parts, naming the part that fails or whose output is off."""
        shape = self.data_info.image_shape
        maps = parameter_maps(self.losses)
        with self.evaluating(), torch.no_grad():
            x = torch.zeros(2, *shape, device=self.device)
            c = None
            if self.conditioner is not None:
                for part in self.conditioner.parts:
                    dtype = torch.float32 if is_continuous(part) else torch.long
                    values = torch.zeros(2, dtype=dtype, device=self.device)
                    _expect(part, _trial(part, values), (2, part.dim), "condition")
                c = self.condition({column: torch.zeros(2, device=self.device) for column in self.conditioner.columns})
            features = _trial(self.encoder, x, c if self.condition_encoder else None)
            _expect(self.encoder, features, (2, self.encoder.out_features), "features")
            latent = _trial(self.latent, features)
            if not isinstance(latent, LatentSample):
                raise AssemblyError(f"{describe(self.latent)} must return a genreg.LatentSample.")
            _expect(self.latent, latent.z, (2, self.latent.dim), "z")
            what = "logits" if maps == 1 else f"parameters ({maps} maps of the likelihood, stacked along axis 1)"
            _expect(self.decoder, _trial(self.decoder, latent.z, c), (2, *decoder_output_shape(shape, maps)), what)


def _trial(part: nn.Module, *inputs: object) -> object:
    """``part(*inputs)`` on a dummy batch; a part that raises is named, rather than shown as a traceback."""
    try:
        return part(*inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin's forward on a well-formed batch
        shapes = ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else "None" for t in inputs)
        raise AssemblyError(
            f"{describe(part)} failed on a batch of 2 with input shapes {shapes}: {type(exc).__name__}: {exc}"
        ) from exc


def _expect(part: nn.Module, value: object, shape: tuple[int, ...], what: str) -> None:
    got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
    if got != tuple(shape):
        raise AssemblyError(f"{describe(part)} returned {what} of shape {got}; expected {tuple(shape)}.")


def describe(part: nn.Module) -> str:
    """``encoder 'mlp' (plugin 'builtin')`` for a registered part, else its class name."""
    entry = getattr(part, "genreg_entry", None)
    if entry is None:
        return f"component {type(part).__name__}"
    return f"{entry.kind} '{entry.name}' (plugin '{entry.plugin}')"
