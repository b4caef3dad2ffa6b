"""Does the in-memory digits path need its own batcher, or is torch's DataLoader fast enough?

    python benchmarks/data_loading.py [--batches 2000]

Times dealing seeded (64, 1, 8, 8) batches of the digits three ways: ``data.iterate_batches`` (a DataLoader with
the EpochShuffle sampler; the dataset's ``__getitems__`` fetches a batch by one indexing), a DataLoader that
fetches item by item with the default collate (what a plain Dataset would cost), and the hand-written
batcher the library used before (randperm, then slicing the tensor). A training step on the digits U-Net
takes milliseconds, so only differences of that order would matter.
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from course_lib import data
from course_lib.config import TrainConfig
from course_lib.training import train


def hand_written(dataset, batch_size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(dataset), generator=generator)
        for start in range(0, len(dataset) - len(dataset) % batch_size, batch_size):
            index = order[start:start + batch_size]
            yield dataset.images[index], dataset.labels[index]


def per_item(dataset, batch_size: int, seed: int = 0):
    loader = DataLoader(TensorDataset(dataset.images, dataset.labels), batch_size=batch_size, drop_last=True,
                        sampler=data.EpochShuffle(len(dataset), seed))
    while True:
        yield from loader


def microseconds_per_batch(batches, n: int) -> float:
    next(batches)
    start = time.perf_counter()
    for _ in itertools.islice(batches, n):
        pass
    return (time.perf_counter() - start) / n * 1e6


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    digits = data.load_digits("train")
    first = [next(data.iterate_batches(digits, 64, seed=0))[1], next(hand_written(digits, 64, seed=0))[1]]
    print(f"digits train set: {len(digits)} images; the first batches agree: {torch.equal(*first)}")
    for name, batches in [("data.iterate_batches (DataLoader, __getitems__)", data.iterate_batches(digits, 64)),
                          ("DataLoader, item by item + default collate", per_item(digits, 64)),
                          ("hand-written batcher (tensor slicing)", hand_written(digits, 64))]:
        print(f"{name:50s} {microseconds_per_batch(batches, args.batches):8.1f} us per batch of 64")
    result = train(TrainConfig(steps=30, unet={"num_classes": 10}), digits, progress=False)
    print(f"{'for scale: one training step of the default U-Net':50s} {result.seconds / 30 * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
