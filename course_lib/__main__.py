"""Command line: ``python -m course_lib <command> --help`` (the commands themselves are in cli_notebooks.py,
cli_procedural.py, cli_train.py and cli_sample.py; what they share in cli.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_notebooks import build_notebooks
from .cli_procedural import procedural_demo
from .cli_sample import DEFAULT_DDIM_STEPS, READABLE_PIXELS, sample_command
from .cli_train import DATASET_HELP, TRAIN_OPTIONS, train_command
from .devices import DEVICES, PRECISIONS
from .limits import NO_LIMITS


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2), naming --help instead of printing the whole usage."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def add_device_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--device", choices=DEVICES, default="auto",
                         help="where to compute: auto (a CUDA GPU, else Apple's MPS, else the CPU), cpu, cuda or "
                              "mps; under torchrun each process takes its own GPU; default %(default)s")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m course_lib", description="diffusion-course tools; errors are one line "
                           "on stderr (exit 2: usage, 1: runtime); add --debug anywhere for the Python traceback, and "
                           f"{NO_LIMITS} to run what the memory estimate would refuse (course_lib/limits.py)")
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
    build.add_argument("--solutions", type=Path, default=Path("solutions"),
                       help="default: solutions/ in the current folder")
    build.add_argument("--notebooks", type=Path, default=Path("notebooks"),
                       help="default: notebooks/ in the current folder")
    build.set_defaults(run=build_notebooks)

    from .config import LR_SCHEDULES, OBJECTIVES, WEIGHTINGS, TrainConfig, default
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
                    "continues from it, to the same weights as one uninterrupted run. Several processes (GPUs): "
                    "torchrun --standalone --nproc_per_node N -m course_lib train ... (DistributedDataParallel; "
                    "--batch-size stays the global batch; process 0 prints and writes the checkpoint).")
    trainer.add_argument("--dataset", default="digits", help=f"{DATASET_HELP}; default %(default)s")
    trainer.add_argument("--conditional", action="store_true",
                         help="class-conditional, with label dropout for classifier-free guidance")
    trainer.add_argument("--out", type=Path, required=True, metavar="CKPT", help="checkpoint file (.pt)")
    trainer.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    trainer.add_argument("--force", action="store_true",
                         help="start afresh even if --out exists (its checkpoint is replaced at the first save)")
    trainer.add_argument("--export", type=Path, metavar="SMALL_CKPT",
                         help="at the end, also write the EMA weights alone to this .pt file (small, to ship or "
                              "sample from; cannot be resumed)")
    trainer.add_argument("--latent", type=Path, metavar="AE_CKPT",
                         help="latent diffusion: train on the scaled latents of this autoencoder (made by "
                              "python -m course_lib.autoencoder); the checkpoint keeps the autoencoder, and "
                              "`sample` decodes. Use --schedule linear: latents cannot be clamped to [-1, 1] "
                              "while sampling, and the cosine schedule's tiny last alpha_bar then amplifies errors")
    trainer.add_argument("--image-size", type=int, default=32,
                         help="folder datasets: resize to this (e.g. 32 or 64); default %(default)s")
    trainer.add_argument("--channels", type=int, choices=[1, 3], default=3, help="folder datasets; default %(default)s")
    trainer.add_argument("--base-channels", type=int, default=default(TrainConfig, "unet").base_channels,
                         help="U-Net width; default %(default)s")
    trainer.add_argument("--channel-mults", type=int, nargs="+",
                         help="one width multiplier per U-Net level (attention then only in the bottleneck, unless "
                              "--attention-levels); default: chosen by the picture size divided by --patch-size: "
                              "1 2 below 32 px, 1 2 2 at 32 px and 1 2 2 2 at 64 px with attention at 16x16 and 8x8")
    trainer.add_argument("--attention-levels", type=int, nargs="*",
                         help="U-Net levels (0 = the first) with self-attention after every residual block, beside "
                              "the bottleneck's; default: chosen with --channel-mults (none when they are given)")
    trainer.add_argument("--patch-size", type=int, default=default(TrainConfig, "unet").patch_size,
                         help="fold each PxP patch of pixels into channels before the first level (and back at the "
                              "end): the U-Net then works at 1/P of the picture size, with up to P^2 times less compute; "
                              "default %(default)s")
    for name, (kind, text) in TRAIN_OPTIONS.items():
        flags = ["--T" if name == "T" else "--" + name.replace("_", "-")] + (["--objective"] if name == "parameterization" else [])
        choices = {"parameterization": OBJECTIVES, "schedule": SCHEDULE_NAMES, "weighting": WEIGHTINGS,
                   "lr_schedule": LR_SCHEDULES}
        extra = {"choices": choices[name]} if name in choices else {}
        shown = "" if default(TrainConfig, name) is None else "; default %(default)s"
        trainer.add_argument(*flags, dest=name, type=kind, default=default(TrainConfig, name), help=text + shown,
                             **extra)
    trainer.add_argument("--flip", action="store_true",
                         help="mirror each training picture left-right with probability 1/2 (seeded)")
    add_device_options(trainer)
    trainer.add_argument("--precision", choices=PRECISIONS,
                         help="fp32, or mixed precision: bf16 or fp16 (with loss scaling) under autocast; "
                              "default: bf16 on a CUDA GPU that has it, fp32 otherwise")
    trainer.add_argument("--threads", type=int, default=1,
                         help="CPU threads for PyTorch; a small net on small images runs fastest on one (more threads "
                              "only add synchronisation, and on a busy machine they wait for each other); "
                              "default %(default)s")
    trainer.set_defaults(run=train_command)

    sampler = commands.add_parser(
        "sample", help="draw samples from a checkpoint",
        description="Run the reverse process from a checkpoint's EMA weights. --out FILE.npy writes a float32 "
                    "array (N, C, H, W) in [0, 1]; FILE.png an image grid. DDPM always takes all T steps; "
                    "for fewer, use --sampler ddim (with --eta 1 for DDPM-like noise).")
    sampler.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT")
    sampler.add_argument("--n", type=int, default=16,
                         help="number of samples (per label, with --label); default %(default)s")
    sampler.add_argument("--sampler", choices=["ddpm", "ddim", "euler", "heun"],
                         help="ddpm|ddim for diffusion checkpoints (default ddim), euler|heun for flow-matching "
                              "checkpoints (default euler; Heun makes 2 steps - 1 network calls)")
    sampler.add_argument("--steps", type=int, help=f"DDIM or flow-solver steps (default {DEFAULT_DDIM_STEPS}); DDPM: T only")
    sampler.add_argument("--eta", type=float, default=0.0, help="DDIM noise, 0 to 1; default %(default)s")
    sampler.add_argument("--label", nargs="+", metavar="Y",
                         help="class-conditional checkpoints: the classes to sample, e.g. 3, or 1 4 7, or all; "
                              "--n samples each, one grid row per class")
    sampler.add_argument("--guidance", type=float,
                         help="classifier-free guidance scale w (1: plain conditional, 0: unconditional)")
    sampler.add_argument("--no-clip", action="store_true",
                         help="do not clamp each step's x0 estimate to [-1, 1] (clamping keeps DDIM's early, "
                              "very noisy steps from overshooting; never done for latent-diffusion checkpoints, "
                              "whose latents are not in [-1, 1])")
    sampler.add_argument("--seed", type=int, default=0, help="default %(default)s")
    add_device_options(sampler)
    sampler.add_argument("--scale", type=int,
                         help=f"PNG grids: enlarge each pixel to a SCALE x SCALE block (nearest neighbour); default: "
                              f"images about {READABLE_PIXELS} px high (8 for 8x8 digits)")
    sampler.add_argument("--out", type=Path, required=True, metavar="FILE", help="FILE.npy or FILE.png")
    sampler.set_defaults(run=sample_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug, no_limits = "--debug" in argv, NO_LIMITS in argv
    argv = [arg for arg in argv if arg not in ("--debug", NO_LIMITS)]
    args = make_parser().parse_args(argv)
    args.argv, args.limits = argv, not no_limits
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the commands report expected failures themselves; this is the last resort
        if debug:
            raise
        text = " ".join(str(error).split()) or "(no message)"
        print(f"error: {type(error).__name__}: {text} (add --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
