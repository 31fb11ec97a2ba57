"""Which precision the matrix products run in: ``train.precision`` and the device decide it once per run.

``auto`` means bf16 autocast (Micikevicius et al. 2018, "Mixed Precision Training"; bf16
as in Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training") where the
hardware multiplies bf16 matrices natively, fp32 elsewhere:

- CUDA: on a GPU of compute capability 8.0 or later (Ampere on), which has bf16 tensor cores; older GPUs
  only emulate bf16.
- CPU: when the CPU has bf16 matrix instructions, AVX512-BF16 or AMX-BF16, as torch's
  cpuinfo reports them (``torch.cpu.get_capabilities()``), else the ``flags`` of
  ``/proc/cpuinfo``; unless ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) keeps oneDNN, which runs torch's
  bf16 products on a CPU, below them. Measured on a 2-core AMD EPYC with AVX512-BF16
  (``benchmarks/RESULTS.md``): a 128x784 @ 784x400 product runs 2.2-2.4x faster in bf16, and a training
  epoch of the speed benchmark's VAE 1.46-1.56x. Without them bf16 is emulated, slower than fp32, so fp32
  stays. ARM CPUs keep fp32 (their bf16 path is not measured here).

Under autocast the matrix products (linear, conv) run in bf16 and give bf16 outputs (the logits, mu,
log_var); the weights, their gradients, the optimiser's state and the arithmetic of every loss term and
of the KL stay fp32, on those outputs.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

#: the CPU capabilities (names as in ``torch.cpu.get_capabilities()`` and /proc/cpuinfo) that multiply bf16
#: matrices natively, and how to say them
NATIVE_BF16 = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
CPUINFO = Path("/proc/cpuinfo")  # where Linux lists the CPU's flags, read when torch cannot say


@dataclass(frozen=True)
class Precision:
    """The choice for one device: ``bf16`` (autocast on) or not, and ``reason``, a phrase saying why."""

    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        """``bf16`` or ``fp32``."""
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> str:
        """``bf16 autocast (train.precision auto: this CPU has AVX512-BF16)``, for logs and reports."""
        return f"{'bf16 autocast' if self.bf16 else 'fp32'} ({self.reason})"

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of this choice on ``device`` (disabled for fp32)."""
        return autocast(device, self.bf16)


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``bf16``, else a disabled context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def choose(setting: str, device: torch.device, label: str = "train.precision") -> Precision:
    """The precision ``setting`` (``auto``, ``fp32`` or ``bf16``) means on ``device``; ``label`` names the setting
    in the reason (``train.precision``, or an option such as ``--precision``)."""
    if setting != "auto":
        emulated = setting == "bf16" and device.type == "cpu" and not cpu_bf16_instructions()
        slower = "; this CPU has no bf16 matrix instructions, so bf16 is emulated, slower than fp32" if emulated else ""
        return Precision(setting == "bf16", f"{label} {setting}{slower}")
    if device.type == "cuda":  # bf16 tensor cores from compute capability 8.0 (Ampere); before, emulated
        major, _ = torch.cuda.get_device_capability(device)
        native = major >= 8
        return Precision(native, f"precision auto: this GPU {'has' if native else 'lacks'} bf16 tensor cores")
    instructions = cpu_bf16_instructions()
    if instructions:
        return Precision(True, f"precision auto: this CPU has {instructions}")
    if cap := capped():
        return Precision(False, f"precision auto: {cap} keeps oneDNN below this CPU's bf16 instructions")
    return Precision(False, "precision auto: this CPU has neither AVX512-BF16 nor AMX-BF16")


@functools.cache
def cpu_bf16_instructions() -> str:
    """The native bf16 matrix instructions of this CPU, e.g. ``AVX512-BF16``; empty when it has none.

    Asked once per process, of torch's cpuinfo (``torch.cpu.get_capabilities()``) or, on a torch
    without it, of the ``flags`` line of ``/proc/cpuinfo`` (Linux); a CPU neither can describe has none.
    """
    if capped():
        return ""
    found = {name for name in NATIVE_BF16 if _cpu_capabilities().get(name)}
    return " and ".join(label for name, label in NATIVE_BF16.items() if name in found)


#: values of ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) that keep oneDNN, which runs torch's bf16 products on a
#: CPU, below its bf16 instructions: bf16 products then run emulated, about 10x slower than fp32 (measured)
WITHOUT_BF16_ISA = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


def capped() -> str:
    """``ONEDNN_MAX_CPU_ISA=AVX2`` when the environment caps oneDNN below bf16 instructions; else empty."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").upper()
        if value in WITHOUT_BF16_ISA:
            return f"{name}={value}"
    return ""


def _cpu_capabilities() -> dict[str, bool]:
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            return dict(get())
        except RuntimeError:  # cpuinfo could not read this CPU
            pass
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return dict.fromkeys(flags, True)
