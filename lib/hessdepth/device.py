"""Device choice, deterministic kernels for training, a TF32-off context for exact float32 products
on GPUs, and CPU allocator tuning."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
from typing import Iterator

import torch


def choose_device(pref: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; anything else is taken as a device name.

    Asking for CUDA on a machine without it raises ValueError instead of failing later.
    """
    if str(pref) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(pref)!r} requested but CUDA is not available here")
    return device


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels inside the block: all of them on the CPU, cuDNN convolutions on CUDA."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Turn TF32 off for CUDA matmuls and convolutions inside the block; restore on exit.

    Uses PyTorch's ``fp32_precision`` flags where they exist (mixing them with the legacy
    ``allow_tf32`` flags is an error in recent PyTorch), else the legacy flags.
    """
    cudnn = torch.backends.cudnn
    if hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision"):
        flags = [
            (torch.backends.cuda.matmul, "fp32_precision"),
            (cudnn.conv, "fp32_precision"),
            (cudnn.rnn, "fp32_precision"),
        ]
        off = "ieee"  # full float32
    else:  # PyTorch before the fp32_precision API
        flags = [(torch.backends.cuda.matmul, "allow_tf32"), (cudnn, "allow_tf32")]
        off = False
    saved = [getattr(module, name) for module, name in flags]
    try:
        for module, name in flags:
            setattr(module, name, off)
        yield
    finally:
        for (module, name), value in zip(flags, saved):
            setattr(module, name, value)


def keep_freed_cpu_memory() -> bool:
    """Ask glibc's malloc to reuse freed memory instead of returning it to the system.

    Autograd on the CPU allocates and frees activation-sized buffers on every operation; by
    default glibc maps each large one fresh (mmap) and pays a page fault per 4 KiB on first
    touch. With mmap off and trimming raised, a ResNet-20 gradient over 256 images took 23% less
    time and a Hessian-vector product 10-18% less (bench/RESULTS.md), for about 25% more peak
    resident memory. Process-wide; returns False (and does nothing) where malloc is not glibc's.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def machine_description() -> str:
    """One line naming the machine: CPU model and cores, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"
