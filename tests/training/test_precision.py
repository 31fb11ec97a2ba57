"""Tests genreg/training/precision.py: ``train.precision: auto`` is bf16 autocast on a CPU with native bf16 matrix
instructions and fp32 on one without (each branch forced, whatever CPU runs the tests); the run says which and
why; on the bf16 path the weights, the optimiser's state and the losses stay fp32, a run resumes bit-exactly and a
non-finite loss is caught, as on fp32 (DDP on both: tests/training/test_distributed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import genreg
from genreg.errors import NonFiniteLossError
from genreg.files.run_folder import RunFolder
from genreg.training import precision
from genreg.training.optim import make_optimizer
from genreg.training.steps import make_steps
from tests.helpers import run_cli, small_data, spec_file

MLP = {"type": "mlp", "hidden": [32]}
VAE = {"type": "vae", "latent_dim": 3, "encoder": MLP, "decoder": MLP}
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("capabilities", "bf16", "said"),
    [
        ({"avx512_f": True, "avx512_bf16": True}, True, "this CPU has AVX512-BF16"),
        ({"amx_tile": True, "amx_bf16": True, "avx512_bf16": True}, True, "this CPU has AMX-BF16 and AVX512-BF16"),
        ({"avx512_f": True, "avx512_bf16": False}, False, "this CPU has neither AVX512-BF16 nor AMX-BF16"),
        ({"avx2": True}, False, "neither AVX512-BF16 nor AMX-BF16"),
        ({}, False, "neither AVX512-BF16 nor AMX-BF16"),
    ],
)
def test_auto_is_bf16_exactly_where_the_cpu_multiplies_bf16_natively(cpu_has, capabilities, bf16, said) -> None:
    cpu_has(**capabilities)
    chosen = precision.choose("auto", CPU)
    assert chosen.bf16 is bf16
    assert said in chosen.reason
    assert chosen.describe().startswith("bf16 autocast (" if bf16 else "fp32 (")


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_precision_is_kept_whatever_the_cpu(cpu_has, setting: str, native: bool) -> None:
    cpu_has(avx512_bf16=native)
    chosen = precision.choose(setting, CPU)
    assert chosen.name == setting and chosen.reason.startswith(f"train.precision {setting}")
    emulated = setting == "bf16" and not native  # asked for, and slower than fp32 here: the run says so
    assert ("bf16 is emulated, slower than fp32" in chosen.reason) is emulated


@pytest.mark.parametrize("variable", ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"])
def test_onednn_capped_below_bf16_keeps_fp32_and_says_why(cpu_has, monkeypatch, variable: str) -> None:
    """oneDNN runs torch's bf16 products on a CPU: capped to AVX2 it emulates them, about 10x slower than fp32."""
    monkeypatch.setenv(variable, "avx2")
    cpu_has(avx512_bf16=True)
    chosen = precision.choose("auto", CPU)
    assert not chosen.bf16
    assert chosen.reason == f"precision auto: {variable}=AVX2 keeps oneDNN below this CPU's bf16 instructions"
    monkeypatch.setenv(variable, "AVX512_CORE_BF16")
    cpu_has(avx512_bf16=True)
    assert precision.choose("auto", CPU).bf16


