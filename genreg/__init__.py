"""genreg: autoencoders, VAEs and conditional VAEs from specs, Python or plugins.

Python users::

    import genreg
    spec = genreg.load_spec("examples/cvae.json", ["train.epochs=3"])
    result = genreg.run(spec, "runs/cvae")
    model = genreg.load_model("runs/cvae/model.safetensors")
    images = model.sample(labels=[3, 3, 7])
"""

from genreg.assembly import ComposedModelConfig, build_model, compose_model, derive_spec
from genreg.callbacks import EveryEpoch, RunView
from genreg.checkpoint import load_model, load_weights, save_model
from genreg.data import DataInfo, DatasetConfig, DataSplits, Split
from genreg.errors import GenregError, SpecError, SpecWarning
from genreg.extend import extend_classes, fine_tune_classes, read_extension, save_extended
from genreg.hookspecs import hookimpl
from genreg.losses import Cyclical, LinearWarmup, LossTermConfig
from genreg.model import GenerativeModel
from genreg.plugins import get_registry, register_plugin, unregister_plugin
from genreg.protocols import LatentSample, ModelOutput
from genreg.run import load_data, run
from genreg.spec import Part, TrainConfig, json_schema, load_spec, validate_spec
from genreg.trainer import evaluate, train
from genreg.version import __version__


def list_components(kind: str | None = None, pattern: str = "*") -> list[str]:
    """Sorted ``kind:name`` of registered components, filtered by a shell-style pattern."""
    return [f"{e.kind}:{e.name}" for e in get_registry().entries(kind, pattern)]


__all__ = [
    "ComposedModelConfig",
    "Cyclical",
    "DataInfo",
    "DataSplits",
    "DatasetConfig",
    "EveryEpoch",
    "GenerativeModel",
    "GenregError",
    "LatentSample",
    "LinearWarmup",
    "LossTermConfig",
    "ModelOutput",
    "Part",
    "RunView",
    "Split",
    "SpecError",
    "SpecWarning",
    "TrainConfig",
    "__version__",
    "build_model",
    "compose_model",
    "derive_spec",
    "evaluate",
    "extend_classes",
    "fine_tune_classes",
    "get_registry",
    "hookimpl",
    "json_schema",
    "list_components",
    "load_data",
    "load_model",
    "load_spec",
    "load_weights",
    "read_extension",
    "register_plugin",
    "run",
    "save_extended",
    "save_model",
    "train",
    "unregister_plugin",
    "validate_spec",
]
