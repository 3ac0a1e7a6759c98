"""Per-variable gradient norms (the paper's figure 1): one norm per parameter tensor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def per_variable_norms(model: nn.Module, flat_gradient: torch.Tensor) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Split a gradient flattened in ``model.parameters()`` order; return names, norms, sizes."""
    named = list(model.named_parameters())
    sizes = [p.numel() for _, p in named]
    if flat_gradient.shape != (sum(sizes),):
        raise ValueError(f"gradient has shape {tuple(flat_gradient.shape)}, the model has {sum(sizes)} parameters")
    parts = flat_gradient.detach().to(torch.float64).split(sizes)
    norms = np.array([float(part.norm()) for part in parts])
    return [name for name, _ in named], norms, np.array(sizes, dtype=np.int64)
