"""Tests genreg/model/inputs.py: what a trained model's methods take from users (issue 16, case 11). Images as
numpy or torch, uint8 0..255 or floats in [0, 1], with or without the batch axis, become the model's input;
anything else is refused with one message that names what was given and what would be valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genreg.errors import ConditionError, GenregError, InputError
from genreg.model.inputs import as_codes, as_images, condition_values

SHAPE = (1, 6, 6)
PIXELS = np.random.default_rng(0).integers(0, 256, (4, *SHAPE), dtype=np.uint8)
X = torch.from_numpy(PIXELS).float() / 255  # what genreg's datasets hold: float32 in [0, 1]


@pytest.mark.parametrize(
    "held",
    [PIXELS, torch.from_numpy(PIXELS), X.double(), X.numpy(), X.double().numpy(), X.numpy()[:, :, ::-1, :]],
    ids=["uint8 array", "uint8 tensor", "float64 tensor", "float32 array", "float64 array", "reversed strides"],
)
def test_images_as_users_hold_them_become_the_models_input(held) -> None:
    x, batched = as_images(held, SHAPE)
    expected = X.flip(2) if isinstance(held, np.ndarray) and held.strides[2] < 0 else X
    assert batched and x.dtype == torch.float32 and torch.equal(x, expected)
    one, batched = as_images(held[0], SHAPE)
    assert not batched and one.shape == (1, *SHAPE) and torch.equal(one[0], expected[0])


@pytest.mark.parametrize(
    ("held", "says"),
    [
        (
            X[:, 0],
            r"x has shape \(4, 6, 6\); this model takes images of shape \(C, H, W\) = \(1, 6, 6\), one, or a "
            r"batch \(B, 1, 6, 6\)\.",
        ),
        (X.permute(0, 2, 3, 1), r"x has shape \(4, 6, 6, 1\); .* \(C, H, W\) = \(1, 6, 6\)"),
        (torch.rand(2, 1, 28, 28), r"x has shape \(2, 1, 28, 28\); .* = \(1, 6, 6\)"),
        (X * 255, r"x holds values in \[0, 249\]; float images must lie in \[0, 1\] \(divide values of 0..255 by"),
        (X - 0.5, r"x holds values in \[-0.5, 0.476\]"),
        (
            X.clone().index_put_((torch.tensor(0),), torch.tensor(float("nan"))),
            r"x holds NaN values; float images must be finite",
        ),
        (X.clone().index_put_((torch.tensor(1),), torch.tensor(float("inf"))), r"x holds values in \[0, inf\]"),
        (X > 0.5, r"x has dtype torch.bool; give images as uint8 \(0..255\) or floats in \[0, 1\]\.$"),
        (torch.from_numpy(PIXELS).long(), r"dtype torch.int64; .* \(whole numbers 0..255: convert them to uint8\)"),
        (X.to(torch.complex64), r"x has dtype torch.complex64; give images as uint8"),
        (np.array([["a"]]), r"x must be a tensor or array of numbers; got ndarray"),
        ("image.png", r"x must be a tensor or array of numbers; got str"),
    ],
    ids=[
        "no channel axis",
        "channels last",
        "another size",
        "0..255 floats",
        "centred",
        "NaN",
        "infinite",
        "bool",
        "int64",
        "complex",
        "strings",
        "a file name",
    ],
)
def test_other_images_are_refused_saying_what_was_given(held, says) -> None:
    with pytest.raises(InputError, match=says) as caught:
        as_images(held, SHAPE)
    assert isinstance(caught.value, GenregError) and isinstance(caught.value, ValueError)


def test_latent_codes_take_any_real_numbers_and_refuse_the_rest() -> None:
    z, batched = as_codes(np.arange(6, dtype=np.int64).reshape(3, 2), 2)
    assert batched and z.dtype == torch.float32 and z.tolist() == [[0, 1], [2, 3], [4, 5]]
    one, batched = as_codes([0.5, -1.0], 2)
    assert not batched and one.tolist() == [[0.5, -1.0]]
    with pytest.raises(
        InputError,
        match=r"z has shape \(3,\); this model takes latent codes of shape \(latent_dim,\) "
        r"= \(2,\), one, or a batch \(B, 2\)",
    ):
        as_codes(torch.zeros(3), 2)
    with pytest.raises(InputError, match=r"z holds NaN or infinite values"):
        as_codes(torch.tensor([0.0, float("inf")]), 2)
    with pytest.raises(InputError, match=r"z has dtype torch.bool; latent codes are real numbers"):
        as_codes(torch.ones(2, dtype=torch.bool), 2)


def test_condition_values_repeat_one_value_and_refuse_other_lengths() -> None:
    values = condition_values({"label": 3, "ink": np.array([0.1, 0.2])}, None)
    assert values["label"].tolist() == [3, 3] and values["ink"].tolist() == pytest.approx([0.1, 0.2])
    assert condition_values({"label": [1]}, 4)["label"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ConditionError, match=r"column 'label' of the condition has 2 values for 3 images; give one"):
        condition_values({"label": [0, 1]}, 3)
    with pytest.raises(ConditionError, match=r"column 'label' of the condition has dtype torch.bool; give numbers"):
        condition_values({"label": [True, False]}, 2)
    with pytest.raises(ConditionError, match=r"column 'label' of the condition must be a tensor or array of numbers"):
        condition_values({"label": ["seven"]}, 1)
