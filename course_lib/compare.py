"""Notebook 08's measured comparisons: pixel vs latent diffusion, diffusion vs GAN, on the sprites.

- ``diffusion_sprites`` / ``gan_sprites``: samples from a checkpoint and the seconds they took (a latent
  checkpoint's samples are decoded by its autoencoder);
- ``training_memory``: bytes of activations one training step keeps for its backward pass (counted exactly
  with autograd's saved-tensor hooks: the memory a step needs beyond the weights, independent of the machine);
- ``loss_stability``: how a run's loss wanders (relative step-to-step jitter over the last half) and how much
  final losses differ between seeds;
- ``comparison_rows``: the table's figures for a set of samples, beside the real floor.

The shipped models (``assets/sprites_*.pt``) and their commands are listed in ``SHIPPED``; the benchmark
``benchmarks/capstone.py`` trains every kind for the same wall time over several seeds and prints the table.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import gan
from .autoencoder import decode_latents, from_payload

ASSETS = Path(__file__).resolve().parent / "assets"
# Wall-time budget of each shipped sprite generator, on one core. The diffusion models' cosine learning-rate decay
# is set by a step count chosen to end just inside it on the machine that trained them (a slower one reaches the
# budget first and stops before the rate has decayed to 0); the GAN trains for all of it.
SECONDS = 2400
# The capstone samples with DDIM's eta = 1 (DDPM's amount of fresh noise per step, over fewer steps): the noise
# added at each step lets later steps correct what earlier ones got wrong (Karras et al. 2022, sec. 4), and on the
# shipped sprite models it measurably lowers the symmetry error against eta = 0 (notebook 08, section 5).
SAMPLING_ETA = 1.0
SHIPPED = {
    "pixel diffusion": (ASSETS / "sprites_pixel.pt",
                        "python -m course_lib train --dataset sprites --conditional --base-channels 16 "
                        "--channel-mults 1 2 2 --patch-size 2 --parameterization v --batch-size 64 --lr 2e-3 "
                        "--lr-schedule cosine --steps 32000 --max-seconds 2400 --seed 0 --out runs/sprites_pixel.pt "
                        "--export course_lib/assets/sprites_pixel.pt --force --threads 1"),
    "latent diffusion": (ASSETS / "sprites_latent.pt",
                         "python -m course_lib train --dataset sprites --latent "
                         "course_lib/assets/sprites_autoencoder.pt --conditional --schedule linear --batch-size 64 "
                         "--lr 2e-3 --lr-schedule cosine --steps 82000 --max-seconds 2400 --seed 0 "
                         "--out runs/sprites_latent.pt --export course_lib/assets/sprites_latent.pt "
                         "--force --threads 1"),
    "GAN": (gan.ASSET, gan.ASSET_COMMAND),
}


def diffusion_sprites(model, schedule, info: dict, n: int, steps: int = 50, labels: torch.Tensor | None = None,
                      guidance: float | None = None, seed: int = 0, progress: bool = False, eta: float = SAMPLING_ETA):
    """n samples (n, 3, 32, 32) in [-1, 1] from a loaded checkpoint with DDIM (noise scale ``eta``), and the seconds
    it took.

    labels: None samples unconditionally (the null class); an int64 tensor (n,) samples those families,
    with classifier-free guidance scale ``guidance`` when given. Latent checkpoints are decoded.
    """
    from .guidance import cfg_model
    from .sampling import sample

    start = time.perf_counter()
    latent = info.get("latent")
    kwargs = {}
    network = model
    if labels is not None and guidance is not None:
        network = cfg_model(model, labels, guidance, model.num_classes)
    elif labels is not None:
        kwargs = {"model_kwargs": {"y": labels}}
    images = sample(network, schedule, (n, *info["dataset"]["image_shape"]), sampler="ddim", steps=steps, eta=eta,
                    seed=seed, clip_x0=latent is None, progress=progress,
                    parameterization=info["config"].parameterization, **kwargs).images
    if latent is not None:
        images = decode_latents(*from_payload(latent), images)
    return images.clamp(-1, 1), time.perf_counter() - start


def gan_sprites(generator, n: int, seed: int = 0):
    """n samples (n, 3, 32, 32) in [-1, 1] from the GAN's generator (one forward pass), and the seconds it took."""
    start = time.perf_counter()
    images = gan.gan_sample(generator, n, seed)
    return images, time.perf_counter() - start


def training_memory(loss_fn) -> int:
    """Bytes of the tensors autograd saves for the backward pass while ``loss_fn()`` computes one loss."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn()
    return total


def loss_stability(histories: list[list[float]]) -> dict:
    """For loss histories of runs that differ only in their seed, a dict with two figures:

    "jitter" = mean over runs of std(loss[k+1] - loss[k]) / |mean loss| over the last half (how much it jumps);
    "final_spread" = std over seeds of the mean loss over the last 10 % divided by its mean (do seeds agree?).
    """
    jitters, finals = [], []
    for history in histories:
        tail = torch.tensor(history[len(history) // 2:], dtype=torch.float64)
        jitters.append((tail.diff().std() / tail.mean().abs()).item())
        finals.append(torch.tensor(history[-max(1, len(history) // 10):], dtype=torch.float64).mean().item())
    finals = torch.tensor(finals)
    spread = (finals.std() / finals.mean().abs()).item() if len(finals) > 1 else float("nan")
    return {"jitter": sum(jitters) / len(jitters), "final_spread": spread}


ROWS = ("confident_fraction", "kid", "symmetry_error", "palette_distance", "class_entropy", "mode_coverage",
        "per_class_spread", "nn_distance_mean")


def comparison_rows(results: dict[str, dict], floor: dict) -> str:
    """A text table: one row per metric, one column per generator (dicts from evaluate_sprites), then the floor;
    then the costs where a column has them (sampling seconds per picture, network passes per picture, training
    steps and seconds, activation bytes per picture in a training step)."""
    widths = {name: max(len(name) + 2, 12) for name in results}
    lines = [f"{'metric':24s}" + "".join(f"{name:>{w}s}" for name, w in widths.items()) + f"{'real floor':>12s}"]
    for key in ROWS:
        lines.append(f"{key:24s}" + "".join(f"{results[name][key]:{w}.4f}" for name, w in widths.items())
                     + f"{floor[key]:12.4f}")
    for key in ("sample_seconds_per_image", "network_passes", "train_steps", "train_seconds", "memory_per_image"):
        cells = [f"{results[name][key]:{w}.4g}" if key in results[name] else f"{'-':>{w}s}" for name, w in widths.items()]
        lines.append(f"{key:24s}" + "".join(cells))
    return "\n".join(lines)

