"""The spec: config classes (:mod:`~genreg.spec.parts`, :mod:`~genreg.spec.train`), the pydantic models built
from the registry (:mod:`~genreg.spec.builder`), error paths (:mod:`~genreg.spec.paths`), spec files and
``--set`` overrides (:mod:`~genreg.spec.overrides`), and validation (:mod:`~genreg.spec.validate`).
"""

from genreg.spec.overrides import apply_overrides, read_json
from genreg.spec.parts import OneOrMore, Part, PartOf, StrictModel
from genreg.spec.train import TrainConfig
from genreg.spec.validate import build_part, json_schema, load_spec, validate_part, validate_spec

__all__ = [
    "OneOrMore",
    "Part",
    "PartOf",
    "StrictModel",
    "TrainConfig",
    "apply_overrides",
    "build_part",
    "json_schema",
    "load_spec",
    "read_json",
    "validate_part",
    "validate_spec",
]
