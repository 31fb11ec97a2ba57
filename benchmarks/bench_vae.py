"""Speed benchmark: genreg vs a plain PyTorch loop vs pythae on PyTorch's classic MNIST VAE.

    python benchmarks/bench_vae.py [--epochs 4] [--out benchmarks/RESULTS.md]

Task: encoder 784-400-(20, 20), decoder 20-400-784, ReLU, Bernoulli (BCE) reconstruction + KLD,
Adam lr 1e-3, batch 128, on 60,000 MNIST-shaped images (the 4,000 bundled ``mnist-sample``
training digits repeated 15 times); test set: the 1,000 bundled test digits.

Each trainer runs in its own spawned process (so that its peak RSS is its own), and the three
take turns epoch by epoch: the parent tells one process to run one epoch, waits for it, then
tells the next (the order rotates every epoch). Only one trainer computes at any time. The first
epoch is a warm-up; the reported time is the median of the others. After training, each process
reads its peak RSS (``ru_maxrss``) and then, one at a time, estimates the test NLL by IWAE with
genreg's ``likelihood_bounds`` (the peers' trained layers are copied into a genreg model).

The limit: the matmul FLOPs of one batch-128 training step of the plain model (forward and
backward, counted by ``FlopCounterMode``), scaled to 60,000 images, divided by the FLOP/s this
machine achieves replaying exactly those matmuls (same ops, shapes and strides).
"""

from __future__ import annotations

import argparse
import datetime
import math
import multiprocessing as mp
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

import genreg
from genreg.evaluation.metrics import likelihood_bounds

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import plain_loop  # noqa: E402

REPEAT = int(os.environ.get("BENCH_VAE_REPEAT", "15"))  # smaller only for smoke tests
BATCH = 128
LR = 1e-3
LATENT = 20
HIDDEN = 400
SEED = 0
TRAINERS = ("genreg", "genreg-fp32", "plain", "pythae")  # genreg: a spec that sets nothing; -fp32: precision fp32
GENREG_SPEC = {
    "type": "vae",
    "latent_dim": LATENT,
    "encoder": {"type": "mlp", "hidden": [HIDDEN]},
    "decoder": {"type": "mlp", "hidden": [HIDDEN]},
}


# ---------------------------------------------------------------- data and IWAE


def load_data() -> genreg.DataSplits:
    """The bundled 4,000 training digits repeated 15 times (60,000) and the 1,000 test digits."""
    data = genreg.load_data({"type": "mnist-sample"})
    train = genreg.Split(data.train.images.repeat(REPEAT, 1, 1, 1), data.train.labels.repeat(REPEAT))
    return genreg.DataSplits(train, data.test, data.num_classes, data.binarize)


def genreg_twin(fc1, fc21, fc22, fc3, fc4, info: genreg.DataInfo) -> genreg.GenerativeModel:
    """A genreg VAE holding a peer's trained layers, so genreg's IWAE estimator applies to it.

    ``fc4`` must produce the pixel logits (for pythae: the layer before its sigmoid).
    """
    model = genreg.build_model(GENREG_SPEC, info)
    with torch.no_grad():
        model.encoder.net[0].load_state_dict(fc1.state_dict())
        model.latent.project.weight.copy_(torch.cat([fc21.weight, fc22.weight]))
        model.latent.project.bias.copy_(torch.cat([fc21.bias, fc22.bias]))
        model.decoder.net[0].load_state_dict(fc3.state_dict())
        model.decoder.net[2].load_state_dict(fc4.state_dict())
    return model.eval()


def iwae(model: genreg.GenerativeModel, data: genreg.DataSplits, k: int) -> dict:
    """The bounds in fp32 for every trainer, whatever it trained in: one estimator, one precision."""
    return likelihood_bounds(model, data.test, k=k, seed=SEED, precision="fp32")


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- the turn-taking protocol


