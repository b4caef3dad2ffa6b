"""``python -m course_lib sample``: samples from a checkpoint (checkpoints.py), written as .npy or a .png grid.

    _sampling_model   the network the sampler calls: unconditional, conditional or classifier-free guided
    _parse_labels     --label values (class numbers, or all) -> class indices
    sample_command    everything checked first (paths, sampler, steps, labels, memory), then sampling, one file
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from .cli import png_bytes, require_writable_directory, usage_error

DEFAULT_DDIM_STEPS = 50
SAMPLE_OPTION_FLAGS = {"guidance_scale": "--guidance", "seed": "--seed", "steps": "--steps"}
READABLE_PIXELS = 64   # sample grids: each image enlarged to about this height, so a digit reads without zooming
GRID_SEPARATOR = 2     # pixels of grey between the images of a grid


def _write_atomically(path: Path, data: bytes) -> None:
    from ._io import write_atomically

    write_atomically(path, lambda temporary: temporary.write_bytes(data))


def _sampling_model(model, y, guidance, flow=False):
    """The network the sampler calls: unconditional (y None), conditional on labels y (B,), or classifier-free guided."""
    import torch

    if y is None:
        return model
    if guidance is None:
        return lambda x, t: model(x, t, y=y)
    if flow:   # a velocity in continuous time: the same combination, without the integer-timestep wrapper
        from .guidance import guided_eps

        null = torch.full_like(y, model.num_classes)
        return lambda x, t: guided_eps(model(x, t, y=y), model(x, t, y=null), guidance)
    from .guidance import cfg_model   # imported here: only guided sampling needs it

    return cfg_model(model, y, guidance, model.num_classes)


def _parse_labels(values: list, num_classes, checkpoint) -> list:
    """--label values (ints, or the single word all) -> a list of class indices; ValueError otherwise."""
    if num_classes is None:
        raise ValueError(f"--label: {checkpoint} holds an unconditional model (trained without --conditional)")
    if values == ["all"]:
        return list(range(num_classes))
    try:
        labels = [int(value) for value in values]
    except ValueError:
        raise ValueError(f"--label takes class numbers (e.g. 3 or 1 4 7) or the word all, got {' '.join(values)}") from None
    outside = [label for label in labels if not 0 <= label < num_classes]
    if outside:
        raise ValueError(f"--label must lie in 0..{num_classes - 1} (or be all), got {outside[0]}")
    return labels


def sample_command(args: argparse.Namespace) -> int:
    """``sample``: draw --n samples from a checkpoint and write them as .npy or a .png grid."""
    import numpy as np
    import torch

    from . import limits
    from .devices import pick_device
    from .sampling import sample
    from .checkpoints import load_checkpoint
    from .viz import image_grid

    try:  # everything is checked before sampling starts
        if args.out.suffix not in (".npy", ".png"):
            raise ValueError(f"--out must end in .npy (float32 array) or .png (image grid), got {args.out}")
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        if not 0 <= args.seed < 2**64:
            raise ValueError(f"--seed must lie in 0..2**64-1 (what torch.Generator takes), got {args.seed}")
        require_writable_directory("--out", args.out)
        device = pick_device(args.device)
        model, schedule, info = load_checkpoint(args.checkpoint, map_location=device)
        if args.guidance is not None and args.label is None:
            raise ValueError("--guidance needs --label Y (the class to guide towards)")
        labels = None if args.label is None else _parse_labels(args.label, model.num_classes, args.checkpoint)
        if args.scale is not None and args.scale < 1:
            raise ValueError(f"--scale must be >= 1, got {args.scale}")
        flow = info["config"].parameterization == "flow"
        if flow and args.sampler in ("ddpm", "ddim") or not flow and args.sampler in ("euler", "heun"):
            raise ValueError(f"--sampler {args.sampler}: {args.checkpoint} holds a "
                             f"{'flow-matching' if flow else 'diffusion'} model; use --sampler "
                             f"{'euler or heun' if flow else 'ddpm or ddim'}")
        args.sampler = args.sampler or ("euler" if flow else "ddim")
        steps = args.steps
        if flow and steps is None:
            steps = DEFAULT_DDIM_STEPS
        if flow and steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        if flow and args.eta != 0:
            raise ValueError("--eta applies to --sampler ddim only (flow samplers are deterministic ODE solvers)")
        if args.sampler == "ddpm" and steps is not None and steps != schedule.T:
            raise ValueError(f"DDPM visits all T={schedule.T} timesteps, so --steps must be {schedule.T} or left "
                             f"out; for {steps} steps use --sampler ddim (add --eta 1 for DDPM-like noise)")
        if args.sampler == "ddim" and steps is None:
            steps = DEFAULT_DDIM_STEPS
        if args.sampler == "ddpm" and args.eta != 0:
            raise ValueError("--eta applies to --sampler ddim only")
        if steps is not None and not flow and not 1 <= steps <= schedule.T:
            raise ValueError(f"--steps must lie in 1..{schedule.T}, got {steps}")
        if not 0 <= args.eta <= 1:
            raise ValueError(f"--eta must lie in [0, 1], got {args.eta}")
        y = None if labels is None else torch.tensor(labels, dtype=torch.int64).repeat_interleave(args.n)
        network = _sampling_model(model, y, args.guidance, flow)
        image_shape = info["dataset"]["image_shape"]
        count = args.n * (1 if labels is None else len(labels))
        if args.limits:
            pictures = (f"--n {args.n}{'' if labels is None else f' x {len(labels)} labels'} pictures of "
                        f"{'x'.join(map(str, image_shape))}")
            limits.require_within(limits.sampling_bytes(info["config"].unet, image_shape, count,
                                                        1 if args.guidance is None else 2),
                                  f"sampling {pictures} at once", "lower --n (and run again with another --seed "
                                  "for more)")
            if args.out.suffix == ".png":
                scale = args.scale or max(1, READABLE_PIXELS // image_shape[1])
                limits.require_within(limits.picture_grid_bytes(count, image_shape, scale),
                                      f"a PNG grid of {pictures} enlarged {scale} times",
                                      "lower --n or --scale, or write --out FILE.npy")
            if flow:
                limits.require_within(limits.TIME_GRID_BYTES_PER_STEP * steps, f"--steps {steps}",
                                      "flow samplers gain nothing past a few hundred steps")
    except (TypeError, ValueError, FileNotFoundError, ImportError) as error:
        return usage_error(error, SAMPLE_OPTION_FLAGS)
    shape = (count, *image_shape)
    if flow:
        from .flows import sample_flow, velocity_fn

        noise = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed)).to(device)
        samples = sample_flow(velocity_fn(network), noise, steps, args.sampler, model=model, progress=True).images
    else:
        samples = sample(network, schedule, shape, sampler=args.sampler, steps=steps, eta=args.eta, seed=args.seed,
                         clip_x0=not args.no_clip and info["latent"] is None,   # latents are not in [-1, 1]
                         parameterization=info["config"].parameterization, device=device).images
    samples = samples.cpu()
    if info["latent"] is not None:   # latent diffusion: the samples are latents; decode them to pictures
        from .autoencoder import decode_latents, from_payload

        samples = decode_latents(*from_payload(info["latent"]), samples)
    if not torch.isfinite(samples).all():       # clamp would turn NaN into plausible-looking pixels
        hint = "" if args.guidance is None else f"; with --guidance {args.guidance}, try a smaller scale"
        print(f"error: the samples hold NaN or infinite values (an overflow{hint}); nothing written", file=sys.stderr)
        return 1
    images = ((samples.clamp(-1, 1) + 1) / 2).to(torch.float32)          # [-1, 1] -> [0, 1]
    if args.out.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, images.numpy())
        data = buffer.getvalue()
    else:
        scale = args.scale or max(1, READABLE_PIXELS // images.shape[2])
        data = png_bytes(image_grid(images * 2 - 1, ncols=None if labels is None else args.n, pad=GRID_SEPARATOR,
                                     scale=scale, pad_value=0.5))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(args.out, data)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error}", file=sys.stderr)
        return 1
    rows = "" if labels is None else f" ({len(labels)} rows, one per label: {', '.join(map(str, labels))})"
    print(f"wrote {args.out}: {images.shape[0]} samples of shape {tuple(images.shape[1:])}{rows}")
    return 0
