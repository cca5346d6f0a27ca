"""Read access to the patch store: memory-mapped arrays and seeded, resumable batch sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import read_json


def dihedral(lr: np.ndarray, hr: np.ndarray, rng: np.random.Generator, shard: slice | None = None,
             global_batch: int | None = None) -> None:
    """In place: each sample's LR and HR patch (N,H,W[,C]) get the same one of the 8 rotations/flips, drawn
    per sample (BasicSR's ``augment``); one draw of 2 x the global batch per step, so the stream stays a pure
    function of the generator's state (exact resume), and under DDP each rank (``shard`` of a
    ``global_batch``) applies the draws of its own samples: the transforms a single process would have
    applied to them. Non-square patches only flip/rotate by 180 degrees."""
    n = global_batch or len(lr)
    square = lr.shape[1] == lr.shape[2]
    turns = rng.integers(4, size=n) if square else 2 * rng.integers(2, size=n)
    flips = rng.integers(2, size=n).astype(bool)
    if shard is not None:
        turns, flips = turns[shard], flips[shard]
    for j in range(len(lr)):
        for a in (lr, hr):
            x = np.rot90(a[j], int(turns[j]), axes=(0, 1))
            a[j] = (x[:, ::-1] if flips[j] else x).copy()  # x is a view of a[j]


class PatchStore:
    """One store written by the patches stage (``hr.npy``, ``lr.npy``, ``index.json``), memory-mapped."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        index_path = self.folder / "index.json"
        if not index_path.is_file():
            raise FileNotFoundError(f"{self.folder}: no patch store here; run the patches stage (dvc repro patches)")
        self.index = read_json(index_path)
        self.hr = np.load(self.folder / "hr.npy", mmap_mode="r")
        self.lr = np.load(self.folder / "lr.npy", mmap_mode="r")
        self.scale = int(self.index["scale"])
        self.mode = self.index["mode"]

    def __len__(self) -> int:
        return len(self.hr)

    @staticmethod
    def _to_tensor(a: np.ndarray) -> torch.Tensor:
        """uint8 (N,H,W) or (N,H,W,3) -> float32 (N,C,H,W) in [0, 1]."""
        t = torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)
        return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """LR and HR tensors for ``indices``; with ``rng``, a random dihedral transform per sample."""
        lr, hr = self._gather(indices, rng)
        return self._to_tensor(lr), self._to_tensor(hr)

    def batch_to(self, indices: np.ndarray, rng: np.random.Generator | None, device: torch.device,
                 memory_format=torch.channels_last, shard: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`batch` on ``device``: on a GPU the uint8 patches (a quarter of float32's bytes) go from pinned
        memory with an asynchronous copy and become float there; the values are the same as :meth:`batch`'s
        (x / 255 is correctly rounded on both). On the CPU it is :meth:`batch`."""
        if device.type != "cuda":
            lr, hr = (self._to_tensor(a) for a in self._gather(indices, rng, shard))
            return lr.to(device, memory_format=memory_format), hr.to(device, memory_format=memory_format)
        return tuple(self._uint8_to(a, device, memory_format) for a in self._gather(indices, rng, shard))

    @staticmethod
    def _uint8_to(a: np.ndarray, device: torch.device, memory_format) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        t = (t.pin_memory() if device.type == "cuda" else t).to(device, non_blocking=True)
        t = t.unsqueeze(-1) if t.ndim == 3 else t  # (N,H,W) Y -> (N,H,W,1)
        # NHWC in memory is channels_last already: the permute is a view, the division writes the floats
        return (t.permute(0, 3, 1, 2).float() / 255.0).contiguous(memory_format=memory_format)

    def _gather(self, indices: np.ndarray, rng: np.random.Generator | None,
                shard: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The patches of ``indices`` (of ``indices[shard]``: a DDP rank's part of the global batch)."""
        global_batch = len(indices)
        if shard is not None:
            indices = indices[shard]
        order = np.argsort(indices)  # sorted reads are kinder to the page cache
        lr = np.empty((len(indices), *self.lr.shape[1:]), dtype=np.uint8)
        hr = np.empty((len(indices), *self.hr.shape[1:]), dtype=np.uint8)
        lr[order] = self.lr[indices[order]]
        hr[order] = self.hr[indices[order]]
        if rng is not None:
            dihedral(lr, hr, rng, shard, global_batch)
        return lr, hr

    def iter_batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield self.batch(idx)


class BatchSampler:
    """Uniform random batches from a numpy Generator whose state is saved in checkpoints.

    Sampling with replacement across batches keeps the stream a pure function of the seed, so training
    resumed from step k draws exactly the batches an uninterrupted run would have drawn.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        if n == 0:
            raise ValueError("empty patch store: nothing to train on")
        self.n, self.batch_size = n, batch_size
        self.rng = np.random.default_rng(seed)

    def next_indices(self) -> np.ndarray:
        return self.rng.integers(0, self.n, size=self.batch_size)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