class Gate:
    """A worker's side of the protocol: wait for 'go', run one epoch, report its time."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.began = 0.0
        self.ready = False

    def wait(self) -> None:
        if not self.ready:  # set up (model, optimizer or trainer): say so
            self.conn.send(("ready", {}))
            self.ready = True
        message = self.conn.recv()
        assert message == "go", message
        self.began = time.perf_counter()

    def report(self, test_loss: float, **extra) -> None:
        self.conn.send(("epoch", {"seconds": time.perf_counter() - self.began, "test_loss": test_loss, **extra}))


def worker(name: str, conn, epochs: int, k: int, tmp: str, device: str) -> None:
    log = open(Path(tmp) / f"{name}.log", "w")  # noqa: SIM115 - the process's stdout/stderr from here on
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        torch.manual_seed(SEED)
        data = load_data()
        torch.optim.Adam(torch.nn.Linear(1, 1).parameters()).step()  # an optimizer's lazy imports (~140 MiB)
        base = rss_mib()
        gate = Gate(conn)
        run = {"genreg": run_genreg, "genreg-fp32": run_genreg_fp32, "plain": run_plain, "pythae": run_pythae}[name]
        model, precision = run(gate, data, epochs, tmp, device)
        model = model.to(device)
        peak = rss_mib()
        gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else math.nan
        assert conn.recv() == "eval"
        began = time.perf_counter()
        bounds = iwae(model, data, k)
        seconds = time.perf_counter() - began
        done = {"peak_rss_mib": peak, "rss_before_mib": base, "gpu_peak_mib": gpu_peak, "iwae_seconds": seconds}
        done["trained_in"] = precision
        conn.send(("done", {**done, **bounds}))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def run_genreg(
    gate: Gate, data: genreg.DataSplits, epochs: int, tmp: str, device: str, precision: str = "auto"
) -> tuple[genreg.GenerativeModel, str]:
    model = genreg.build_model(GENREG_SPEC, data.info)
    config = genreg.TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, device=device, precision=precision)

    def on_epoch(record: dict) -> None:
        gate.report(record["test"]["loss"], genreg_seconds=record["seconds"])
        if record["epoch"] < epochs:
            gate.wait()

    gate.wait()
    callbacks = [genreg.EveryEpoch(on_epoch)]
    result = genreg.train(model, data, config, seed=SEED, progress=False, callbacks=callbacks)
    return model, result.precision


def run_genreg_fp32(
    gate: Gate, data: genreg.DataSplits, epochs: int, tmp: str, device: str
) -> tuple[genreg.GenerativeModel, str]:
    """genreg with ``train.precision: fp32``, the CPU default before issue 17."""
    return run_genreg(gate, data, epochs, tmp, device, precision="fp32")


def run_plain(
    gate: Gate, data: genreg.DataSplits, epochs: int, tmp: str, device: str
) -> tuple[genreg.GenerativeModel, str]:
    model = plain_loop.VAE(LATENT, HIDDEN).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    train_loader, test_loader = plain_loop.make_loaders(data.train.images, data.test.images, BATCH)
    for _ in range(epochs):
        gate.wait()
        plain_loop.train_epoch(model, train_loader, optimizer, device)
        gate.report(plain_loop.test(model, test_loader, device))
    return genreg_twin(model.fc1, model.fc21, model.fc22, model.fc3, model.fc4, data.info), "fp32, as written"


def pythae_networks():
    """pythae encoder/decoder with the classic layers; the decoder outputs probabilities (sigmoid)."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            BaseEncoder.__init__(self)
            self.fc1 = torch.nn.Linear(784, HIDDEN)
            self.fc21 = torch.nn.Linear(HIDDEN, LATENT)
            self.fc22 = torch.nn.Linear(HIDDEN, LATENT)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = torch.relu(self.fc1(x.reshape(x.shape[0], -1)))
            return ModelOutput(embedding=self.fc21(h), log_covariance=self.fc22(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            BaseDecoder.__init__(self)
            self.fc3 = torch.nn.Linear(LATENT, HIDDEN)
            self.fc4 = torch.nn.Linear(HIDDEN, 784)

        def forward(self, z: torch.Tensor) -> ModelOutput:
            logits = self.fc4(torch.relu(self.fc3(z)))
            return ModelOutput(reconstruction=torch.sigmoid(logits).reshape(-1, 1, 28, 28))

    return Encoder(), Decoder()


def run_pythae(
    gate: Gate, data: genreg.DataSplits, epochs: int, tmp: str, device: str
) -> tuple[genreg.GenerativeModel, str]:
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    class Turns(TrainingCallback):
        def on_epoch_begin(self, training_config, **kwargs):
            gate.wait()

        def on_log(self, training_config, logs, **kwargs):
            gate.report(logs.get("eval_epoch_loss", math.nan))

    encoder, decoder = pythae_networks()
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce"), encoder, decoder)
    config = BaseTrainerConfig(
        output_dir=str(Path(tmp) / "pythae"),
        num_epochs=epochs,
        learning_rate=LR,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=1000,
        seed=SEED,
        no_cuda=device != "cuda",
    )
    train = BaseDataset(data.train.images, data.train.labels)
    test = BaseDataset(data.test.images, data.test.labels)
    trainer = BaseTrainer(model, train, test, training_config=config, callbacks=[Turns()])
    trainer.train()
    trained = trainer.model  # the last epoch's weights (pythae also saves its best-on-eval copy)
    enc, dec = trained.encoder, trained.decoder
    twin = genreg_twin(enc.fc1, enc.fc21, enc.fc22, dec.fc3, dec.fc4, data.info).to(device)
    with torch.no_grad():  # the twin's logits are the logits behind pythae's probabilities
        z = torch.randn(8, LATENT, device=device)
        expected = trained.decoder(z)["reconstruction"]
        assert torch.allclose(torch.sigmoid(twin.decoder(z, None)), expected, atol=1e-6)
    return twin, "fp32, its default"


# ---------------------------------------------------------------- the matmul-bound limit


MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


def record_matmuls(step) -> list[tuple]:
    """Every matmul op ``step()`` dispatches, with its arguments' shapes and strides."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls: list[tuple] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in MATMULS:
                shapes = [(tuple(a.shape), a.stride()) if isinstance(a, torch.Tensor) else a for a in args]
                calls.append((func, shapes, dict(kwargs)))
            return func(*args, **kwargs)

    with Recorder():
        step()
    return calls


def matmul_flops(func, shapes) -> int:
    a, b = (shapes[0][0], shapes[1][0]) if func is not torch.ops.aten.addmm.default else (shapes[1][0], shapes[2][0])
    if func is torch.ops.aten.bmm.default:
        return 2 * a[0] * a[1] * a[2] * b[2]
    return 2 * a[0] * a[1] * b[1]


def matmul_throughput(
    calls: list[tuple], device: str = "cpu", dtype: torch.dtype = torch.float32, inner: int = 25, repeats: int = 9
) -> float:
    """Achieved FLOP/s replaying ``calls`` (fresh ``dtype`` tensors, same shapes and strides); median of repeats.

    On CUDA the ``inner`` steps are captured as one CUDA graph, so launch overhead is not counted.
    """
    replay = []
    for func, shapes, kwargs in calls:
        args = [
            torch.empty_strided(s[0], s[1], device=device, dtype=dtype).normal_() if isinstance(s, tuple) else s
            for s in shapes
        ]
        replay.append((func, args, kwargs))
    flops = sum(matmul_flops(func, shapes) for func, shapes, _ in calls) * inner

    def steps() -> None:
        for _ in range(inner):
            for func, args, kwargs in replay:
                func(*args, **kwargs)

    run = steps
    if device == "cuda":
        steps()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            steps()
        run = graph.replay
    times = []
    for _ in range(repeats + 1):
        sync(device)
        began = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - began)
    return flops / statistics.median(times[1:])


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the two matmul-bound limits


def gflops(rates: dict[str, float]) -> str:
    """``fp32 150.2 GFLOP/s, bf16 351.0 GFLOP/s``."""
    return ", ".join(f"{name} {rate / 1e9:.1f} GFLOP/s" for name, rate in rates.items())


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def training_step_calls(device: str = "cpu") -> tuple[int, list[tuple]]:
    """FLOPs (FlopCounterMode) and matmul calls of one batch-128 step of the plain model."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(SEED)
    model = plain_loop.VAE(LATENT, HIDDEN).to(device)
    x = torch.rand(BATCH, 1, 28, 28, device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        logits, mu, log_var = model(x)
        plain_loop.loss_function(logits, x, mu, log_var).backward()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    calls = record_matmuls(step)
    recorded = sum(matmul_flops(func, shapes) for func, shapes, _ in calls)
    assert recorded == counter.get_total_flops(), (recorded, counter.get_total_flops())
    return counter.get_total_flops(), calls


# ---------------------------------------------------------------- the parent


def run_interleaved(trainers: list[str], epochs: int, k: int, tmp: str, device: str) -> dict[str, dict]:
    context = mp.get_context("spawn")
    pipes, procs = {}, {}
    for name in trainers:
        parent_end, child_end = context.Pipe()
        proc = context.Process(target=worker, args=(name, child_end, epochs, k, tmp, device), name=f"bench-{name}")
        proc.start()
        pipes[name], procs[name] = parent_end, proc
    results = {name: {"epochs": []} for name in trainers}

    def receive(name: str, kind: str) -> dict:
        got, payload = pipes[name].recv()
        if got == "error":
            for proc in procs.values():  # the others wait for a 'go' that will not come
                proc.terminate()
            raise RuntimeError(f"{name} worker failed:\n{payload}\n(log: {Path(tmp) / (name + '.log')})")
        assert got == kind, (got, kind)
        return payload

    for name in trainers:
        results[name].update(receive(name, "ready"))
    for epoch in range(epochs):
        shift = epoch % len(trainers)
        for name in trainers[shift:] + trainers[:shift]:
            pipes[name].send("go")
            results[name]["epochs"].append(receive(name, "epoch"))
            print(f"epoch {epoch + 1}/{epochs} {name:7s} {results[name]['epochs'][-1]['seconds']:7.2f} s", flush=True)
    for name in trainers:
        pipes[name].send("eval")
        results[name].update(receive(name, "done"))
        print(f"{name:7s} IWAE NLL {results[name]['nll_iwae']:.2f} ({results[name]['iwae_seconds']:.1f} s)", flush=True)
    for proc in procs.values():
        proc.join()
    return results


def machine(device: str) -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    try:
        import pythae

        pythae_version = getattr(pythae, "__version__", None) or _dist_version("pythae")
    except ImportError:
        pythae_version = "not installed"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pythae": pythae_version,
        "python": platform.python_version(),
        "gpu": f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if device == "cuda" else "",
    }


def publish(text: str, out: str) -> None:
    """Print a benchmark's report and append it to ``out`` (a file such as RESULTS.md; '' for none)."""
    print(text)
    if out:
        with open(out, "a") as fh:
            fh.write(text)
        print(f"appended to {out}")


def cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    try:
        with open("/proc/stat") as fh:
            return [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return []


def steal_fraction(before: list[int], after: list[int]) -> float:
    if len(before) < 8 or len(after) < 8:
        return math.nan
    delta = [b - a for a, b in zip(before, after, strict=True)]
    return delta[7] / max(1, sum(delta[:8]))


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def gpu(result: dict) -> str:
    """The peak-GPU-memory cell (with its separator), empty on CPU."""
    peak = result["gpu_peak_mib"]
    return "" if math.isnan(peak) else f"{peak:.0f} | "


def report(args, results: dict, limit: dict, info: dict, load: tuple, command: str, wall: float) -> str:
    warm = 1
    rows, medians = [], {}
    for name, result in results.items():
        timed = [e["seconds"] for e in result["epochs"][warm:]]
        seconds = medians[name] = statistics.median(timed)
        rows.append(
            f"| {name} | {result['trained_in'].split(' (')[0]} | {seconds:.3f} "
            f"| {', '.join(f'{t:.3f}' for t in timed)} "
            f"| {limit['images'] / seconds:,.0f} | {seconds / limit['seconds']['fp32']:.2f}x "
            f"| {seconds / limit['seconds']['bf16']:.2f}x | {gpu(result)}{result['peak_rss_mib']:.0f} "
            f"| {result['peak_rss_mib'] - result['rss_before_mib']:.0f} "
            f"| {result['epochs'][-1]['test_loss']:.2f} | {result['neg_elbo']:.2f} | {result['nll_iwae']:.2f} |"
        )
    genreg_own = ""
    if "genreg" in results:
        own = [e["genreg_seconds"] for e in results["genreg"]["epochs"][warm:]]
        genreg_own = (
            f"- genreg's own per-epoch `seconds` records (training + its test evaluation, as in "
            f"`metrics.jsonl`): {', '.join(f'{t:.2f}' for t in own)} s; the column above is timed from the "
            "'go' to the `on_epoch_end` callback and so also includes the epoch's setup (seeding, `randperm`).\n"
        )
    names = " / ".join(results)
    columns = ["trainer", "trained in", "s / epoch (median)", "timed epochs (s)", "images / s"]
    columns += ["x fp32 limit", "x bf16 limit"]
    columns += ["peak GPU memory (MiB)"] * (args.device == "cuda") + ["peak RSS (MiB)"]
    columns += ["RSS over base (MiB)", "last test loss", f"neg. ELBO (K={args.iw_samples})"]
    columns += [f"IWAE NLL (K={args.iw_samples})"]
    header = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"
    limits = " and ".join(
        f"{name} {max(limit['before'][name], limit['after'][name]) / 1e9:.1f} GFLOP/s "
        f"({limit['before'][name] / 1e9:.1f} before the run, {limit['after'][name] / 1e9:.1f} after): "
        f"**{limit['seconds'][name]:.3f} s per epoch**"
        for name in PRECISIONS
    )
    return f"""
## Speed against the peers: `benchmarks/bench_vae.py` (PyTorch's classic MNIST VAE)

- Date: {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
- Machine: {info["gpu"] or "no GPU"}; {info["cores"]} CPU cores ({info["cpu"]}); torch {info["torch"]} with
  {info["threads"]} CPU threads (the default), pythae {info["pythae"]}, Python {info["python"]}; every trainer on
  {args.device}
- Command: `{command}` (wall clock {wall / 60:.1f} min); load average before / after: {load[0]:.2f} / {load[1]:.2f};
  CPU time stolen by the hypervisor during the epochs: {load[2]:.1%}
- Task: encoder 784-400-(20, 20), decoder 20-400-784, ReLU, BCE + KLD, Adam lr 1e-3, batch 128,
  {limit["images"]:,} training images (the 4,000 `mnist-sample` digits x {REPEAT}, grey levels),
  1,000 test images, seed 0.
- How: each trainer ({names}) runs in its own spawned process; they take turns epoch by epoch (only one
  computes at a time; the order rotates each epoch). {args.epochs} epochs each: the first is a warm-up,
  the time is the median of the other {args.epochs - 1}. Every trainer's epoch includes its own test-set
  evaluation (genreg and the plain loop: one batch of 1,000; pythae: its eval loop, batch 1,000, and its
  per-epoch deep copy of the best model). `genreg` sets nothing but the task (every `train` setting at its
  default, which here chose {results.get("genreg", {}).get("trained_in", "(not run)")}); `genreg-fp32` sets
  `train.precision: fp32`.
- Peak RSS: `ru_maxrss` of the trainer's process at the end of training (before the IWAE); "over base"
  subtracts the same process's peak after imports, loading the data (the 60,000 images are 188 MB)
  and creating a throwaway Adam (whose lazy imports add about 140 MiB), i.e. before the trainer exists.
- Test NLL: IWAE with K={args.iw_samples} on the 1,000 test images after the last epoch, by
  `genreg.evaluation.metrics.likelihood_bounds` (seed 0, `precision="fp32"` for every trainer); the plain and
  pythae layers are copied into a genreg model (pythae: the logits before its decoder's sigmoid, checked equal;
  last-epoch weights, not pythae's best-on-eval copy). Same draws give the negative ELBO column.
- Limits: one batch-128 step of the plain model (forward + backward) is {limit["step_flops"] / 1e9:.3f} GFLOP of
  matmuls (`torch.utils.flop_counter.FlopCounterMode`); x {limit["images"]:,} / 128 =
  {limit["epoch_flops"] / 1e9:.1f} GFLOP per epoch. Replaying exactly those {limit["calls"]} matmuls (same ops,
  shapes and strides, median of 9 x 25 steps) in each precision achieves {limits}. They leave out everything
  but matmuls (elementwise ops, the loss, Adam, the test evaluation).
- Ratios (medians): genreg {ratio(medians, "plain")} the plain loop, {ratio(medians, "pythae")} pythae,
  {ratio(medians, "genreg-fp32")} genreg in fp32; IWAE NLL of genreg minus genreg-fp32's:
  {nll_change(results)} nats.

{header}
{chr(10).join(rows)}

{genreg_own}- "last test loss" is each trainer's own per-epoch test number (nats per image: genreg's mean, the plain
  loop's sum / 1,000, pythae's mean of batch means, with its BCE on clamped probabilities); one draw of z each.
- genreg averages the loss over the batch while the plain loop sums it (as the PyTorch example does);
  with Adam that changes only the effective epsilon.
"""


def ratio(medians: dict[str, float], other: str) -> str:
    """``2.31x faster than`` (genreg's median epoch against ``other``'s), or ``not run against``."""
    if "genreg" not in medians or other not in medians:
        return "not run against"
    return f"{medians[other] / medians['genreg']:.2f}x faster than"


def nll_change(results: dict) -> str:
    if "genreg" not in results or "genreg-fp32" not in results:
        return "not measured (both genreg trainers are needed)"
    return f"{results['genreg']['nll_iwae'] - results['genreg-fp32']['nll_iwae']:+.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per trainer, the first a warm-up (>= 4)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="append the results here ('' for none)")
    parser.add_argument("--iw-samples", type=int, default=500, help="IWAE importance samples (K)")
    parser.add_argument("--trainers", default=",".join(TRAINERS), help="comma-separated subset of the default")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where every trainer runs")
    args = parser.parse_args(argv)
    if args.epochs < 4:
        parser.error("--epochs must be at least 4 (one warm-up, three timed)")
    trainers = [t for t in args.trainers.split(",") if t]
    if unknown := set(trainers) - set(TRAINERS):
        parser.error(f"unknown trainers: {', '.join(sorted(unknown))}")
    command = "python benchmarks/bench_vae.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    info = machine(args.device)
    load_before = os.getloadavg()[0]
    began = time.perf_counter()

    step_flops, calls = training_step_calls(args.device)
    before = {name: matmul_throughput(calls, args.device, dtype) for name, dtype in PRECISIONS.items()}
    print(f"matmul FLOPs per step {step_flops / 1e9:.3f} G; achieved {gflops(before)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_vae_") as tmp:
        stat_before = cpu_times()
        results = run_interleaved(trainers, args.epochs, args.iw_samples, tmp, args.device)
        steal = steal_fraction(stat_before, cpu_times())
    after = {name: matmul_throughput(calls, args.device, dtype) for name, dtype in PRECISIONS.items()}
    print(f"achieved {gflops(after)} after the run", flush=True)
    images = len(genreg.load_data({"type": "mnist-sample"}).train) * REPEAT
    epoch_flops = step_flops * images / BATCH
    limit = {
        "images": images,
        "step_flops": step_flops,
        "epoch_flops": epoch_flops,
        "calls": len(calls),
        "before": before,
        "after": after,
        "seconds": {name: epoch_flops / max(before[name], after[name]) for name in PRECISIONS},
    }
    contention = (load_before, os.getloadavg()[0], steal)
    text = report(args, results, limit, info, contention, command.strip(), time.perf_counter() - began)
    publish(text, args.out)


if __name__ == "__main__":
    main()
