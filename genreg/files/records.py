"""What a model file records besides its weights, validated before anything is built from it: the data
description (``genreg.data``) and the bounds of the sizes a spec may hold."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

MAX_SIZE = 2**31  # no size a model file records (a dimension, a number of classes, an image's values) is larger

_Size = Annotated[int, Field(strict=True, ge=1, le=MAX_SIZE)]
_Classes = Annotated[int, Field(strict=True, ge=0, le=MAX_SIZE)]  # 0: a continuous column


_Number = Annotated[float, Field(allow_inf_nan=False)]


class RecordedStep(BaseModel):
    """One fitted step of a recorded transform (:meth:`~genreg.data.transforms.Transform.to_json`)."""

    step: Literal["log1p", "standardize", "minmax"]
    shift: list[_Number] | None = None
    scale: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None

    @model_validator(mode="after")
    def _fitted(self) -> RecordedStep:
        if (self.shift is None) != (self.step == "log1p") or (self.shift is None) != (self.scale is None):
            raise ValueError(f"step '{self.step}' records a shift and a scale per feature exactly when it is fitted")
        return self


class RecordedData(BaseModel):
    """A model file's ``genreg.data`` record (:meth:`DataInfo.to_json`), validated before anything is built."""

    image_shape: list[_Size] = Field(min_length=1, max_length=3, description="(C, H, W) images or (F,) vectors")
    num_classes: _Classes
    columns: dict[str, _Classes] = {}
    absent: dict[str, list[Annotated[int, Field(strict=True, ge=0, le=MAX_SIZE)]]] = {}  # classes with no rows
    vocabularies: dict[str, list[Annotated[str, Field(max_length=1000)] | Annotated[int, Field(strict=True)]]] = {}
    features: list[Annotated[str, Field(max_length=1000)]] | None = None
    labelled: bool = True
    transform: list[RecordedStep] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RecordedData:
        """Each vocabulary names its column's classes, features and fitted steps one per feature."""
        for column, values in self.vocabularies.items():
            count = self.num_classes if column == "label" else self.columns.get(column)
            if count != len(values) or len(set(values)) != len(values):
                raise ValueError(f"the vocabulary of column '{column}' does not hold its {count} classes once each")
        width = self.image_shape[0]
        if self.features is not None and (len(self.image_shape) != 1 or len(self.features) != width):
            raise ValueError(f"{len(self.features)} feature names for samples of shape {self.image_shape}")
        for step in self.transform or []:
            if len(self.image_shape) != 1 or (step.shift is not None and len(step.shift) != width):
                raise ValueError(f"transform step '{step.step}' does not fit samples of shape {self.image_shape}")
        return self

    @field_validator("image_shape")
    @classmethod
    def _bounded(cls, shape: list[int]) -> list[int]:
        if len(shape) == 2:
            raise ValueError(f"a sample is an image (C, H, W) or a vector (F,), not {shape}")
        if math.prod(shape) > MAX_SIZE:
            raise ValueError(f"an image of {shape} holds over 2**31 values")
        return shape


def oversized(model_spec: dict) -> str:
    """``model.<key> = <value>`` for the first integer of a model spec beyond :data:`MAX_SIZE`, else ``""``."""
    stack: list[tuple[Any, str]] = [(model_spec, "model")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_SIZE:
            return f"{where} = {node}"
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend((item, f"{where}.{key}") for key, item in items)
    return ""
