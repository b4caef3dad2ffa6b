"""Quality of the shipped checkpoint ``assets/digits_conditional.pt`` beside real digits scored the same way.

    .venv/bin/python benchmarks/training.py [--n 200]

Rows: unconditional samples (the null class), class-conditional samples (n / 10 per digit), and
classifier-free guided samples (w = 2), each with DDIM 50 steps (eta = 0) and DDPM 1000 steps, all
seeded and with each step's x0 estimate clamped to [-1, 1] (clip_x0; the last row shows DDIM without it); then ``metrics.real_data_reference(n)``: what real digits score. Targets: conditional samples
confident >= 0.8 with class entropy near log 10 = 2.303, KID and Fréchet distance (against the held-out
test digits) near the real digits', and a mean nearest-neighbour distance not far below the real one
(far below would mean copies).
"""
import argparse
import time

import torch

from course_lib import metrics
from course_lib.guidance import cfg_model
from course_lib.sampling import sample
from course_lib.checkpoints import DIFFUSION_ASSET, load_checkpoint

COLUMNS = ("confident_fraction", "class_entropy", "kid", "kid_se", "frechet_distance", "nn_distance_mean",
           "nn_distance_min")


def samplers(model, n: int) -> dict:
    labels = torch.arange(n) % model.num_classes
    return {"unconditional": (model, {}),
            "conditional": (model, {"y": labels}),
            "guided, w = 2": (cfg_model(model, labels, 2.0, model.num_classes), {})}


def row(label: str, images: torch.Tensor, seconds: float) -> None:
    scores = metrics.evaluate_samples(images)
    print(f"{label:36s} " + " ".join(f"{scores[c]:14.3f}" for c in COLUMNS) + f" {seconds:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="samples per row (2..359); default %(default)s")
    args = parser.parse_args()
    model, schedule, info = load_checkpoint(DIFFUSION_ASSET)
    print(f"{DIFFUSION_ASSET.name}: step {info['step']}, {info['seconds']:.0f} s of training, made by\n  {info['command']}\n")
    print(f"{'row':36s} " + " ".join(f"{c[:14]:>14s}" for c in COLUMNS) + f" {'seconds':>8s}")
    for name, (network, kwargs) in samplers(model, args.n).items():
        for sampler, steps in (("ddim", 50), ("ddpm", None)):
            start = time.perf_counter()
            images = sample(network, schedule, (args.n, 1, 8, 8), sampler=sampler, steps=steps, seed=0,
                            clip_x0=True, model_kwargs=kwargs, progress=False).images
            row(f"{name}, {sampler.upper()} {steps or schedule.T}", images, time.perf_counter() - start)
    # The cosine schedule ends at alpha_bar = 2e-9: unclamped x0 estimates of the first DDIM steps are huge.
    start = time.perf_counter()
    images = sample(model, schedule, (args.n, 1, 8, 8), sampler="ddim", steps=50, seed=0, progress=False,
                    model_kwargs={"y": torch.arange(args.n) % model.num_classes}).images
    row("conditional, DDIM 50, no clip_x0", images, time.perf_counter() - start)
    real = metrics.real_data_reference(args.n)
    print(f"{'real digits (reference)':36s} " + " ".join(f"{real[c]:14.3f}" for c in COLUMNS))


if __name__ == "__main__":
    main()
