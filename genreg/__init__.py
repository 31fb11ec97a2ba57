"""genreg: autoencoders, VAEs and conditional VAEs from specs, Python or plugins.

Python users::

    import genreg
    spec = genreg.load_spec("examples/cvae.json", ["train.epochs=3"])
    result = genreg.run(spec, "runs/cvae")
    model = genreg.load_model("runs/cvae/model.safetensors")
    images = model.sample(labels=[3, 3, 7])

The names below are imported on first use (so ``import genreg`` is instant); the
package's map is in DEVELOPERS.md.
"""

from genreg.lazy import lazy_exports
from genreg.version import __version__

_WHERE = {
    "ComposedModelConfig": "genreg.model.assembly",
    "build_model": "genreg.model.assembly",
    "posterior_of": "genreg.data.new_data",
    "read_new_data": "genreg.data.new_data",
    "compose_model": "genreg.model.assembly",
    "derive_spec": "genreg.model.assembly",
    "GenerativeModel": "genreg.model.generative",
    "LossTermConfig": "genreg.model.losses",
    "extend_classes": "genreg.model.extend",
    "fine_tune_classes": "genreg.model.extend",
    "read_extension": "genreg.model.extend",
    "save_extended": "genreg.model.extend",
    "DataInfo": "genreg.data.splits",
    "DataSplits": "genreg.data.splits",
    "DatasetConfig": "genreg.data.splits",
    "Split": "genreg.data.splits",
    "load_data": "genreg.data.loading",
    "GenregError": "genreg.errors",
    "SpecError": "genreg.errors",
    "SpecWarning": "genreg.errors",
    "InputError": "genreg.errors",
    "hookimpl": "genreg.plugin.hookspecs",
    "get_registry": "genreg.plugin.manager",
    "list_components": "genreg.plugin.manager",
    "register_plugin": "genreg.plugin.manager",
    "unregister_plugin": "genreg.plugin.manager",
    "LatentSample": "genreg.plugin.protocols",
    "ModelOutput": "genreg.plugin.protocols",
    "OneOrMore": "genreg.spec.parts",
    "Part": "genreg.spec.parts",
    "TrainConfig": "genreg.spec.train",
    "json_schema": "genreg.spec.validate",
    "load_spec": "genreg.spec.validate",
    "validate_spec": "genreg.spec.validate",
    "load_model": "genreg.files.model_files",
    "load_weights": "genreg.files.model_files",
    "save_model": "genreg.files.model_files",
    "RunFolder": "genreg.files.run_folder",
    "EveryEpoch": "genreg.training.callbacks",
    "RunView": "genreg.training.callbacks",
    "check_metric": "genreg.training.callbacks",
    "TrainResult": "genreg.training.loop",
    "average_losses": "genreg.training.loop",
    "train": "genreg.training.loop",
    "RunResult": "genreg.training.runner",
    "run": "genreg.training.runner",
    "evaluate_model": "genreg.evaluation.evaluate",
}
__all__ = ["__version__", *sorted(_WHERE)]
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
