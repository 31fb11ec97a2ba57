"""Data: splits held as tensors (:mod:`~genreg.data.splits`), the checks that make them
(:mod:`~genreg.data.checks`) and loading the dataset a spec names (:mod:`~genreg.data.loading`).

A dataset plugin builds its splits with ``genreg.data.as_split`` and ``genreg.data.finish``.
"""

from genreg.lazy import lazy_exports

__all__ = [
    "LABEL",
    "DataInfo",
    "DataSplits",
    "DatasetConfig",
    "Split",
    "as_split",
    "column_classes",
    "finish",
    "fixed_binarization",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LABEL": "genreg.data.columns",
        **dict.fromkeys(["as_split", "finish"], "genreg.data.checks"),
        **dict.fromkeys(
            ["DataInfo", "DataSplits", "DatasetConfig", "Split", "column_classes", "fixed_binarization"],
            "genreg.data.splits",
        ),
    },
)
