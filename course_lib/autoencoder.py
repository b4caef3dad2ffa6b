"""The small autoencoder of latent diffusion (Rombach et al. 2022), for 32x32 colour pictures (notebook 08).

Latent diffusion trains the diffusion model on z = E(x) instead of x, then decodes its samples with D.
Here E maps (B, 3, 32, 32) to (B, C, 8, 8) (C = 4: 256 numbers instead of 3,072) and D maps back.
It is a VAE with a light KL term, as in Rombach et al.'s "KL-reg" first stage: the encoder gives a mean and a
log-variance, training decodes a noisy draw z = mean + sigma * eps, and a KL weight of 1e-4 keeps the
latents near N(0, I) without blurring the reconstructions. The decoder thus learns to cope with latents
that are slightly off, which is what a diffusion model's samples will be.

The diffusion model sees ``scale * mean``, with ``scale = latent_scale_factor(latents)`` = 1 / std of the
training latents, so that they have unit variance like the pixels of the data the noise schedules were
designed for (Rombach et al. 2022, sec. 4.3.2 and appendix G, rescale by 1/sigma estimated from data).

The shipped ``assets/sprites_autoencoder.pt`` was made by the command in ``ASSET_COMMAND``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._io import write_atomically
from ._validate import require_float_tensor, require_int
from .data import ImageDataset, iterate_batches
from .progress import progress_bar

FORMAT = "diffusion-course autoencoder v1"
DOWNSAMPLING = 4     # two stride-2 convolutions: a latent pixel per 4 x 4 picture pixels
ASSET = Path(__file__).resolve().parent / "assets" / "sprites_autoencoder.pt"
ASSET_COMMAND = ("python -m course_lib.autoencoder --dataset sprites --steps 1500 --seed 0 "
                 "--out course_lib/assets/sprites_autoencoder.pt")


class Autoencoder(nn.Module):
    """VAE with a light KL term: encode (B, 3, 32, 32) -> mean, logvar (B, C, 8, 8); decode (B, C, 8, 8) -> (B, 3, 32, 32).

    Two stride-2 convolutions down, two nearest-neighbour upsamplings (each followed by a 3x3 conv) up;
    the decoder ends in tanh so pictures stay in [-1, 1].
    """

    def __init__(self, in_channels: int = 3, latent_channels: int = 4, width: int = 32):
        super().__init__()
        self.config = {"in_channels": in_channels, "latent_channels": latent_channels, "width": width}
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),          # 32 -> 16
            nn.Conv2d(2 * w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),      # 16 -> 8
            nn.Conv2d(2 * w, 2 * latent_channels, 3, padding=1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 2 * w, 3, padding=1), nn.SiLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),   # 8 -> 16
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, w, 3, padding=1), nn.SiLU(),       # 16 -> 32
            nn.Conv2d(w, in_channels, 3, padding=1), nn.Tanh())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x), each (B, C, H/4, W/4)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


# ---------------------------------------------------------------- the formulas
def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 (mean^2 + exp(logvar) - 1 - logvar), averaged over elements."""
    return 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()


def vae_loss(model: Autoencoder, x: torch.Tensor, kl_weight: float, noise: torch.Tensor) -> torch.Tensor:
    """Reconstruction MSE of a reparameterised draw z = mean + exp(logvar / 2) * noise, plus kl_weight * KL."""
    mean, logvar = model.encode(x)
    z = mean + (0.5 * logvar).exp() * noise
    return F.mse_loss(model.decode(z), x) + kl_weight * kl_to_standard_normal(mean, logvar)


def latent_scale_factor(latents: torch.Tensor) -> torch.Tensor:
    """1 / (standard deviation of every element of latents (N, C, H, W)): a 0-d tensor; scale * latents has std 1."""
    return 1 / latents.std()


