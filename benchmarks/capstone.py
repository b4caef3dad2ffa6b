"""Notebook 08's measured tables: pixel vs latent diffusion vs a DCGAN on the sprites, beside the real floor.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/capstone.py                 # shipped models + 3 seeds x 90 s each
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/capstone.py --seconds 0     # shipped models only

Part 1 evaluates the shipped generators (one wall-time budget, ``compare.SECONDS``; commands in ``compare.SHIPPED``):
n (default 120) unconditional samples each (diffusion: DDIM 50 steps with eta = ``compare.SAMPLING_ETA`` and the
null label; GAN: one pass) and, for the diffusion models, n samples of the six families with classifier-free
guidance w = 2. Every metric of ``sprite_metrics`` beside fresh real sprites; plus seconds per training step,
activation memory per picture in a training step, and sampling seconds per picture.
Part 2 retrains pixel diffusion (with the shipped model's stored settings, except a constant learning rate: a run
ended by a time budget has no known step count for a cosine decay to end at) and the GAN for ``--seconds`` each with
every seed in ``--seeds`` and reports the spread of the losses and of the sample quality (96 unconditional samples,
DDIM 25 steps, the same eta) between seeds (``compare.loss_stability``).
The results are also written, with this command, to course_lib/assets/capstone_benchmark.json for notebook 08.
Targets (issue 10): the diffusion models' guided samples are labelled confidently at >= 0.8 of the real rate,
and their symmetry error is within 2x the real one.
"""
import argparse
import json
import sys
import time
from dataclasses import replace

import torch

from course_lib import checkpoints, compare, gan, sprite_metrics, training
from course_lib.schedules import NoiseSchedule
from course_lib._io import write_atomically
from course_lib.sprites import FAMILIES, load_sprites

OUT = compare.ASSETS / "capstone_benchmark.json"


def per_image_memory(model_name: str, model, info) -> float:
    """Activation bytes one training step saves for backward, per picture in the batch."""
    batch = 8
    if model_name == "GAN":
        from course_lib.gan import Discriminator, discriminator_loss, generator_loss
        disc = Discriminator(32, 3)
        z = torch.randn(batch, model.z_dim)
        real = load_sprites("test").images[:batch]

        def step():
            fake = model.train()(z)
            discriminator_loss(disc(real), disc(fake.detach())) + generator_loss(disc(fake))
        memory = compare.training_memory(step)
        model.eval()
        return memory / batch
    schedule = NoiseSchedule.cosine(1000)
    x0 = torch.randn(batch, *info["dataset"]["image_shape"])
    memory = compare.training_memory(lambda: training.diffusion_loss(model.train(), x0, schedule,
                                                                     y=torch.zeros(batch, dtype=torch.int64)))
    model.eval()
    return memory / batch


def shipped(n: int) -> dict:
    results, floor = {}, sprite_metrics.real_floor(n)
    labels = torch.arange(n) % len(FAMILIES)
    for name, (path, command) in compare.SHIPPED.items():
        if name == "GAN":
            generator, payload = gan.load_gan(path)
            images, seconds = compare.gan_sprites(generator, n)
            row = sprite_metrics.evaluate_sprites(images)
            row.update(network_passes=1, train_steps=payload["step"], train_seconds=payload["seconds"],
                       memory_per_image=per_image_memory(name, generator, None))
        else:
            model, schedule, info = checkpoints.load_checkpoint(path)
            images, seconds = compare.diffusion_sprites(model, schedule, info, n, steps=50)
            row = sprite_metrics.evaluate_sprites(images)
            guided, _ = compare.diffusion_sprites(model, schedule, info, n, steps=50, labels=labels, guidance=2.0)
            guided_row = sprite_metrics.evaluate_sprites(guided)
            guided_row["label_accuracy"] = (sprite_metrics.load_classifier()(guided).argmax(1) == labels).float().mean().item()
            results[f"{name}, guided w=2"] = guided_row
            row.update(network_passes=50, train_steps=info["step"], train_seconds=info["seconds"],
                       memory_per_image=per_image_memory(name, model, info))
        row["sample_seconds_per_image"] = seconds / n
        row["command"] = command
        results[name] = row
    return {"n": n, "floor": floor, "models": results}


