"""What this machine trains on: device, precision and threads, detected at run time.

CPUs differ between machines: bf16 autocast is about 2x faster than fp32 on a CPU with
native bf16 (AVX-512-BF16, AMX, Arm BF16) and 6-7x *slower* where it is emulated (AVX2
only). So ``precision="auto"`` picks bf16 on a CPU only where the CPU says it runs bf16
natively, AMP on CUDA (bf16 where the GPU supports it, else fp16 with a gradient scaler),
and fp32 everywhere else. Threads are the cores this process may use (CPU affinity and
the cgroup's CPU quota), not the cores the machine has.

The decision functions take their facts as arguments, so each case can be tested
without the hardware; :func:`detect` gathers the facts.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "PRECISIONS",
    "Hardware",
    "available_memory",
    "choose_device",
    "choose_precision",
    "cpu_flags",
    "detect",
    "usable_cores",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: CPU flags (Linux /proc/cpuinfo) that mean bf16 matrix math runs natively, not emulated
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # bf16: the Arm feature name


@dataclass(frozen=True)
class Hardware:
    """Where and how a run trains; recorded on the run."""

    device: str  # cpu | cuda | mps
    precision: str  # fp32 | bf16 | fp16
    threads: int
    reason: str
    name: str = ""
    memory_bytes: int = 0  # memory this process may still use (0: unknown)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty where unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_name(cpuinfo: str | None = None) -> str:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return platform.processor() or platform.machine()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model"):
            return value.strip()
    return platform.processor() or platform.machine()


def usable_cores(affinity: int | None = None, quota: float | None = None, cpu_count: int | None = None) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if quota is None:
        quota = cgroup_cpu_quota()
    cores = affinity
    if quota is not None and quota > 0:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, int(cores))


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None if unlimited."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_memory(meminfo: str | None = None, root: Path = Path("/sys/fs/cgroup")) -> int:
    """Bytes this process may still allocate: the system's available memory, capped by the
    cgroup's limit (a container's), 0 where unknown.
    """
    sizes = []
    try:
        text = meminfo if meminfo is not None else Path("/proc/meminfo").read_text()
        for line in text.splitlines():
            if line.startswith("MemAvailable:"):
                sizes.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit != "max":
            used = int((root / "memory.current").read_text())
            sizes.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(sizes) if sizes else 0


def choose_device(requested: str = "auto", *, cuda: bool, mps: bool) -> str:
    """``cuda`` when present, else ``mps`` (Apple GPUs), else ``cpu`` - unless one is asked for."""
    if requested not in ("auto", "cpu", "cuda", "mps"):
        raise ValueError(f"device is auto, cpu, cuda or mps, not {requested!r}")
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise ValueError("device='cuda' was asked for, but torch sees no CUDA GPU")
    if requested == "mps" and not mps:
        raise ValueError("device='mps' was asked for, but torch sees no Apple GPU")
    return requested


def choose_precision(
    requested: str, device: str, *, flags: frozenset[str] = frozenset(), cuda_bf16: bool = False
) -> tuple[str, str]:
    """``(precision, why)``. ``auto`` never picks a precision that is slower than fp32 on this machine."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision is one of {', '.join(PRECISIONS)}, not {requested!r}")
    if device == "cuda":
        if requested == "auto":
            return (
                ("bf16", "CUDA with bf16 support: bf16 autocast")
                if cuda_bf16
                else ("fp16", "CUDA without bf16: fp16 autocast with a gradient scaler")
            )
        return requested, f"{requested} as asked"
    if device == "mps":
        if requested == "fp16":
            raise ValueError("fp16 training needs a gradient scaler, which is CUDA only; on an Apple GPU use fp32")
        if requested in ("auto", "fp32"):
            return "fp32", "Apple GPU: fp32 (autocast on MPS is not used)"
        return requested, f"{requested} as asked"
    native = sorted(flags & NATIVE_BF16_FLAGS)
    if requested == "auto":
        if native:
            return "bf16", f"the CPU runs bf16 natively ({', '.join(native)}): bf16 autocast"
        return "fp32", "the CPU has no native bf16 (bf16 would be emulated, several times slower): fp32"
    if requested == "fp16":
        raise ValueError("fp16 is for CUDA GPUs; on a CPU use fp32 or bf16")
    if requested == "bf16" and not native:
        return "bf16", "bf16 as asked, although this CPU emulates it (expect it to be slower than fp32)"
    return requested, f"{requested} as asked"


def _native_cuda_bf16(torch) -> bool:
    """bf16 in the GPU's hardware (Ampere and newer), not emulated (as on a T4 or V100)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no emulation to exclude
        return bool(torch.cuda.is_bf16_supported())


def detect(precision: str = "auto", device: str = "auto", *, processes_here: int = 1) -> Hardware:
    """The device, precision and threads for a run started now, in this process (imports torch)."""
    import torch

    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    chosen = choose_device(device, cuda=torch.cuda.is_available(), mps=mps)
    cuda_bf16 = chosen == "cuda" and _native_cuda_bf16(torch)
    flags = cpu_flags() if chosen == "cpu" else frozenset()
    picked, why = choose_precision(precision, chosen, flags=flags, cuda_bf16=cuda_bf16)
    threads = max(1, usable_cores() // max(1, processes_here))
    name = torch.cuda.get_device_name() if chosen == "cuda" else cpu_name()
    return Hardware(chosen, picked, threads, why, name, available_memory())
