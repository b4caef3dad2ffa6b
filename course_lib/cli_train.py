"""``python -m course_lib train``: the options become a TrainConfig (config.py), and ``training.train`` runs it.

    TRAIN_OPTIONS   the TrainConfig fields set by options of the same name (``__main__.py`` adds them to the parser)
    _load_dataset   a --dataset spec (digits, sprites, mnist:DIR, fashion-mnist:DIR, folder:DIR) -> a dataset
    train_command   everything checked first (paths, settings, dataset, memory), then training, then one line
"""
from __future__ import annotations

import argparse
import os
from dataclasses import replace

from .cli import require_writable_directory, usage_error

# TrainConfig fields the train command sets from its options (type, help); defaults come from TrainConfig.
TRAIN_OPTIONS = {
    "steps": (int, "train until this many optimizer steps in total (give --steps and/or --max-seconds)"),
    "max_seconds": (float, "stop this run after this many seconds"),
    "seed": (int, "seeds the weights, batches, timesteps, noise and dropped labels"),
    "batch_size": (int, "images per optimizer step"),
    "lr": (float, "AdamW learning rate"),
    "lr_schedule": (str, "the learning rate over the run: constant, or cosine (decays to 0 at --steps, "
                         "Loshchilov & Hutter 2017)"),
    "weight_decay": (float, "AdamW weight decay"),
    "grad_clip": (float, "clip the gradient norm at this value"),
    "ema_decay": (float, "beta of the EMA of the weights"),
    "label_dropout": (float, "probability of training a label as 'no label'"),
    "parameterization": (str, "what the U-Net learns: the noise eps, the clean image x0, the velocity v "
                              "(diffusion), or flow matching's velocity eps - x0 ('flow': rectified flow, "
                              "sampled with --sampler euler|heun); also spelled --objective"),
    "weighting": (str, "the loss's weight per timestep: uniform (L_simple) or min_snr (Hang et al. 2023, gamma 5)"),
    "schedule": (str, "noise schedule"),
    "T": (int, "number of timesteps"),
    "checkpoint_every": (int, "steps between checkpoints"),
}
# The library's names for what an option sets, in the messages of the configs and loaders -> the option.
TRAIN_OPTION_FLAGS = {**{name: "--T" if name == "T" else "--" + name.replace("_", "-") for name in TRAIN_OPTIONS},
                      "base_channels": "--base-channels", "channel_mults": "--channel-mults", "patch_size": "--patch-size",
                      "attention_levels": "--attention-levels", "size": "--image-size"}

DATASET_HELP = "digits (built in), sprites (built in, 32x32 colour), mnist:DIR, fashion-mnist:DIR (IDX files already on disk) or folder:DIR (pictures)"


def _load_dataset(spec: str, image_size: int, channels: int, limits: bool = True, in_memory: bool = False):
    """A training set from a --dataset spec; ValueError / FileNotFoundError for anything else. With ``limits``,
    IDX files larger than mnist.MAX_IDX_BYTES (compressed or not) are refused before they are read. A folder
    is read lazily by the training loop's workers unless ``in_memory``."""
    from . import data, mnist

    kind, _, directory = spec.partition(":")
    if kind == "digits" and not directory:
        return data.load_digits("train")
    if kind == "sprites" and not directory:
        from .sprites import load_sprites
        return load_sprites("train")
    if kind in ("mnist", "fashion-mnist") and directory:
        return mnist.load_mnist(directory, "train", fashion=kind == "fashion-mnist",
                                max_bytes=mnist.MAX_IDX_BYTES if limits else None)
    if kind == "folder" and directory:
        read = data.load_image_folder if in_memory else data.image_folder
        return read(directory, size=image_size, channels=channels)
    raise ValueError(f"unknown dataset {spec!r}; expected {DATASET_HELP}")


