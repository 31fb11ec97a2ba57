"""Tests genreg/plugin/registry.py: names by kind and pattern, an unknown name answered with the closest
registered one, and a part too large to build named with its plugin."""

from __future__ import annotations

import pytest

import genreg
from genreg.errors import AssemblyError, UnknownComponentError
from tests.helpers import EXAMPLE_SPEC, assert_user_error, invoke, needs_example_plugin

INFO = genreg.DataInfo((1, 8, 8), 3)


@needs_example_plugin
def test_names_match_a_pattern_sorted():
    registry = genreg.get_registry()
    assert registry.names("model", "*vae*") == ["cvae", "vae"]
    conditioners = registry.names("conditioner")
    assert conditioners == sorted(conditioners) and {"onehot", "thermometer"} <= set(conditioners)
    assert registry.names("conditioner", "x*") == []


@needs_example_plugin
def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownComponentError) as info:
        genreg.get_registry().get("conditioner", "thermometr")
    message = str(info.value)
    assert "unknown conditioner 'thermometr'" in message
    assert "Did you mean 'thermometer'?" in message
    assert f"Registered conditioners: {', '.join(genreg.get_registry().names('conditioner'))}." in message


@needs_example_plugin
def test_cli_unknown_name_exits_2_with_a_suggestion():
    result = invoke("validate", str(EXAMPLE_SPEC), "--set", "model.conditioner.type=thermometr")
    assert_user_error(
        result,
        "model.conditioner: unknown conditioner 'thermometr'. Did you mean 'thermometer'?",
    )


def test_a_part_too_large_to_allocate_is_refused_before_it_is_allocated():
    """A size that validates (any positive int) but cannot be allocated: measured on the meta device, refused
    naming the part, its size (2 PB: 10**12 latent units need 10**12 x 512 weights) and the limit; no
    allocation is tried, so no allocator's message is matched."""
    with pytest.raises(AssemblyError) as caught:
        genreg.build_model({"type": "vae", "latent_dim": 10**12}, INFO)
    message = str(caught.value)
    assert message.startswith("latent 'gaussian' (plugin 'builtin') needs about ")
    assert "needs about 2,056.0 TB of memory, but only " in message and "make it smaller (e.g. latent_dim" in message
