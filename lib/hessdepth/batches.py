"""Training batches: epoch permutations and crop/flip draws from one seeded generator, and the
batched augmentation (4-pixel zero-padded random crop, horizontal flip) as one gather."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded images at ``offsets`` (B, 2) = (row, col) in [0, 2*pad],
    then a horizontal flip where ``flips`` (B,) is true; one gather for the whole batch."""
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device).expand(b, w)
    cols = offsets[:, 1, None] + torch.where(flips[:, None], w - 1 - cols, cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, h, w)


class Sampler:
    """Epoch permutations and augmentation draws from one seeded CPU generator (an epoch's
    remainder smaller than a batch is skipped)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise ValueError(f"training set of {n} images is smaller than batch_size {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.empty(0, dtype=torch.int64), 0

    def indices(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.perm):
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        self.pos += self.batch_size
        return self.perm[self.pos - self.batch_size : self.pos]

    def crop_flip(self) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.randint(0, 9, (self.batch_size, 2), generator=self.gen)
        return offsets, torch.randint(0, 2, (self.batch_size,), generator=self.gen).bool()

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.perm, self.pos = state["perm"], state["pos"]
