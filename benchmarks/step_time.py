"""Where a training step's time goes: data, forward, backward, clipping, optimizer, EMA.

    .venv/bin/python benchmarks/step_time.py [--steps 60] [--variants]

For the old and the new default `train` configuration, times `--steps` training steps (after 10 warm-up
steps) phase by phase and prints milliseconds per step, wall clock and CPU time of this thread. On a
shared machine the wall clock stretches with the load (printed) while the CPU time stays close to what an
idle machine would take, so compare CPU milliseconds across runs. With --variants it also times what
the field uses to make steps cheaper: two threads, channels_last memory format, no bottleneck attention,
half and double batch, and torch.compile (its compile time is printed separately).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from course_lib import data, training
from course_lib.__main__ import make_parser
from course_lib.config import unet_layout
from course_lib.schedules import NoiseSchedule
from course_lib.unet import UNet

PHASES = ("data", "forward", "backward", "clip", "optimizer", "ema")


def configuration(*flags: str) -> dict:
    """The settings of `python -m course_lib train --dataset digits FLAGS`: the CLI's defaults are the defaults."""
    args = make_parser().parse_args(["train", "--dataset", "digits", "--steps", "1", "--out", "x.pt", *flags])
    mults = tuple(args.channel_mults or unet_layout(8)["channel_mults"])     # the digits' 8 px layout by default
    return {"unet": {"in_channels": 1, "base_channels": args.base_channels, "channel_mults": mults, "attention": True},
            "schedule": NoiseSchedule.from_name(args.schedule, args.T), "batch_size": args.batch_size, "lr": args.lr,
            "weighting": args.weighting, "ema_decay": args.ema_decay}


def time_steps(config: dict, steps: int, threads: int = 1, channels_last: bool = False,
               compile_model: bool = False) -> dict:
    """Milliseconds per step for each phase (wall and CPU), plus the compile time when compiling."""
    torch.set_num_threads(threads)
    dataset = data.load_digits("train")
    schedule = config["schedule"]
    torch.manual_seed(0)
    model = UNet(**config["unet"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = torch.compile(model) if compile_model else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], foreach=True)
    ema = training.EMA(model, config["ema_decay"])
    generator = torch.Generator().manual_seed(0)
    batches = data.iterate_batches(dataset, config["batch_size"], seed=0)
    wall, cpu = dict.fromkeys(PHASES, 0.0), dict.fromkeys(PHASES, 0.0)
    compile_seconds = 0.0
    for step in range(steps + 10):
        marks = [(time.perf_counter(), time.thread_time())]
        x0, _ = next(batches)
        if channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        marks.append((time.perf_counter(), time.thread_time()))
        loss = training.diffusion_loss(network, x0, schedule, generator=generator, weighting=config["weighting"])
        marks.append((time.perf_counter(), time.thread_time()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append((time.perf_counter(), time.thread_time()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        marks.append((time.perf_counter(), time.thread_time()))
        optimizer.step()
        marks.append((time.perf_counter(), time.thread_time()))
        ema.update(model)
        marks.append((time.perf_counter(), time.thread_time()))
        if step == 0 and compile_model:
            compile_seconds = marks[-1][0] - marks[0][0]
        if step >= 10:
            for phase, (start, end) in zip(PHASES, zip(marks, marks[1:])):
                wall[phase] += (end[0] - start[0]) / steps * 1000
                cpu[phase] += (end[1] - start[1]) / steps * 1000
    return {"wall": wall, "cpu": cpu, "compile_seconds": compile_seconds}


def show(name: str, timing: dict) -> None:
    wall, cpu = timing["wall"], timing["cpu"]
    total = sum(cpu.values())
    shares = " ".join(f"{phase} {100 * cpu[phase] / total:3.0f}%" for phase in PHASES)
    extra = f"  (compiling took {timing['compile_seconds']:.0f} s)" if timing["compile_seconds"] else ""
    print(f"{name:40s} {sum(wall.values()):7.1f} {total:7.1f}   {shares}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per row; default %(default)s")
    parser.add_argument("--variants", action="store_true", help="also time threads, memory format, compile ...")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.steps} steps per row")
    print(f"{'configuration':40s} {'wall ms':>7s} {'CPU ms':>7s}   share of CPU time per phase")
    new, old = configuration(), configuration("--base-channels", "32", "--lr", "1e-3", "--weighting", "uniform")
    show("old default (base 32, batch 64)", time_steps(old, args.steps))
    show(f"new default (base {new['unet']['base_channels']}, batch {new['batch_size']})", time_steps(new, args.steps))
    if args.variants:
        show("new default, 2 threads", time_steps(new, args.steps, threads=2))
        show("new default, channels_last", time_steps(new, args.steps, channels_last=True))
        show("new default, no attention", time_steps({**new, "unet": {**new["unet"], "attention": False}}, args.steps))
        for batch in (new["batch_size"] // 2, new["batch_size"] * 2):
            show(f"new default, batch {batch}", time_steps({**new, "batch_size": batch}, args.steps))
        show("new default, torch.compile", time_steps(new, args.steps, compile_model=True))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
