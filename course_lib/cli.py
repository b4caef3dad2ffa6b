"""The command line's commands; ``__main__.py`` parses the arguments and calls one of these.

Each command checks what it was given before starting (paths here, settings by the configs), prints errors
as one line on stderr and returns the exit status: 0 done, 1 runtime failure, 2 usage error.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from dataclasses import replace
from pathlib import Path

DEFAULT_DDIM_STEPS = 50
# TrainConfig fields the train command sets from its options (type, help); defaults come from TrainConfig.
TRAIN_OPTIONS = {
    "steps": (int, "train until this many optimizer steps in total (give --steps and/or --max-seconds)"),
    "max_seconds": (float, "stop this run after this many seconds"),
    "seed": (int, "seeds the weights, batches, timesteps, noise and dropped labels"),
    "batch_size": (int, "images per optimizer step"),
    "lr": (float, "AdamW learning rate"),
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
                      "base_channels": "--base-channels", "channel_mults": "--channel-mults", "size": "--image-size"}
SAMPLE_OPTION_FLAGS = {"guidance_scale": "--guidance", "seed": "--seed", "steps": "--steps"}
PROCEDURAL_OPTIONS = {"height": "--height", "width": "--width", "channels": "--channels", "T": "--steps",
                      "seed": "--seed", "easing": "--easing"}
READABLE_PIXELS = 64   # sample grids: each image enlarged to about this height, so a digit reads without zooming
GRID_SEPARATOR = 2     # pixels of grey between the images of a grid
LONG_RUN = 2e8   # pixel-channel-records in a procedural run worth a progress bar (about a second)


def _usage_error(error: Exception, flags: dict) -> int:
    """Print ``error`` as one line on stderr, a leading library name (grad_clip) spelled as its option
    (--grad-clip); return 2, the exit status of a usage error."""
    name, _, rest = str(error).partition(" ")
    print(f"error: {flags.get(name, name)} {rest}".rstrip(), file=sys.stderr)
    return 2


def build_notebooks(args: argparse.Namespace) -> int:
    """``build-notebooks``: refresh solutions' grading metadata and write notebooks/ (optionally executing
    solutions first), or --check."""
    if not args.solutions.is_dir():
        print(f"error: no folder {args.solutions.resolve()}: run this in the course's folder or pass --solutions",
              file=sys.stderr)
        return 2
    try:
        _require_writable_directory("--notebooks", args.notebooks / "notebook.ipynb")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        from .authoring import AuthoringError, build, execute_solutions
    except ImportError as error:
        print(f"error: build-notebooks needs {error.name}: pip install 'course_lib[instructor]'", file=sys.stderr)
        return 1
    try:
        if args.execute is not None:
            execute_solutions(args.solutions, args.execute)
        changed = build(args.solutions, args.notebooks, check=args.check)
    except AuthoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if changed:
            print("notebooks/ or the solutions' grading metadata is out of date; run `python -m course_lib "
                  "build-notebooks`:\n  " + "\n  ".join(map(str, changed)), file=sys.stderr)
            return 1
        print("notebooks/ matches solutions/ and every solution carries its grading metadata")
        return 0
    print("\n".join(f"wrote {path}" for path in changed) or "notebooks/ already up to date")
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    from ._io import write_atomically

    write_atomically(path, lambda temporary: temporary.write_bytes(data))


def _png_bytes(image) -> bytes:
    from PIL import Image

    from .procedural import to_uint8

    pixels = to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _csv_bytes(records: list, columns) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue().encode()


def _short_list(values: list, shown: int = 6) -> str:
    """'a, b, c' for a few values; the first and last ``shown`` around '...' for many."""
    if len(values) <= 2 * shown:
        return ", ".join(map(str, values))
    return f"{', '.join(map(str, values[:shown]))}, ..., {', '.join(map(str, values[-shown:]))} ({len(values)} images)"


def procedural_demo(args: argparse.Namespace) -> int:
    """``procedural``: run the procedural demo and write final.png, steps.png and stats.csv to --out, as a set."""
    from . import limits, procedural
    from ._io import write_files_atomically

    try:  # everything is checked before anything is created
        procedural.validate_arguments(args.height, args.width, args.channels, args.steps, args.seed,
                                      args.easing, args.noise_schedule)
        if args.channels > 4:
            raise ValueError(f"--channels must be 1 to 4 to fit in a PNG (grey, grey + alpha, RGB, RGBA), "
                             f"got {args.channels}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out must be a directory; {args.out} is a file")
        _require_writable_directory("--out", args.out / "final.png")
        if args.limits:
            limits.require_within(
                limits.procedural_bytes(args.height, args.width, args.channels, args.steps, procedural.STATS_EVERY,
                                        procedural.SAVE_EVERY),
                f"--steps {args.steps} at {args.height}x{args.width}x{args.channels} (an image kept every "
                f"{procedural.SAVE_EVERY} steps)", "lower --steps, --height or --width")
    except (TypeError, ValueError) as error:
        return _usage_error(error, PROCEDURAL_OPTIONS)
    work = args.height * args.width * args.channels * (args.steps // procedural.STATS_EVERY + 1)
    result = procedural.generate(args.height, args.width, args.channels, args.steps, args.seed, args.easing,
                                 args.noise_schedule, save_steps=True, show_progress=work > LONG_RUN)
    files = {"final.png": _png_bytes(result.image),
             "steps.png": _png_bytes(procedural.steps_strip(result.steps)),
             "stats.csv": _csv_bytes(result.stats, procedural.STAT_KEYS)}
    try:
        write_files_atomically(args.out, files)      # all three or, if anything fails, none
    except OSError as error:
        print(f"error: cannot write to {args.out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(args.out / name) for name in files)} "
          f"(steps at t = {_short_list(result.step_t)})")
    return 0


# ---------------------------------------------------------------- train and sample
def _require_writable_directory(option: str, path: Path) -> None:
    """ValueError naming ``option`` unless ``path`` is not a folder and its folder exists (or can be made) and is
    writable."""
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a folder; give a file name")
    folder = path.resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write {path}: {folder} is not a writable directory")


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
                _require_writable_directory(option, path)
        # The settings first (within a second, before a dataset is read); channels and classes come from it.
        mults = {} if args.channel_mults is None else {"channel_mults": tuple(args.channel_mults)}
        config = TrainConfig(unet=UNetConfig(base_channels=args.base_channels, **mults), flip=args.flip,
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
        layout = (unet_layout(dataset.image_shape[-1]) if args.channel_mults is None
                  else {"channel_mults": tuple(args.channel_mults)})
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
                                  "lower --batch-size, --image-size, --base-channels or --channel-mults")
        device = pick_device(args.device)
    except (TypeError, ValueError, FileNotFoundError) as error:
        return _usage_error(error, TRAIN_OPTION_FLAGS)
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
        return _usage_error(error, TRAIN_OPTION_FLAGS)
    if not distributed.is_main():
        return 0
    exported = f" and {args.export}" if args.export else ""
    print(f"wrote {args.out}{exported}: step {result.step}, final loss {result.loss_history[-1]:.4f}, "
          f"{result.seconds:.0f} s of training")
    return 0


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
        _require_writable_directory("--out", args.out)
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
        return _usage_error(error, SAMPLE_OPTION_FLAGS)
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
        data = _png_bytes(image_grid(images * 2 - 1, ncols=None if labels is None else args.n, pad=GRID_SEPARATOR,
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
