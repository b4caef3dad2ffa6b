"""A small DCGAN (Radford et al. 2016) for 32x32 colour pictures: the other side of notebook 08's comparison.

A generator G maps a noise vector z ~ N(0, I) to a picture in one forward pass; a discriminator D outputs a
logit, "real" vs "generated". They play Goodfellow et al.'s (2014) game, with the non-saturating generator loss
of their section 3:

    discriminator_loss = -log D(x) - log(1 - D(G(z)))      (binary cross-entropy on logits: real 1, fake 0)
    generator_loss     = -log D(G(z))                        (fake labelled 1)

DCGAN's architecture guidelines: strided (transposed) convolutions instead of pooling, batch norm in both nets
(not on G's output or D's input), ReLU in G with tanh at the output, LeakyReLU(0.2) in D, Adam with lr 2e-4
and beta1 = 0.5.

The shipped ``assets/sprites_gan.pt`` (generator only) was made by the command in ``ASSET_COMMAND``,
with the same wall-time budget as the shipped diffusion models (``compare.SECONDS``).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._io import write_atomically
from ._validate import require_int
from .data import ImageDataset, iterate_batches
from .progress import progress_bar

FORMAT = "diffusion-course gan v1"
ASSET = Path(__file__).resolve().parent / "assets" / "sprites_gan.pt"
ASSET_COMMAND = ("python -m course_lib.gan --dataset sprites --max-seconds 2400 --seed 0 "
                 "--out course_lib/assets/sprites_gan.pt")


class Generator(nn.Module):
    """z (B, z_dim) -> pictures (B, channels, 32, 32) in [-1, 1]: 4x4 -> 8x8 -> 16x16 -> 32x32."""

    def __init__(self, z_dim: int = 64, width: int = 32, channels: int = 3):
        super().__init__()
        self.config = {"z_dim": z_dim, "width": width, "channels": channels}
        self.z_dim, w = z_dim, width
        self.project = nn.Sequential(nn.Linear(z_dim, 4 * w * 4 * 4), nn.BatchNorm1d(4 * w * 4 * 4), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),   # 8
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),               # 16
            nn.ConvTranspose2d(w, channels, 4, stride=2, padding=1), nn.Tanh())                              # 32

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).reshape(z.shape[0], -1, 4, 4))


class Discriminator(nn.Module):
    """pictures (B, channels, 32, 32) -> one logit each (B,): 32 -> 16 -> 8 -> 4, then a linear layer."""

    def __init__(self, width: int = 32, channels: int = 3):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(4 * w * 4 * 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


# ---------------------------------------------------------------- the two losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-mean log D(x) - mean log(1 - D(G(z))) from logits (B,) and (B',): BCE with targets 1 (real) and 0 (fake)."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: -mean log D(G(z)) (Goodfellow et al. 2014, sec. 3), i.e. BCE with target 1 on fakes."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


# ---------------------------------------------------------------- training and sampling
@dataclass
class GanResult:
    generator: Generator
    discriminator: Discriminator
    step: int
    d_losses: list = field(default_factory=list)
    g_losses: list = field(default_factory=list)
    seconds: float = 0.0


def train_gan(dataset: ImageDataset, steps: int | None = None, max_seconds: float | None = None, seed: int = 0,
              batch_size: int = 32, lr: float = 2e-4, z_dim: int = 64, width: int = 32,
              progress: bool = True) -> GanResult:
    """Alternate one D step and one G step (Adam, lr 2e-4, betas (0.5, 0.999)) until steps or max_seconds.

    Seeded: weights from torch.manual_seed(seed), batches from the seed, z from a seeded generator.
    """
    if steps is None and max_seconds is None:
        raise ValueError("give a budget: steps and/or max_seconds")
    if steps is not None:
        require_int(steps, "steps", minimum=1)
    torch.manual_seed(seed)
    generator, discriminator = Generator(z_dim, width, dataset.images.shape[1]), Discriminator(width, dataset.images.shape[1])
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(seed)
    batches = iterate_batches(dataset, batch_size, seed=seed)
    result = GanResult(generator, discriminator, 0)
    start = time.perf_counter()
    bar = progress_bar(total=steps, desc="GAN", unit="step", disable=not progress)
    while (steps is None or result.step < steps) and (max_seconds is None or time.perf_counter() - start < max_seconds):
        real, _ = next(batches)
        fake = generator(torch.randn(batch_size, z_dim, generator=rng))
        d_loss = discriminator_loss(discriminator(real), discriminator(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = generator_loss(discriminator(fake))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        result.step += 1
        result.d_losses.append(d_loss.item())
        result.g_losses.append(g_loss.item())
        bar.update()
        bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}", refresh=False)
    bar.close()
    result.seconds = time.perf_counter() - start
    generator.eval()
    return result


@torch.no_grad()
def gan_sample(generator: Generator, n: int, seed: int = 0) -> torch.Tensor:
    """n pictures (n, C, 32, 32) in [-1, 1] in one forward pass of G (eval mode: batch-norm running stats)."""
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.eval()(z)


def save_gan(path, result: GanResult, **extra) -> None:
    """Write the generator (config, weights), the step count, seconds and both loss histories, atomically."""
    payload = {"format": FORMAT, "config": dict(result.generator.config), "state_dict": result.generator.state_dict(),
               "step": result.step, "seconds": result.seconds, "d_losses": result.d_losses,
               "g_losses": result.g_losses, **extra}
    write_atomically(path, lambda temporary: torch.save(payload, temporary))


def load_gan(path=ASSET) -> tuple[Generator, dict]:
    """(generator in eval mode, the payload: config, step, seconds, d_losses, g_losses, command)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GAN file at {path}; make one with `{ASSET_COMMAND}`")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a diffusion-course GAN (expected format {FORMAT!r})")
    generator = Generator(**payload["config"])
    generator.load_state_dict(payload["state_dict"])
    return generator.eval(), payload


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.gan``: train the DCGAN on the sprites and write its generator (with its command)."""
    import sys

    from .sprites import load_sprites

    parser = argparse.ArgumentParser(prog="python -m course_lib.gan", description="Train the small DCGAN on sprites.")
    parser.add_argument("--dataset", default="sprites", choices=["sprites"], help="default %(default)s")
    parser.add_argument("--steps", type=int, help="train for this many D+G steps")
    parser.add_argument("--max-seconds", type=float, help="stop after S seconds")
    parser.add_argument("--seed", type=int, default=0, help="default %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="output .pt file (generator weights)")
    args = parser.parse_args(argv)
    if args.steps is None and args.max_seconds is None:
        print("error: give a budget: --steps N and/or --max-seconds S", file=sys.stderr)
        return 2
    result = train_gan(load_sprites("train"), args.steps, args.max_seconds, args.seed)
    save_gan(args.out, result, seed=args.seed,
             command="python -m course_lib.gan " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"wrote {args.out}: {result.step} steps in {result.seconds:.0f} s, "
          f"final losses D {result.d_losses[-1]:.3f}, G {result.g_losses[-1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
