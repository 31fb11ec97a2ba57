"""genreg's built-in components, registered through the ``genreg`` entry point
exactly as a third-party plugin registers its own (see docs/plugins.md)."""

from __future__ import annotations

import genreg
from genreg.model.assembly import ComposedModelConfig, compose_model
from genreg_builtin import (
    callbacks,
    cells,
    conditioners,
    conv,
    counts,
    datasets,
    h5ad,
    latents,
    losses,
    mlp,
    recipes,
    schedules,
    simulation,
    tables,
    trackers,
)


@genreg.hookimpl
def register_components(register):
    register("conditioner", "onehot", conditioners.OneHot, conditioners.OneHotConfig)
    register("conditioner", "embedding", conditioners.Embedding, conditioners.EmbeddingConfig)
    register("conditioner", "continuous", conditioners.Continuous, conditioners.ContinuousConfig)
    register("encoder", "mlp", mlp.MLPEncoder, mlp.MLPEncoderConfig)
    register("encoder", "conv", conv.ConvEncoder, conv.ConvEncoderConfig)
    register("decoder", "mlp", mlp.MLPDecoder, mlp.MLPDecoderConfig)
    register("decoder", "conv", conv.ConvDecoder, conv.ConvDecoderConfig)
    register("latent", "deterministic", latents.DeterministicLatent, latents.DeterministicConfig)
    register("latent", "gaussian", latents.GaussianLatent, latents.GaussianConfig)
    register("loss", "bce", losses.BCE, losses.BCEConfig)
    register("loss", "bernoulli", losses.BCE, losses.BCEConfig)
    register("loss", "gaussian", losses.Gaussian, losses.GaussianConfig)
    register("loss", "mse", losses.MSE, losses.MSEConfig)
    register("loss", "kld", losses.KLD, losses.KLDConfig)
    register("loss", "poisson", counts.Poisson, counts.PoissonConfig)
    register("loss", "negative-binomial", counts.NegativeBinomialTerm, counts.NegativeBinomialConfig)
    register("loss", "zero-inflated-negative-binomial", counts.ZINB, counts.ZINBConfig)
    register("dataset", "mnist-sample", datasets.load_mnist_sample, datasets.MnistSampleConfig)
    register("dataset", "mnist", datasets.load_mnist, datasets.MNISTConfig)
    register("dataset", "fashion-mnist", datasets.load_fashion_mnist, datasets.FashionMNISTConfig)
    register("dataset", "npz", datasets.load_npz, datasets.NpzConfig)
    register("dataset", "pbmc-sample", cells.load_pbmc_sample, cells.PbmcSampleConfig)
    register("dataset", "table", tables.load_table, tables.TableConfig)
    register("dataset", "anndata", h5ad.load_anndata, h5ad.AnnDataConfig)
    register("dataset", "simulated-counts", simulation.load_simulated_counts, simulation.SimulatedCountsConfig)
    register("model", "ae", compose_model, recipes.AEConfig)
    register("model", "vae", compose_model, recipes.VAEConfig)
    register("model", "cvae", compose_model, recipes.CVAEConfig)
    register("model", "custom", compose_model, ComposedModelConfig)
    register("schedule", "linear", schedules.Linear, schedules.LinearConfig)
    register("schedule", "warmup", schedules.Linear, schedules.LinearConfig)  # the name learning rates knew it by
    register("schedule", "cyclical", schedules.Cyclical, schedules.CyclicalConfig)
    register("schedule", "cosine", schedules.Cosine, schedules.CosineConfig)
    register("schedule", "step", schedules.StepDecay, schedules.StepConfig)
    register("schedule", "one-cycle", schedules.OneCycle, schedules.OneCycleConfig)
    register("callback", "early-stopping", callbacks.EarlyStopping, callbacks.EarlyStoppingConfig)
    register("callback", "best-checkpoint", callbacks.BestCheckpoint, callbacks.BestCheckpointConfig)
    register("callback", "tensorboard", trackers.TensorBoard, trackers.TensorBoardConfig)
    register("callback", "mlflow", trackers.MLflow, trackers.MLflowConfig)
