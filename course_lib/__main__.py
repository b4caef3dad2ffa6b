"""Command line: ``python -m course_lib <command> --help``."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
    "parameterization": (str, "what the U-Net outputs"),
    "schedule": (str, "noise schedule"),
    "T": (int, "number of timesteps"),
    "checkpoint_every": (int, "steps between checkpoints"),
}
LONG_RUN = 2e8   # pixel-channel-records in a procedural run worth a progress bar (about a second)


def build_notebooks(args: argparse.Namespace) -> int:
    from .authoring import AuthoringError, build, execute_solutions

    try:
        if args.execute is not None:
            execute_solutions(args.solutions, args.execute)
        differing = build(args.solutions, args.notebooks, check=args.check)
    except AuthoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if differing:
            print("notebooks/ is out of date with solutions/; run `python -m course_lib build-notebooks`:\n  "
                  + "\n  ".join(differing), file=sys.stderr)
            return 1
        print("notebooks/ matches solutions/")
        return 0
    print("\n".join(f"wrote {args.notebooks / name}" for name in differing) or "notebooks/ already up to date")
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


def procedural_demo(args: argparse.Namespace) -> int:
    from . import procedural

    try:  # everything is checked before anything is created
        procedural.validate_arguments(args.height, args.width, args.channels, args.steps, args.seed,
                                      args.easing, args.noise_schedule)
        if args.channels > 4:
            raise ValueError(f"--channels must be 1 to 4 to fit in a PNG (grey, grey + alpha, RGB, RGBA), "
                             f"got {args.channels}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out must be a directory; {args.out} is a file")
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    work = args.height * args.width * args.channels * (args.steps // procedural.STATS_EVERY + 1)
    result = procedural.generate(args.height, args.width, args.channels, args.steps, args.seed, args.easing,
                                 args.noise_schedule, save_steps=True, show_progress=work > LONG_RUN)
    files = {"final.png": _png_bytes(result.image),
             "steps.png": _png_bytes(procedural.steps_strip(result.steps)),
             "stats.csv": _csv_bytes(result.stats, procedural.STAT_KEYS)}
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            _write_atomically(args.out / name, data)
    except OSError as error:
        print(f"error: cannot write to {args.out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {', '.join(str(args.out / name) for name in files)} "
          f"(steps at t = {', '.join(map(str, result.step_t))})")
    return 0


# ---------------------------------------------------------------- train and sample
DATASET_HELP = "digits (built in), mnist:DIR, fashion-mnist:DIR (IDX files already on disk) or folder:DIR (pictures)"


def _load_dataset(spec: str, image_size: int, channels: int):
    """A training set from a --dataset spec; ValueError / FileNotFoundError for anything else."""
    from . import data

    kind, _, directory = spec.partition(":")
    if kind == "digits" and not directory:
        return data.load_digits("train")
    if kind in ("mnist", "fashion-mnist") and directory:
        return data.load_mnist(directory, "train", fashion=kind == "fashion-mnist")
    if kind == "folder" and directory:
        return data.image_folder(directory, size=image_size, channels=channels)     # read lazily by workers
    raise ValueError(f"unknown dataset {spec!r}; expected {DATASET_HELP}")


def train_command(args: argparse.Namespace) -> int:
    from .config import TrainConfig, UNetConfig
    from .training import train

    try:  # everything is checked before training starts: paths here, settings by the configs
        if args.out.suffix != ".pt":
            raise ValueError(f"--out must end in .pt, got {args.out}")
        if args.resume and not args.out.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {args.out} to resume from")
        if args.export is not None and (args.export.suffix != ".pt" or args.export.resolve() == args.out.resolve()):
            raise ValueError(f"--export must be a .pt file other than --out, got {args.export}")
        dataset = _load_dataset(args.dataset, args.image_size, args.channels)
        if args.conditional and dataset.labels is None:
            raise ValueError(f"--conditional needs labels, and dataset {args.dataset!r} has none "
                             f"(a folder needs one sub-folder per class)")
        unet = UNetConfig(in_channels=dataset.image_shape[0], base_channels=args.base_channels,
                          channel_mults=tuple(args.channel_mults),
                          num_classes=len(dataset.class_names) if args.conditional else None)
        config = TrainConfig(unet=unet, **{name: getattr(args, name) for name in TRAIN_OPTIONS})
    except (TypeError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = "python -m course_lib " + " ".join(args.argv)
    workers = 2 if args.dataset.startswith("folder:") else 0       # decoding pictures is worth a process
    try:
        result = train(config, dataset, checkpoint=args.out, resume=args.resume, export=args.export,
                       dataset_name=args.dataset, command=command, num_workers=workers)
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    exported = f" and {args.export}" if args.export else ""
    print(f"wrote {args.out}{exported}: step {result.step}, final loss {result.loss_history[-1]:.4f}, "
          f"{result.seconds:.0f} s of training")
    return 0


def _sampling_model(model, label, guidance, n):
    """The network the sampler calls: unconditional, conditional on one label, or classifier-free guided."""
    import torch

    if label is None:
        return model
    y = torch.full((n,), label, dtype=torch.int64)
    if guidance is None:
        return lambda x, t: model(x, t, y=y)
    from .guidance import cfg_model   # imported here: only guided sampling needs it

    return cfg_model(model, y, guidance, model.num_classes)


def sample_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .sampling import sample
    from .training import load_checkpoint
    from .viz import image_grid

    try:  # everything is checked before sampling starts
        if args.out.suffix not in (".npy", ".png"):
            raise ValueError(f"--out must end in .npy (float32 array) or .png (image grid), got {args.out}")
        if args.n < 1:
            raise ValueError(f"--n must be >= 1, got {args.n}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        model, schedule, info = load_checkpoint(args.checkpoint)
        if args.guidance is not None and args.label is None:
            raise ValueError("--guidance needs --label Y (the class to guide towards)")
        if args.label is not None:
            if model.num_classes is None:
                raise ValueError(f"--label: {args.checkpoint} holds an unconditional model (trained without "
                                 f"--conditional)")
            if not 0 <= args.label < model.num_classes:
                raise ValueError(f"--label must lie in 0..{model.num_classes - 1}, got {args.label}")
        steps = args.steps
        if args.sampler == "ddpm" and steps is not None and steps != schedule.T:
            raise ValueError(f"DDPM visits all T={schedule.T} timesteps, so --steps must be {schedule.T} or left "
                             f"out; for {steps} steps use --sampler ddim (add --eta 1 for DDPM-like noise)")
        if args.sampler == "ddim" and steps is None:
            steps = DEFAULT_DDIM_STEPS
        if args.sampler == "ddpm" and args.eta != 0:
            raise ValueError("--eta applies to --sampler ddim only")
        if steps is not None and not 1 <= steps <= schedule.T:
            raise ValueError(f"--steps must lie in 1..{schedule.T}, got {steps}")
        if not 0 <= args.eta <= 1:
            raise ValueError(f"--eta must lie in [0, 1], got {args.eta}")
        network = _sampling_model(model, args.label, args.guidance, args.n)
    except (TypeError, ValueError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    shape = (args.n, *info["dataset"]["image_shape"])
    samples = sample(network, schedule, shape, sampler=args.sampler, steps=steps, eta=args.eta, seed=args.seed,
                     clip_x0=not args.no_clip, parameterization=info["config"].parameterization).images
    images = ((samples.clamp(-1, 1) + 1) / 2).to(torch.float32)          # [-1, 1] -> [0, 1]
    if args.out.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, images.numpy())
        data = buffer.getvalue()
    else:
        data = _png_bytes(image_grid(images * 2 - 1))
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(args.out, data)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {args.n} samples of shape {tuple(shape[1:])}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description="diffusion-course tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build-notebooks", help="write notebooks/ (student copies) from solutions/",
                                description="Write the student copies in notebooks/ from the instructor "
                                            "notebooks in solutions/: solution regions become stubs, outputs "
                                            "are cleared.")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if notebooks/ differs from what the build would write")
    build.add_argument("--execute", nargs="*", metavar="NAME",
                       help="first run the solution notebooks (all, or those whose names start with NAME) "
                            "and store their outputs")
    build.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="default: %(default)s")
    build.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="default: %(default)s")
    build.set_defaults(run=build_notebooks)

    from .config import TrainConfig, UNetConfig, default
    from .forward import PARAMETERIZATIONS
    from .procedural import EASINGS, NOISE_SCHEDULES
    from .schedules import SCHEDULE_NAMES

    demo = commands.add_parser("procedural", help="run the procedural demo of notebook 02 (seed 000)",
                               description="Blend noise into a random sine pattern over T steps (not a trained "
                                           "model: the target is drawn first). Writes final.png, steps.png (the "
                                           "images at every t divisible by 10, from the first to t = 0, left to right) and "
                                           "stats.csv (t, mean, std, min, max, noise_level every 5 steps) to DIR.")
    demo.add_argument("--height", type=int, default=128, help="image height in pixels; default %(default)s")
    demo.add_argument("--width", type=int, default=128, help="image width in pixels; default %(default)s")
    demo.add_argument("--channels", type=int, default=3, help="1 (grey) to 4 (RGBA); default %(default)s")
    demo.add_argument("--steps", type=int, default=50, metavar="T", help="number of steps T; default %(default)s")
    demo.add_argument("--seed", type=int, default=0, help="random seed (>= 0); default %(default)s")
    demo.add_argument("--easing", choices=sorted(EASINGS), default="cubic", help="default %(default)s")
    demo.add_argument("--noise-schedule", choices=sorted(NOISE_SCHEDULES), default="quadratic",
                      help="default %(default)s")
    demo.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="output directory (created if missing; files in it are replaced)")
    demo.set_defaults(run=procedural_demo)

    trainer = commands.add_parser(
        "train", help="train a diffusion U-Net and write a checkpoint",
        description="Train a U-Net with L_simple (AdamW, gradient clipping, EMA), seeded: the same command gives "
                    "the same weights. Writes a checkpoint every --checkpoint-every steps and at the end "
                    "(atomically: an interrupted run leaves the previous checkpoint intact); --resume "
                    "continues from it, to the same weights as one uninterrupted run.")
    trainer.add_argument("--dataset", default="digits", help=f"{DATASET_HELP}; default %(default)s")
    trainer.add_argument("--conditional", action="store_true",
                         help="class-conditional, with label dropout for classifier-free guidance")
    trainer.add_argument("--out", type=Path, required=True, metavar="CKPT", help="checkpoint file (.pt)")
    trainer.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    trainer.add_argument("--export", type=Path, metavar="SMALL_CKPT",
                         help="at the end, also write the EMA weights alone to this .pt file (small, to ship or "
                              "sample from; cannot be resumed)")
    trainer.add_argument("--image-size", type=int, default=32, help="folder datasets: resize to this; default %(default)s")
    trainer.add_argument("--channels", type=int, choices=[1, 3], default=3, help="folder datasets; default %(default)s")
    trainer.add_argument("--base-channels", type=int, default=default(UNetConfig, "base_channels"),
                         help="U-Net width; default %(default)s")
    trainer.add_argument("--channel-mults", type=int, nargs="+", default=list(default(UNetConfig, "channel_mults")),
                         help="one width multiplier per U-Net level; default %(default)s")
    for name, (kind, text) in TRAIN_OPTIONS.items():
        flag = "--T" if name == "T" else "--" + name.replace("_", "-")
        choices = {"parameterization": PARAMETERIZATIONS, "schedule": SCHEDULE_NAMES}
        extra = {"choices": choices[name]} if name in choices else {}
        shown = "" if default(TrainConfig, name) is None else "; default %(default)s"
        trainer.add_argument(flag, type=kind, default=default(TrainConfig, name), help=text + shown, **extra)
    trainer.set_defaults(run=train_command)

    sampler = commands.add_parser(
        "sample", help="draw samples from a checkpoint",
        description="Run the reverse process from a checkpoint's EMA weights. --out FILE.npy writes a float32 "
                    "array (N, C, H, W) in [0, 1]; FILE.png an image grid. DDPM always takes all T steps; "
                    "for fewer, use --sampler ddim (with --eta 1 for DDPM-like noise).")
    sampler.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT")
    sampler.add_argument("--n", type=int, default=16, help="number of samples; default %(default)s")
    sampler.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddim", help="default %(default)s")
    sampler.add_argument("--steps", type=int, help=f"DDIM steps (default {DEFAULT_DDIM_STEPS}); DDPM: T only")
    sampler.add_argument("--eta", type=float, default=0.0, help="DDIM noise, 0 to 1; default %(default)s")
    sampler.add_argument("--label", type=int, help="class to sample (class-conditional checkpoints)")
    sampler.add_argument("--guidance", type=float,
                         help="classifier-free guidance scale w (1: plain conditional, 0: unconditional)")
    sampler.add_argument("--no-clip", action="store_true",
                         help="do not clamp each step's x0 estimate to [-1, 1] (clamping keeps DDIM's early, "
                              "very noisy steps from overshooting)")
    sampler.add_argument("--seed", type=int, default=0, help="default %(default)s")
    sampler.add_argument("--out", type=Path, required=True, metavar="FILE", help="FILE.npy or FILE.png")
    sampler.set_defaults(run=sample_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser().parse_args(argv)
    args.argv = argv
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
