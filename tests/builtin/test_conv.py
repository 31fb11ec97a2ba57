"""Tests plugins/genreg_builtin/conv.py: the conv encoder and decoder have the documented shapes for any image
size and depend on the condition; too many layers for an image is an assembly error.

Where the condition enters (``condition: every-layer``, code shared with mlp.py) is tested for both parts in
tests/builtin/test_mlp.py."""

from __future__ import annotations

import pytest
import torch

import genreg
from genreg.errors import AssemblyError
from tests.helpers import (
    encoder_and_decoder_tests,
    make_decoder,
    make_encoder,
)

# --------------------------------------------------------------------------- shapes and the condition

# The tests every built-in encoder and decoder pass, written once in tests/helpers.py (test_mlp.py runs them too).
test_encoder_and_decoder_shapes, test_encoder_output_depends_on_condition, test_decoder_output_depends_on_condition = (
    encoder_and_decoder_tests("conv")
)


def test_conv_parts_handle_the_smallest_side_their_depth_allows():
    encoder = make_encoder("conv", (2, 4, 5), 0)  # two halvings: 4 -> 1, 5 -> 1
    decoder = make_decoder("conv", (2, 4, 5), 0)
    assert encoder(torch.rand(2, 2, 4, 5), None).shape == (2, 24)
    assert decoder(torch.randn(2, 5), None).shape == (2, 2, 4, 5)


def test_conv_too_many_layers_for_image_is_an_assembly_error():
    with pytest.raises(AssemblyError, match="too many"):
        genreg.build_model({"type": "vae", "encoder": {"type": "conv"}}, genreg.DataInfo((1, 3, 3), 2))
