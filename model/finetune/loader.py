"""Samples → batches of uint8 BGR tensors: decode, augment (training) or just prepare (validation)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from model.finetune.augment import CameraAugment, evaluation_view
from model.finetune.data.base import Sample


def decode(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        # Files were validated before training, so this one changed or vanished since.
        raise ValueError(f"image {path} can no longer be decoded")
    return image


class ImageSet(Dataset[tuple[torch.Tensor, int]]):
    """Per-item randomness comes from (seed, epoch, index), so a resumed epoch sees the same images."""

    def __init__(
        self, samples: list[Sample], label_index: dict[str, int], size: int, augment: CameraAugment | None, seed: int
    ) -> None:
        self.samples = samples
        self.label_index = label_index
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        image = decode(str(sample.path))
        if self.augment is None:
            view = evaluation_view(image, self.size)
        else:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            view = self.augment(image, self.size, rng)
        return torch.from_numpy(np.ascontiguousarray(view)), self.label_index[sample.label]


def make_loader(dataset: ImageSet, batch_size: int, shuffle: bool, epoch: int, seed: int, workers: int) -> DataLoader:
    dataset.epoch = epoch
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=workers,
        drop_last=shuffle and len(dataset) > batch_size,
        persistent_workers=False,
    )