# ---------------------------------------------------------------- training, saving, loading
def train_autoencoder(dataset: ImageDataset, steps: int, seed: int = 0, batch_size: int = 32, lr: float = 2e-3,
                      kl_weight: float = 1e-4, latent_channels: int = 4, progress: bool = True):
    """Train an Autoencoder on dataset.images (N, 3, 32, 32) for ``steps`` Adam steps, seeded.

    Returns (model in eval mode, scale, loss history, seconds); scale = latent_scale_factor of the
    encoded training set's means.
    """
    require_int(steps, "steps", minimum=1)
    torch.manual_seed(seed)
    model = Autoencoder(dataset.images.shape[1], latent_channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    batches = iterate_batches(dataset, batch_size, seed=seed)
    history, start = [], time.perf_counter()
    for _ in progress_bar(range(steps), desc="autoencoder", unit="step", disable=not progress):
        x, _ = next(batches)
        noise = torch.randn((x.shape[0], latent_channels, x.shape[2] // 4, x.shape[3] // 4), generator=generator)
        loss = vae_loss(model, x, kl_weight, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    model.eval()
    with torch.no_grad():
        scale = latent_scale_factor(encode_means(model, dataset.images)).item()
    return model, scale, history, time.perf_counter() - start


@torch.no_grad()
def encode_means(model: Autoencoder, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The encoder's means for images (N, 3, 32, 32), in batches: (N, C, 8, 8) (unscaled)."""
    return torch.cat([model.encode(images[i:i + batch_size])[0] for i in range(0, len(images), batch_size)])


def payload_of(model: Autoencoder, scale: float, **extra) -> dict:
    """A checkpoint dict (tensors and plain values only) that ``from_payload`` turns back into the model."""
    return {"format": FORMAT, "config": dict(model.config), "state_dict": model.state_dict(), "scale": scale, **extra}


def from_payload(payload: dict) -> tuple[Autoencoder, float]:
    """(Autoencoder in eval mode, latent scale) from ``payload_of``'s dict; ValueError for anything else."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a diffusion-course autoencoder (expected format {FORMAT!r})")
    model = Autoencoder(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), float(payload["scale"])


def load_autoencoder(path=ASSET) -> tuple[Autoencoder, float, dict]:
    """(model in eval mode, latent scale, the whole payload) from a file written by this module's command."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no autoencoder file at {path}; make one with `{ASSET_COMMAND}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (pickle, zip, EOF) for a damaged file
        raise ValueError(f"{path}: not a readable autoencoder ({type(error).__name__}: {error})") from None
    try:
        model, scale = from_payload(payload)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return model, scale, payload


def latent_dataset(model: Autoencoder, scale: float, dataset: ImageDataset) -> ImageDataset:
    """The dataset with each image replaced by its scaled latent, scale * mean of q(z | x): (N, C, 8, 8)."""
    return ImageDataset(scale * encode_means(model, dataset.images), dataset.labels, dataset.class_names)


@torch.no_grad()
def decode_latents(model: Autoencoder, scale: float, z: torch.Tensor) -> torch.Tensor:
    """Pictures (B, 3, 32, 32) in [-1, 1] from scaled latents z (B, C, 8, 8): D(z / scale)."""
    require_float_tensor(z, "z")
    return model.decode(z / scale)


def main(argv: list[str] | None = None) -> int:
    """``python -m course_lib.autoencoder``: train the autoencoder on a dataset and write it (with its command)."""
    import sys

    from .sprites import load_sprites

    parser = argparse.ArgumentParser(prog="python -m course_lib.autoencoder",
                                     description="Train the latent-diffusion autoencoder (32x32x3 -> 8x8x4).")
    parser.add_argument("--dataset", default="sprites", help="sprites or folder:DIR; default %(default)s")
    parser.add_argument("--steps", type=int, default=1500, help="default %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="default %(default)s")
    parser.add_argument("--kl-weight", type=float, default=1e-4, help="default %(default)s")
    parser.add_argument("--out", type=Path, required=True, help="output .pt file")
    args = parser.parse_args(argv)
    try:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        kind, _, directory = args.dataset.partition(":")
        if kind == "sprites" and not directory:
            dataset = load_sprites("train")
        elif kind == "folder" and directory:
            from .data import load_image_folder
            dataset = load_image_folder(directory, size=32, channels=3)
        else:
            raise ValueError(f"unknown dataset {args.dataset!r}; expected sprites or folder:DIR")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model, scale, history, seconds = train_autoencoder(dataset, args.steps, args.seed, kl_weight=args.kl_weight)
    with torch.no_grad():
        mse = F.mse_loss(model.decode(model.encode(dataset.images[:512])[0]), dataset.images[:512]).item()
    payload = payload_of(model, scale, command="python -m course_lib.autoencoder " + " ".join(argv or sys.argv[1:]),
                         seconds=seconds, seed=args.seed, loss_history=history, reconstruction_mse=mse)
    write_atomically(args.out, lambda temporary: torch.save(payload, temporary))
    print(f"wrote {args.out}: reconstruction MSE {mse:.4f}, latent scale {scale:.3f}, {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
