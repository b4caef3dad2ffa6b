"""One process or two: the training throughput of `torchrun --nproc_per_node 2` against a single process.

    .venv/bin/python benchmarks/distributed.py [--steps 300] [--batch-size 64] [--dataset digits] [-- TRAIN OPTIONS]

Runs the same `python -m course_lib train` command (same seed, same global batch) once as one process and once
under `torchrun --standalone --nproc_per_node 2` (gloo, CPU, one thread per process), and prints the images per
second of each and their ratio. The time is the training loop's own (the checkpoint's `seconds`), so the
start-up of torch and of the process group is not counted. It also prints how far the two runs' losses are
apart: the same numbers up to rounding, since every process draws the global batch's noise and keeps its rows.

What the ratio says depends on the machine: two processes on two otherwise idle cores can at best halve a
step; on a shared machine the second process waits for a core, every step ends with an all-reduce of the
gradients, and a small net's step is mostly fixed per-operation overhead that halving the batch does not halve.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from course_lib.checkpoints import read_checkpoint


def train_run(launcher: list[str], out: Path, options: list[str]) -> dict:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*launcher, "-m", "course_lib", "train", "--out", str(out), "--force", *options], check=True,
                   env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return read_checkpoint(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dataset", default="digits")
    args, extra = parser.parse_known_args(argv)
    options = ["--dataset", args.dataset, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--checkpoint-every", str(args.steps), *[option for option in extra if option != "--"]]
    launchers = {"1 process": [sys.executable],
                 "2 processes (torchrun)": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                            "--nproc_per_node", "2"]}
    load = os.getloadavg()[0]
    print(f"python -m course_lib train {' '.join(options)}   (load average {load:.1f} on {os.cpu_count()} cores)")
    throughput, losses = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name, launcher in launchers.items():
            run = train_run(launcher, Path(folder) / "model.pt", options)
            throughput[name] = run["step"] * args.batch_size / run["seconds"]
            losses[name] = np.array(run["loss_history"])
            print(f"{name:24s} {throughput[name]:8.0f} images/s   ({run['seconds']:.1f} s for {run['step']} steps)")
    one, two = throughput.values()
    apart = np.abs(losses["1 process"] - losses["2 processes (torchrun)"]) / losses["1 process"]
    print(f"2 processes / 1 process: {two / one:.2f}x the throughput; losses apart by at most {apart.max():.1e} "
          f"(relative)")


if __name__ == "__main__":
    main()