def test_without_torchs_cpuinfo_the_flags_of_proc_cpuinfo_are_read(monkeypatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n")
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    precision.cpu_bf16_instructions.cache_clear()
    try:
        assert precision.cpu_bf16_instructions() == "AVX512-BF16"
        cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
        precision.cpu_bf16_instructions.cache_clear()
        assert precision.cpu_bf16_instructions() == ""
        monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")  # not Linux: no flags, so fp32
        precision.cpu_bf16_instructions.cache_clear()
        assert not precision.choose("auto", CPU).bf16
    finally:
        precision.cpu_bf16_instructions.cache_clear()


def trained(setting: str, epochs: int = 2, run_dir: Path | None = None, resume: bool = False) -> dict:
    torch.manual_seed(0)
    data = small_data(256)
    model = genreg.build_model(VAE, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=64, device="cpu", precision=setting)
    genreg.train(model, data, config, seed=0, progress=False, run_dir=run_dir, resume=resume)
    return model.state_dict()


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("native", [True, False])
def test_auto_trains_exactly_as_the_precision_it_chooses(cpu_has, native: bool) -> None:
    """Both branches forced on any CPU: auto gives bit for bit the weights of the setting it chose."""
    cpu_has(avx512_bf16=native)
    assert_same(trained("auto"), trained("bf16" if native else "fp32"))


def test_bf16_autocast_changes_the_matrix_products_but_keeps_weights_state_and_losses_fp32() -> None:
    torch.manual_seed(0)
    data = small_data(256)
    model = genreg.build_model(VAE, data.info)
    config = genreg.TrainConfig(epochs=1, batch_size=64, device="cpu", precision="bf16")
    optimizer = make_optimizer(model, config, CPU)
    steps = make_steps(model, optimizer, data.train, config, data.binarize)
    sums = steps.epoch(torch.randperm(256), torch.ones(steps.count, 2), on_step=lambda s: None)
    assert sums.dtype == torch.float32 and torch.isfinite(sums).all()
    assert all(p.dtype == torch.float32 and p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    state = [t for s in optimizer.state.values() for t in s.values() if t.is_floating_point()]
    assert state and all(t.dtype == torch.float32 for t in state)
    with torch.no_grad(), precision.choose("bf16", CPU).autocast(CPU):
        out = model(data.test.images[:8])
        losses = model.term_means(data.test.images[:8])
    assert out.logits.dtype == torch.bfloat16  # the products ran in bf16 ...
    assert losses.dtype == torch.float32  # ... the loss terms and the KL did not
    bf16, fp32 = trained("bf16"), trained("fp32")
    assert not all(torch.equal(bf16[key], fp32[key]) for key in bf16)


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
def test_a_resumed_run_ends_with_the_weights_of_one_never_stopped(tmp_path: Path, setting: str) -> None:
    whole = trained(setting, epochs=3)
    trained(setting, epochs=2, run_dir=tmp_path)
    assert_same(trained(setting, epochs=3, run_dir=tmp_path, resume=True), whole)


@pytest.mark.parametrize("setting", ["fp32", "bf16"])
def test_a_non_finite_loss_is_caught_in_either_precision(setting: str) -> None:
    data = small_data(256)
    model = genreg.build_model(VAE, data.info)
    config = genreg.TrainConfig(epochs=2, batch_size=64, lr=1e12, device="cpu", precision=setting)
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d, step \d+ \(.*= (nan|inf)"):
        genreg.train(model, data, config, progress=False)


@pytest.mark.parametrize(("native", "said"), [(True, "bf16 autocast (precision auto: this CPU has"), (False, "fp32 (")])
def test_the_run_says_which_precision_it_trains_in_and_why(cpu_has, tmp_path: Path, native: bool, said: str) -> None:
    cpu_has(avx512_bf16=native)
    spec = spec_file(tmp_path, {"type": "mnist-sample"}, {**VAE, "latent_dim": 2})
    output = run_cli("run", spec, "--out", tmp_path / "run", "--set", "train.epochs=1")
    line = next(line for line in output.splitlines() if line.startswith("training on cpu: "))
    assert said in line
    assert RunFolder(tmp_path / "run").read_metrics()[0]["precision"] == ("bf16" if native else "fp32")
    quiet = run_cli("run", spec, "--out", tmp_path / "quiet", "--set", "train.epochs=1", "--quiet")
    assert "training on" not in quiet
    result = genreg.run(genreg.load_spec(str(spec), ["train.epochs=1"]), tmp_path / "py", progress=False)
    assert result.precision.startswith(said)
