"""The shipped sprite models meet issue 10's bar, and each records the course command that made it."""
import functools
import json

import pytest
import torch

from course_lib import checkpoints, compare, gan, sprite_metrics
from course_lib.autoencoder import ASSET as AE_ASSET
from course_lib.sprites import FAMILIES

DIFFUSION = ("pixel diffusion", "latent diffusion")


def test_assets_are_small_and_record_their_commands():
    files = [path for path, _ in compare.SHIPPED.values()] + [AE_ASSET, sprite_metrics.CLASSIFIER_ASSET]
    sizes = [path.stat().st_size for path in files]
    assert max(sizes) < 3.5e6 and sum(sizes) < 8e6
    for name in DIFFUSION:
        path, command = compare.SHIPPED[name]
        assert checkpoints.load_checkpoint(path)[2]["command"] == command
    assert gan.load_gan()[1]["command"] == compare.SHIPPED["GAN"][1]


@functools.lru_cache(maxsize=None)       # both tests of a model judge the same samples
def _guided_metrics(name: str):
    model, schedule, info = checkpoints.load_checkpoint(compare.SHIPPED[name][0])
    labels = torch.arange(24) % len(FAMILIES)
    images, _ = compare.diffusion_sprites(model, schedule, info, len(labels), steps=20, labels=labels, guidance=2.0)
    return sprite_metrics.evaluate_sprites(images), sprite_metrics.real_floor(len(labels))


@pytest.mark.parametrize("name", DIFFUSION)
def test_model_samples_are_labelled_confidently_like_real_sprites(name):
    ours, real = _guided_metrics(name)
    assert ours["confident_fraction"] >= 0.8 * real["confident_fraction"]


# Issue 10's bar: a symmetry error within 2x of real sprites'. Measured (guided w = 2, DDIM eta = 1, seeded) after
# forty minutes with a cosine learning-rate decay: the latent model 1.58x here (24 samples, 20 steps) and 1.60x at
# 600 samples with 50 steps; the pixel model 1.95x here and 1.93x (standard error 0.02x) at 600 samples with 50 steps.
@pytest.mark.parametrize("name", DIFFUSION)
def test_model_samples_are_as_symmetric_as_real_sprites(name):
    ours, real = _guided_metrics(name)
    assert ours["symmetry_error"] <= 2 * real["symmetry_error"]


def test_latent_checkpoint_carries_its_autoencoder():
    _, _, info = checkpoints.load_checkpoint(compare.SHIPPED["latent diffusion"][0])
    assert info["dataset"]["image_shape"] == [4, 8, 8] and info["latent"]["scale"] > 0


def test_benchmark_results_are_stored_with_their_command():
    bench = json.loads((compare.ASSETS / "capstone_benchmark.json").read_text())
    assert bench["command"].startswith("benchmarks/capstone.py")
    assert set(compare.SHIPPED) <= set(bench["shipped"]["models"])
    assert set(bench["stability"]["summary"]) == {"pixel diffusion", "GAN"}