def train_command(args: argparse.Namespace) -> int:
    """``train``: build the TrainConfig from the options and train, writing --out (and --export)."""
    from . import distributed, limits
    from .config import TrainConfig, UNetConfig, unet_layout
    from .devices import default_precision, pick_device
    from .training import train

    try:  # everything is checked before training starts: paths here, settings by the configs
        if args.out.suffix != ".pt":
            raise ValueError(f"--out must end in .pt, got {args.out}")
        if not 1 <= args.threads <= (os.cpu_count() or 1):
            raise ValueError(f"--threads must lie in 1..{os.cpu_count() or 1} (the CPUs of this machine), "
                             f"got {args.threads}")
        if args.resume and not args.out.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {args.out} to resume from")
        if args.resume and args.force:
            raise ValueError("--resume continues the checkpoint at --out and --force replaces it: give one")
        if args.out.exists() and not (args.resume or args.force):
            raise ValueError(f"--out {args.out} exists; add --resume to continue it or --force to replace it")
        if args.export is not None and (args.export.suffix != ".pt" or args.export.resolve() == args.out.resolve()):
            raise ValueError(f"--export must be a .pt file other than --out, got {args.export}")
        for option, path in (("--out", args.out), ("--export", args.export)):
            if path is not None:
                require_writable_directory(option, path)
        # The settings first (within a second, before a dataset is read); channels and classes come from it.
        mults = {} if args.channel_mults is None else {"channel_mults": tuple(args.channel_mults)}
        config = TrainConfig(unet=UNetConfig(base_channels=args.base_channels, patch_size=args.patch_size, **mults),
                             flip=args.flip,
                             **{name: getattr(args, name) for name in TRAIN_OPTIONS})
        if args.limits:
            limits.require_within(limits.SCHEDULE_TABLE_BYTES * args.T, f"--T {args.T} (the noise schedule's tables)",
                                  "use a few thousand timesteps at most (1000 is usual)")
        dataset = _load_dataset(args.dataset, args.image_size, args.channels, args.limits,
                                in_memory=args.latent is not None)     # the autoencoder encodes all of it at once
        if args.conditional and dataset.labels is None:
            raise ValueError(f"--conditional needs labels, and dataset {args.dataset!r} has none "
                             f"(a folder needs one sub-folder per class)")
        latent = None
        if args.latent is not None:
            from . import autoencoder

            ae, scale, _ = autoencoder.load_autoencoder(args.latent)
            if dataset.image_shape[0] != ae.config["in_channels"]:
                raise ValueError(f"--latent: {args.latent} encodes {ae.config['in_channels']}-channel pictures, "
                                 f"dataset {args.dataset!r} has {dataset.image_shape[0]} channels")
            if any(size % autoencoder.DOWNSAMPLING for size in dataset.image_shape[1:]):
                raise ValueError(f"--latent: the autoencoder halves the picture size twice, so it must be a "
                                 f"multiple of {autoencoder.DOWNSAMPLING}; got {dataset.image_shape[1]} "
                                 f"(set --image-size)")
            dataset = autoencoder.latent_dataset(ae, scale, dataset)
            latent = autoencoder.payload_of(ae, scale)
        if config.unet.patch_size > min(dataset.image_shape[1:]):
            raise ValueError(f"--patch-size must be at most the picture size ({min(dataset.image_shape[1:])} px for "
                             f"dataset {args.dataset!r}), got {config.unet.patch_size}")
        layout = (unet_layout(dataset.image_shape[-1] // config.unet.patch_size) if args.channel_mults is None
                  else {"channel_mults": tuple(args.channel_mults), "attention_levels": ()})
        if args.attention_levels is not None:
            layout["attention_levels"] = tuple(args.attention_levels)
        config = replace(config, unet=replace(config.unet, in_channels=dataset.image_shape[0], **layout,
                                              num_classes=len(dataset.class_names) if args.conditional else None))
        if len(dataset) < config.batch_size:
            raise ValueError(f"--batch-size {config.batch_size} is larger than the dataset {args.dataset!r} "
                             f"({len(dataset)} images); lower --batch-size or add pictures")
        if args.limits:
            shape = "x".join(map(str, dataset.image_shape))
            limits.require_within(limits.training_bytes(config, dataset.image_shape),
                                  f"training a U-Net of --base-channels {args.base_channels} --channel-mults "
                                  f"{' '.join(map(str, config.unet.channel_mults))} on batches of --batch-size "
                                  f"{args.batch_size} pictures of {shape}",
                                  "lower --batch-size, --image-size, --base-channels or --channel-mults (or raise "
                                  "--patch-size)")
        device = pick_device(args.device)
    except (TypeError, ValueError, FileNotFoundError) as error:
        return usage_error(error, TRAIN_OPTION_FLAGS)
    command = "python -m course_lib " + " ".join(args.argv)
    import torch

    torch.set_num_threads(args.threads)
    workers = 2 if args.dataset.startswith("folder:") else 0       # decoding pictures is worth a process
    try:
        with distributed.process_group(device) as device:      # under torchrun: this process's share of the work
            result = train(config, dataset, checkpoint=args.out, resume=args.resume, export=args.export,
                           dataset_name=args.dataset, command=command, num_workers=workers, latent=latent,
                           device=device, precision=args.precision or default_precision(device))
    except (TypeError, ValueError) as error:
        return usage_error(error, TRAIN_OPTION_FLAGS)
    if not distributed.is_main():
        return 0
    exported = f" and {args.export}" if args.export else ""
    print(f"wrote {args.out}{exported}: step {result.step}, final loss {result.loss_history[-1]:.4f}, "
          f"{result.seconds:.0f} s of training")
    return 0
