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


def test_a_part_too_large_to_allocate_is_an_assembly_error_naming_it():
    """A size that validates (any positive int) but cannot be allocated: no traceback, the part named."""
    with pytest.raises(AssemblyError, match=r"latent 'gaussian' \(plugin 'builtin'\) is too large to build here: .*"
                       r"Make it smaller"):  # fmt: skip
        genreg.build_model({"type": "vae", "latent_dim": 10**12}, INFO)