def stability(seconds: float, seeds: list[int], n: int) -> dict:
    data = load_sprites("train")
    shipped_pixel = checkpoints.read_checkpoint(compare.SHIPPED["pixel diffusion"][0])["config"]   # its settings
    out = {"pixel diffusion": {"losses": [], "kid": [], "confident_fraction": []},
           "GAN": {"losses": [], "kid": [], "confident_fraction": []}}
    for seed in seeds:
        config = replace(shipped_pixel, steps=None, lr_schedule="constant", max_seconds=seconds, seed=seed)
        result = training.train(config, data, progress=False)
        model = result.ema.copy_to(result.model).eval()
        info = {"config": config, "dataset": {"image_shape": [3, 32, 32]}}
        images, _ = compare.diffusion_sprites(model, config.make_schedule(), info, n, steps=25, seed=seed)
        gan_run = gan.train_gan(data, max_seconds=seconds, seed=seed, progress=False)
        gan_images, _ = compare.gan_sprites(gan_run.generator, n, seed=seed)
        for name, losses, samples in (("pixel diffusion", result.loss_history, images),
                                      ("GAN", gan_run.d_losses, gan_images)):
            metrics = sprite_metrics.evaluate_sprites(samples)
            out[name]["losses"].append(losses)
            out[name]["kid"].append(metrics["kid"])
            out[name]["confident_fraction"].append(metrics["confident_fraction"])
            out[name].setdefault("steps", []).append(len(losses))
        print(f"seed {seed}: diffusion {len(result.loss_history)} steps KID {out['pixel diffusion']['kid'][-1]:.1f}; "
              f"GAN {len(gan_run.d_losses)} steps KID {out['GAN']['kid'][-1]:.1f}", flush=True)
    summary = {}
    for name, record in out.items():
        kid = torch.tensor(record["kid"], dtype=torch.float64)
        summary[name] = {**compare.loss_stability(record["losses"]), "kid_per_seed": record["kid"],
                         "kid_mean": kid.mean().item(), "kid_std": kid.std().item() if len(kid) > 1 else 0.0,
                         "confident_per_seed": record["confident_fraction"], "steps_per_seed": record["steps"],
                         "losses": [[round(v, 4) for v in history] for history in record["losses"]]}
    return {"seconds": seconds, "seeds": seeds, "n": n, "summary": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="samples per model; default %(default)s")
    parser.add_argument("--seconds", type=float, default=90, help="stability runs: seconds per run (0: skip); "
                                                                  "default %(default)s")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    report = {"command": "benchmarks/capstone.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "shipped": shipped(args.n)}
    print(compare.comparison_rows(report["shipped"]["models"], report["shipped"]["floor"]))
    for name, row in report["shipped"]["models"].items():
        if "label_accuracy" in row:
            print(f"{name}: the classifier finds the requested family in {row['label_accuracy']:.3f} of the samples")
    if args.seconds > 0:
        report["stability"] = stability(args.seconds, args.seeds, min(args.n, 96))
        print(f"\nstability over seeds {args.seeds}, {args.seconds:g} s each:")
        for name, row in report["stability"]["summary"].items():
            print(f"{name:16s} loss jitter {row['jitter']:.3f}  final-loss spread {row['final_spread']:.3f}  "
                  f"KID {row['kid_mean']:.1f} +- {row['kid_std']:.1f} over seeds  steps {row['steps_per_seed']}")
    report["seconds"] = time.perf_counter() - start
    write_atomically(OUT, lambda temporary: temporary.write_text(json.dumps(report, indent=1)))
    print(f"wrote {OUT} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
