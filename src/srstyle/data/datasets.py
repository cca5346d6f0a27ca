"""Read access to the patch stores (grid patches, or random crops of sub-images: :func:`open_store` picks the
class from index.json): memory-mapped arrays and seeded, resumable batch sampling."""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path

import numpy as np
import torch

from ..config import check_subimages
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


class RandomCropStore(PatchStore):
    """A sub-image store (``patches.crop: random``, :mod:`srstyle.data.subimages`) read as a patch store of every
    ``hr_size`` crop at a scale-aligned position of every training image: item ``i`` of the ``len(store)``
    positions is one (image, y, x), read from a sub-image that holds it. The sampler's uniform draw over the
    items is then a uniform random crop (images weighted by area, as in a grid store), and the crop stream is
    a pure function of the sampler's state, which checkpoints save: resume stays exact, DDP ranks share it."""

    def __init__(self, folder: Path | str, hr_size: int | None = None):
        self.folder = Path(folder)
        stored = read_json(self.folder / "index.json")
        self.scale, self.mode = int(stored["scale"]), stored["mode"]
        size = int(hr_size or stored["hr_size"])
        if size % self.scale:
            raise ValueError(f"hr_size={size} is not a multiple of the store's scale {self.scale}")
        check_subimages(stored, size, f"{self.folder}: hr_size")  # one store serves sizes up to size - step
        self.size, self.images = size, stored["images"]
        self.hr = np.load(self.folder / "hr.npy", mmap_mode="r")
        self.lr = np.load(self.folder / "lr.npy", mmap_mode="r")
        s = self.scale
        self._ny = np.array([(i["height"] - size) // s + 1 if i["height"] >= size else 0 for i in self.images], np.int64)
        self._nx = np.array([(i["width"] - size) // s + 1 if i["width"] >= size else 0 for i in self.images], np.int64)
        self._end = np.cumsum(self._ny * self._nx)
        # what the fingerprint and the SRGAN discriminator read: the crop size and the population drawn from
        self.index = {**stored, "hr_size": size, "lr_size": size // s, "count": int(self._end[-1]) if len(self._end) else 0}

    def __len__(self) -> int:
        return self.index["count"]

    def _crop(self, k: int, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """HR crop at (y, x) of image ``k`` and its LR crop, from the sub-image starting last before it."""
        im, s, size = self.images[k], self.scale, self.size
        iy, ix = bisect_right(im["ys"], y) - 1, bisect_right(im["xs"], x) - 1
        sy, sx = im["ys"][iy], im["xs"][ix]
        sh, sw, c = im["sub_h"], im["sub_w"], 1 if self.mode == "y" else 3
        j = iy * len(im["xs"]) + ix
        hr_n, lr_n = sh * sw * c, (sh // s) * (sw // s) * c
        hr = self.hr[im["hr_offset"] + j * hr_n : im["hr_offset"] + (j + 1) * hr_n].reshape(sh, sw, c)
        lr = self.lr[im["lr_offset"] + j * lr_n : im["lr_offset"] + (j + 1) * lr_n].reshape(sh // s, sw // s, c)
        hr = hr[y - sy : y - sy + size, x - sx : x - sx + size]
        lr = lr[(y - sy) // s : (y - sy + size) // s, (x - sx) // s : (x - sx + size) // s]
        return (lr[..., 0], hr[..., 0]) if c == 1 else (lr, hr)

    def position(self, indices: np.ndarray) -> np.ndarray:
        """(image, HR y, HR x) of each item: y and x multiples of the scale, so the LR crop is aligned."""
        indices = np.asarray(indices, dtype=np.int64)
        k = np.searchsorted(self._end, indices, side="right")
        r = indices - (self._end[k] - self._ny[k] * self._nx[k])
        py, px = np.divmod(r, self._nx[k])
        return np.stack([k, py * self.scale, px * self.scale], axis=-1)

    def _gather(self, indices: np.ndarray, rng: np.random.Generator | None,
                shard: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
        global_batch = len(indices)
        if shard is not None:
            indices = indices[shard]
        c = () if self.mode == "y" else (3,)
        size, lr_size = self.size, self.size // self.scale
        lr = np.empty((len(indices), lr_size, lr_size, *c), dtype=np.uint8)
        hr = np.empty((len(indices), size, size, *c), dtype=np.uint8)
        for j, (k, y, x) in enumerate(self.position(indices)):
            lr[j], hr[j] = self._crop(int(k), int(y), int(x))
        if rng is not None:
            dihedral(lr, hr, rng, shard, global_batch)
        return lr, hr


def open_store(folder: Path | str, hr_size: int | None = None) -> PatchStore:
    """The store in ``folder``, of the class its ``index.json`` names: a grid :class:`PatchStore` or a
    :class:`RandomCropStore` (cropping ``hr_size``, default the size the store was built for)."""
    return RandomCropStore(folder, hr_size) if crop_mode(folder) == "random" else PatchStore(folder)


def crop_mode(folder: Path | str) -> str:
    """``random`` for a sub-image store, ``grid`` for a patch store (or no store: PatchStore says so)."""
    index_path = Path(folder) / "index.json"
    return read_json(index_path).get("crop", "grid") if index_path.is_file() else "grid"


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
