"""Bad input gets one clear line and loses nothing (issue 16, and issue 12 item 7).

Every row of CASES is a command line a careless or hostile user might type; together they cover every case of
issue 16 and every option of the command line that takes a value (``test_every_option_has_a_row`` reads them
from the argparse parsers, so a new option without a row fails). Each row runs in its own child process,
through ``course_lib.__main__.main`` exactly as ``python -m course_lib`` calls it, under a memory cap
(RLIMIT_AS) and a time limit: tests/cli_worker.py imports torch once and forks a child per row, so the table
costs milliseconds per row instead of torch's start-up; SUBPROCESS_CASES also run as ``python -m course_lib``
itself. Each must end within seconds with a non-zero exit status (2: usage, 1: runtime), print exactly one line
on stderr naming the problem and no traceback, and leave every file that existed before byte-identical.
The kill tests SIGKILL training and the procedural demo at seeded random moments.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import re
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from course_lib import __main__ as cli_main
from course_lib import data, ddim, procedural
from course_lib._io import write_atomically
from course_lib.autoencoder import ASSET as AUTOENCODER_ASSET
from course_lib.checkpoints import DIFFUSION_ASSET, load_checkpoint, read_checkpoint

MEMORY_CAP = 4 * 2**30        # bytes of address space for a child (torch alone maps ~0.6 GB)
TIME_LIMIT = 120              # seconds before a child is killed (a runaway row; each takes well under a second)
PROMPT = 20                   # seconds within which every row must have ended, on this loaded machine


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height grey pixels (the data is a stub: it must never be decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _gzip_bomb(path: Path, dims: tuple[int, ...], actual: int) -> None:
    """A gzip IDX file whose header declares ``dims`` unsigned bytes but which unpacks to only ``actual`` zeros."""
    with gzip.open(path, "wb") as file:
        file.write(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(actual))


def _altered_asset(path: Path, change) -> None:
    """The shipped checkpoint with ``change(payload)`` applied: a course checkpoint with an inconsistent config."""
    payload = torch.load(DIFFUSION_ASSET, weights_only=True)
    change(payload)
    torch.save(payload, path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The files the cases point at; all of them must survive every case unchanged."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "random-bytes.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "truncated.pt").write_bytes(DIFFUSION_ASSET.read_bytes()[:100_000])
    torch.save(torch.nn.Linear(2, 2), root / "module.pt")            # a whole pickled module: not weights only
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")     # readable, but not a course checkpoint
    _altered_asset(root / "score.pt", lambda p: p.update(parameterization="score"))
    _altered_asset(root / "channels.pt", lambda p: p["dataset"].update(image_shape=[3, 8, 8]))
    _altered_asset(root / "width.pt", lambda p: p["unet_config"].update(base_channels=16))
    _altered_asset(root / "no-weights.pt", lambda p: p.update(ema=None))
    (root / "existing.pt").write_bytes(b"hours of training")
    (root / "a-file").write_text("not a directory")
    (root / "empty").mkdir()
    (root / "folder.pt").mkdir()
    (root / "folder.npy").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no pictures here")
    (root / "notes" / "data.csv").write_text("1,2")
    for name, (width, height) in {"strip": (1, 80_000_000), "huge": (13_000, 13_000)}.items():
        (root / name).mkdir()
        (root / name / f"{name}.png").write_bytes(_png_declaring(width, height))
    (root / "fake").mkdir()
    (root / "fake" / "picture.png").write_text("a text file with a picture's name")
    (root / "pictures" / "cats").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 100, 50)).save(root / "pictures" / "cats" / "a.png")
    (root / "bomb").mkdir()       # 60 kB that would unpack to 93 GB, were the header believed
    _gzip_bomb(root / "bomb" / "train-images-idx3-ubyte.gz", (10_000_000, 100, 100), actual=2**20)
    _gzip_bomb(root / "bomb" / "train-labels-idx1-ubyte.gz", (10_000_000,), actual=0)
    (root / "solutions").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]),
                   root / "solutions" / "01_tiny.ipynb")
    (root / "broken").mkdir()
    (root / "broken" / "01_broken.ipynb").write_text('{"cells": [')
    return root


TRAIN = ["train", "--steps", "1"]
NEW = TRAIN + ["--out", "{tmp}/new.pt"]
SAMPLE = ["sample", "--out", "{tmp}/samples.npy", "--checkpoint"]
ASSET = ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/s.npy"]
DEMO = ["procedural", "--out", "{tmp}/demo"]
BUILD = ["build-notebooks", "--solutions", "{tmp}/solutions", "--notebooks", "{tmp}/built"]
LIMIT = ["limit of 4 GB", "--no-limits"]
# (id, argv ({tmp} is the workspace), expected exit status, words the one line must contain,
#  the option whose value is wrong as "COMMAND --option" or None)
CASES = [
    # checkpoints (issue 12 item 7, and D15: a stored config that does not hold together)
    ("12.7 random bytes", SAMPLE + ["{tmp}/random-bytes.pt"], 2, ["not a readable course checkpoint", "not a PyTorch"],
     "sample --checkpoint"),
    ("12.7 truncated", SAMPLE + ["{tmp}/truncated.pt"], 2, ["not a readable course checkpoint", "truncated"], None),
    ("12.7 pickled module", SAMPLE + ["{tmp}/module.pt"], 2, ["not a readable course checkpoint", "different format"],
     None),
    ("foreign torch file", SAMPLE + ["{tmp}/foreign.pt"], 2, ["not a diffusion-course checkpoint"], None),
    ("missing checkpoint", SAMPLE + ["{tmp}/nothing.pt"], 2, ["no checkpoint file", "nothing.pt"], None),
    ("D15 parameterization score", SAMPLE + ["{tmp}/score.pt"], 2,
     ["score.pt", "stored config", "parameterization 'score'", "'eps'", "'v'"], None),
    ("D15 image shape vs channels", SAMPLE + ["{tmp}/channels.pt"], 2,
     ["channels.pt", "image_shape [3, 8, 8]", "in_channels=1"], None),
    ("D15 weights vs config", SAMPLE + ["{tmp}/width.pt"], 2, ["width.pt", "weights do not fit", "size mismatch"],
     None),
    ("D15 no weights", SAMPLE + ["{tmp}/no-weights.pt"], 2, ["no-weights.pt", "holds no weights"], None),
    # sample's options
    ("sample seed 2**64", ASSET + ["--seed", str(2**64)], 2, ["--seed"], "sample --seed"),
    ("sample --n 0", ASSET + ["--n", "0"], 2, ["--n"], "sample --n"),
    ("D11 sample --n 1e9", ASSET + ["--n", "1000000000"], 2, ["--n 1000000000", "TB", *LIMIT, "lower --n"],
     "sample --n"),
    ("D11 sample --scale 1e5 grid", ASSET + ["--out", "{tmp}/s.png", "--scale", "100000"], 2,
     ["enlarged 100000 times", *LIMIT], "sample --scale"),
    ("sample --scale 0", ASSET + ["--out", "{tmp}/s.png", "--scale", "0"], 2, ["--scale must be >= 1"],
     "sample --scale"),
    ("sample --eta 2", ASSET + ["--eta", "2"], 2, ["--eta"], "sample --eta"),
    ("sample --steps 0", ASSET + ["--steps", "0"], 2, ["--steps must lie in 1..1000"], "sample --steps"),
    ("sample --steps not T for ddpm", ASSET + ["--sampler", "ddpm", "--steps", "10"], 2, ["--steps must be 1000"],
     None),
    ("sample --guidance nan", ASSET + ["--label", "3", "--guidance", "nan"], 2, ["--guidance", "finite"],
     "sample --guidance"),
    ("sample overflowing guidance", ASSET + ["--label", "3", "--guidance", "1e300", "--no-clip", "--steps", "2"], 1,
     ["NaN or infinite", "--guidance 1e+300", "nothing written"], None),
    ("sample --guidance without --label", ASSET + ["--guidance", "2"], 2, ["--guidance needs --label"], None),
    ("sample --out .txt", ASSET[:-1] + ["{tmp}/s.txt"], 2, ["--out"], "sample --out"),
    ("sample --out under a file", ASSET[:-1] + ["{tmp}/a-file/s.npy"], 2, ["--out", "not a writable directory"],
     None),
    ("sample --label on unknown class", ASSET + ["--label", "10"], 2, ["--label"], "sample --label"),
    ("sample --label words", ASSET + ["--label", "three"], 2, ["--label takes class numbers"], None),
    ("sample without --checkpoint", ["sample", "--out", "{tmp}/s.npy"], 2, ["--checkpoint"], None),
    ("sample --n not a number", ASSET + ["--n", "many"], 2, ["--n", "many"], None),
    ("sample --sampler unknown", ASSET + ["--sampler", "magic"], 2, ["--sampler"], "sample --sampler"),
    ("sample --device unknown", ASSET + ["--device", "gpu"], 2, ["--device", "gpu"], "sample --device"),
    ("sample --sampler euler on diffusion", ASSET + ["--sampler", "euler"], 2, ["diffusion model", "ddpm or ddim"],
     None),
    ("no command", [], 2, ["COMMAND"], None),
    ("unknown command", ["fly"], 2, ["invalid choice", "fly"], None),
    # train: D2, D3 (tested below), D4, D8, D13, D14 and every option
    ("D2 overwrite", TRAIN + ["--out", "{tmp}/existing.pt"], 2, ["exists", "--resume", "--force"], None),
    ("D2 resume and force", TRAIN + ["--out", "{tmp}/existing.pt", "--resume", "--force"], 2, ["give one"], None),
    ("D4 --out under a file", TRAIN + ["--out", "{tmp}/a-file/model.pt"], 2, ["--out", "not a writable directory"],
     "train --out"),
    ("D4 --export under a file", NEW + ["--export", "{tmp}/a-file/small.pt"], 2,
     ["--export", "not a writable directory"], "train --export"),
    ("--out not .pt", TRAIN + ["--out", "{tmp}/model.ckpt"], 2, ["--out", ".pt"], "train --out"),
    ("--resume nothing", NEW + ["--resume"], 2, ["--resume", "no checkpoint"], None),
    ("D13 --checkpoint-every 0", NEW + ["--checkpoint-every", "0"], 2, ["--checkpoint-every"],
     "train --checkpoint-every"),
    ("D14 seed 2**64", NEW + ["--seed", str(2**64)], 2, ["--seed", "2**64"], "train --seed"),
    ("seed negative", NEW + ["--seed", "-1"], 2, ["--seed"], "train --seed"),
    ("D8 --grad-clip 0", NEW + ["--grad-clip", "0"], 2, ["--grad-clip must be > 0"], "train --grad-clip"),
    ("D8 --grad-clip -1", NEW + ["--grad-clip", "-1"], 2, ["--grad-clip"], "train --grad-clip"),
    ("--lr 0", NEW + ["--lr", "0"], 2, ["--lr"], "train --lr"),
    ("--lr nan", NEW + ["--lr", "nan"], 2, ["--lr", "finite"], "train --lr"),
    ("--batch-size 0", NEW + ["--batch-size", "0"], 2, ["--batch-size"], "train --batch-size"),
    ("--ema-decay 1", NEW + ["--ema-decay", "1"], 2, ["--ema-decay"], "train --ema-decay"),
    ("--weight-decay -1", NEW + ["--weight-decay", "-1"], 2, ["--weight-decay"], "train --weight-decay"),
    ("--label-dropout 2", NEW + ["--label-dropout", "2"], 2, ["--label-dropout"], "train --label-dropout"),
    ("--max-seconds -1", NEW + ["--max-seconds", "-1"], 2, ["--max-seconds"], "train --max-seconds"),
    ("--steps 0", NEW[:1] + ["--steps", "0", "--out", "{tmp}/new.pt"], 2, ["--steps"], "train --steps"),
    ("--T 0", NEW + ["--T", "0"], 2, ["--T"], "train --T"),
    ("D11 --T 1e9", NEW + ["--T", "1000000000"], 2, ["--T 1000000000", "GB", *LIMIT], "train --T"),
    ("--schedule unknown", NEW + ["--schedule", "wavy"], 2, ["--schedule"], "train --schedule"),
    ("--objective score", NEW + ["--objective", "score"], 2, ["--parameterization/--objective", "score"],
     "train --parameterization"),
    ("--weighting unknown", NEW + ["--weighting", "heavy"], 2, ["--weighting"], "train --weighting"),
    ("--lr-schedule unknown", NEW + ["--lr-schedule", "step"], 2, ["--lr-schedule"], "train --lr-schedule"),
    ("--lr-schedule cosine without --steps", NEW[:1] + ["--max-seconds", "5", "--lr-schedule", "cosine", "--out",
                                                        "{tmp}/new.pt"], 2, ["--lr-schedule", "cosine", "steps"],
     "train --lr-schedule"),
    ("--channels 2", NEW + ["--channels", "2"], 2, ["--channels"], "train --channels"),
    ("--base-channels odd", NEW + ["--base-channels", "7"], 2, ["--base-channels"], "train --base-channels"),
    ("D11 --base-channels 1e5", NEW + ["--base-channels", "100000"], 2, ["--base-channels 100000", *LIMIT],
     "train --base-channels"),
    ("--channel-mults 0", NEW + ["--channel-mults", "1", "0"], 2, ["--channel-mults"], "train --channel-mults"),
    ("--patch-size 0", NEW + ["--patch-size", "0"], 2, ["--patch-size must be >= 1"], "train --patch-size"),
    ("--patch-size 9", NEW + ["--patch-size", "9"], 2, ["--patch-size must be at most the picture size (8 px", "9"],
     "train --patch-size"),
    ("--attention-levels 5", NEW + ["--attention-levels", "5"], 2, ["--attention-levels", "0..1", "(5,)"],
     "train --attention-levels"),
    ("--device unknown", NEW + ["--device", "tpu"], 2, ["--device", "tpu"], "train --device"),
    ("--precision unknown", NEW + ["--precision", "fp8"], 2, ["--precision", "fp8"], "train --precision"),
    ("--threads 0", NEW + ["--threads", "0"], 2, ["--threads must lie in 1.."], "train --threads"),
    ("--threads 1e6", NEW + ["--threads", "1000000"], 2, ["--threads", "CPUs"], "train --threads"),
    ("--image-size 0", NEW + ["--dataset", "folder:{tmp}/pictures", "--image-size", "0"], 2, ["--image-size"],
     "train --image-size"),
    ("D11 --image-size 1e5", NEW + ["--dataset", "folder:{tmp}/pictures", "--image-size", "100000", "--batch-size",
                                    "1"], 2,
     ["pictures of 3x100000x100000", *LIMIT, "--image-size"], "train --image-size"),
    ("--latent missing", NEW + ["--latent", "{tmp}/nothing.pt"], 2, ["no autoencoder file"], "train --latent"),
    ("--latent not an autoencoder", NEW + ["--latent", str(DIFFUSION_ASSET)], 2, ["not a diffusion-course autoencoder"],
     None),
    ("--latent picture size", NEW + ["--latent", "{ae}", "--dataset", "folder:{tmp}/pictures", "--image-size", "30"],
     2, ["--latent", "multiple of 4", "got 30"], None),
    ("--batch-size above the dataset", NEW + ["--dataset", "folder:{tmp}/pictures"], 2,
     ["--batch-size 64 is larger than the dataset", "(1 images)"], None),
    ("no budget", ["train", "--out", "{tmp}/new.pt"], 2, ["budget"], None),
    ("unknown dataset", NEW + ["--dataset", "imagenet"], 2, ["unknown dataset"], "train --dataset"),
    ("missing folder", NEW + ["--dataset", "folder:{tmp}/nowhere"], 2, ["nowhere"], None),
    ("--conditional without labels", NEW + ["--dataset", "folder:{tmp}/empty", "--conditional"], 2, ["empty"], None),
    ("D12 empty folder", NEW + ["--dataset", "folder:{tmp}/empty"], 2, ["empty", "no pictures"], None),
    ("D12 folder of non-images", NEW + ["--dataset", "folder:{tmp}/notes"], 2,
     ["notes", "found 2 other entries", "readme.txt"], None),
    ("D1 1 x 80M strip", NEW + ["--dataset", "folder:{tmp}/strip"], 2, ["strip.png", "too large"], None),
    ("D1 13000 x 13000", NEW + ["--dataset", "folder:{tmp}/huge"], 2, ["huge.png", "too large"], None),
    ("text file named .png", NEW + ["--dataset", "folder:{tmp}/fake"], 2, ["picture.png", "not a readable"], None),
    ("D10 gzip bomb as IDX", NEW + ["--dataset", "mnist:{tmp}/bomb"], 2,
     ["train-images-idx3-ubyte.gz", "declares dimensions (10000000, 100, 100)", "limit of 256 MB", "--no-limits"],
     None),
    ("missing IDX files", NEW + ["--dataset", "mnist:{tmp}/empty"], 2, ["no file", "train-images-idx3-ubyte"], None),
    # procedural
    ("D11 procedural --steps 1e9", DEMO + ["--steps", "1000000000"], 2, ["--steps 1000000000", "TB", *LIMIT],
     "procedural --steps"),
    ("procedural --steps 0", DEMO + ["--steps", "0"], 2, ["--steps"], "procedural --steps"),
    ("procedural --height 0", DEMO + ["--height", "0"], 2, ["--height"], "procedural --height"),
    ("procedural --width -3", DEMO + ["--width", "-3"], 2, ["--width"], "procedural --width"),
    ("D11 procedural 100000 x 100000", DEMO + ["--width", "100000", "--height", "100000"], 2,
     ["100000x100000x3", *LIMIT], None),
    ("procedural --channels 5", DEMO + ["--channels", "5"], 2, ["--channels"], "procedural --channels"),
    ("procedural --seed -1", DEMO + ["--seed", "-1"], 2, ["--seed"], "procedural --seed"),
    ("procedural --easing", DEMO + ["--easing", "bouncy"], 2, ["--easing"], "procedural --easing"),
    ("procedural --noise-schedule", DEMO + ["--noise-schedule", "loud"], 2, ["--noise-schedule"],
     "procedural --noise-schedule"),
    ("procedural --out a file", ["procedural", "--out", "{tmp}/a-file"], 2, ["--out", "is a file"],
     "procedural --out"),
    ("procedural --out under a file", ["procedural", "--out", "{tmp}/a-file/demo"], 2,
     ["--out", "not a writable directory"], None),
    ("train --out a folder", ["train", "--steps", "1", "--force", "--out", "{tmp}/folder.pt"], 2,
     ["--out", "folder.pt is a folder"], None),
    ("sample --out a folder", ASSET[:-1] + ["{tmp}/folder.npy"], 2, ["--out", "folder.npy is a folder"], None),
    # build-notebooks
    ("build-notebooks malformed notebook", ["build-notebooks", "--solutions", "{tmp}/broken", "--notebooks",
                                            "{tmp}/built"], 2, ["01_broken.ipynb", "not a readable Jupyter notebook"],
     None),
    ("build-notebooks --solutions missing", ["build-notebooks", "--solutions", "{tmp}/nowhere"], 2,
     ["no folder", "nowhere", "--solutions"], "build-notebooks --solutions"),
    ("build-notebooks --notebooks under a file", BUILD[:-1] + ["{tmp}/a-file/built"], 2,
     ["--notebooks", "not a writable directory"], "build-notebooks --notebooks"),
    ("build-notebooks --execute unknown", BUILD + ["--execute", "99"], 2, ["no solution notebook", "99"],
     "build-notebooks --execute"),
]
SUBPROCESS_CASES = ("12.7 random bytes", "D2 overwrite", "D1 13000 x 13000", "D10 gzip bomb as IDX")


def _snapshot(root: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _argv(argv: list[str], root: Path) -> list[str]:
    return [arg.replace("{tmp}", str(root)).replace("{ae}", str(AUTOENCODER_ASSET)) for arg in argv]


PROGRESS_BAR = re.compile(r"^[\w ()]+: +\d+%\|")     # tqdm's lines, when a run fails after starting work


def _check_outcome(status: int, stderr: str, expected_status: int, words: list[str], before: dict, root: Path):
    lines = [line for line in stderr.strip().splitlines() if line.strip() and not PROGRESS_BAR.match(line)]
    assert status == expected_status, stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr and "weights_only" not in stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert _snapshot(root) == before, "a file changed, appeared or vanished"


class Worker:
    """tests/cli_worker.py, started once: ``run`` executes one command line in a forked, capped child."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_worker.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})

    def run(self, argv: list[str], cwd: Path, kill_after: float | None = None,
            kill_after_change_of: Path | None = None) -> dict:
        request = {"argv": argv, "cwd": str(cwd), "memory_cap": MEMORY_CAP, "time_limit": TIME_LIMIT,
                   "kill_after": kill_after, "kill_after_change_of": kill_after_change_of and str(kill_after_change_of)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def worker():
    started = Worker()
    yield started
    started.close()


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input(case, workspace, worker):
    _, argv, expected_status, words, _ = case
    before = _snapshot(workspace)
    result = worker.run(_argv(argv, workspace), cwd=workspace)
    assert not result["killed"], f"still running after {TIME_LIMIT} s: {result['stderr'][-500:]}"
    assert result["seconds"] < PROMPT, f"took {result['seconds']:.1f} s"
    _check_outcome(result["status"], result["stderr"], expected_status, words, before, workspace)


def _options_taking_values() -> set[str]:
    """'COMMAND --option' for every option of every command that takes a value (a number, path, choice, name)."""
    commands = next(action for action in cli_main.make_parser()._actions if action.dest == "command")
    return {f"{name} {action.option_strings[0]}" for name, parser in commands.choices.items()
            for action in parser._actions if action.option_strings and action.nargs != 0}


def test_every_option_has_a_row():
    tested = {case[4] for case in CASES if case[4] is not None}
    assert tested <= _options_taking_values(), sorted(tested - _options_taking_values())
    missing = _options_taking_values() - tested
    assert not missing, f"options without a bad-input row in CASES: {sorted(missing)}"


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_as_a_real_command(name, workspace):
    _, argv, expected_status, words, _ = next(case for case in CASES if case[0] == name)
    before = _snapshot(workspace)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "course_lib", *_argv(argv, workspace)], capture_output=True,
                            text=True, timeout=TIME_LIMIT, preexec_fn=_cap_memory, env=environment,
                            cwd=workspace)
    _check_outcome(result.returncode, result.stderr, expected_status, words, before, workspace)


def _run_in_process(argv: list[str]) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli_main.main(argv)
        except SystemExit as exit_:   # argparse's usage errors
            status = exit_.code
    return status, stderr.getvalue()


def test_unexpected_failure_is_one_line_and_debug_shows_the_traceback(monkeypatch, workspace):
    def broken(args):
        raise RuntimeError("disk\non fire")
    monkeypatch.setattr(cli_main, "sample_command", broken)
    argv = _argv(SAMPLE + [str(DIFFUSION_ASSET)], workspace)
    status, stderr = _run_in_process(argv)
    assert status == 1 and stderr.strip() == ("error: RuntimeError: disk on fire (add --debug for the traceback)")
    with pytest.raises(RuntimeError, match="disk"):
        cli_main.main(argv + ["--debug"])


def test_force_starts_afresh_and_resume_refuses_changed_settings(workspace, tmp_path):
    out = tmp_path / "model.pt"
    out.write_bytes(b"old run")
    tiny = ["--batch-size", "4", "--base-channels", "8", "--channel-mults", "1", "--T", "10"]
    status, stderr = _run_in_process(["train", "--out", str(out), "--force", "--steps", "1", *tiny])
    assert status == 0, stderr
    trained = out.read_bytes()
    assert trained != b"old run"
    # D3: a resumed run must not silently keep the old learning rate while recording the new one.
    status, stderr = _run_in_process(["train", "--out", str(out), "--resume", "--steps", "2", "--lr", "0.01", *tiny])
    assert status == 2 and "lr=0.002" in stderr and "0.01" in stderr and len(stderr.strip().splitlines()) == 1
    assert out.read_bytes() == trained


# ---------------------------------------------------------------- SIGKILL at random moments
KILLS = 12
TINY = ["--batch-size", "4", "--base-channels", "8", "--channel-mults", "1", "--T", "10", "--checkpoint-every", "1"]


def test_training_killed_at_random_moments_leaves_a_loadable_checkpoint(worker, tmp_path):
    """A tiny run that saves after every step, killed with SIGKILL KILLS times at seeded random moments after its
    first new checkpoint (after it a checkpoint is written every few milliseconds, so a kill can land inside a
    write): each time the folder holds model.pt alone (no temporary), a later checkpoint than before that loads,
    and training resumes from it."""
    out, moments = tmp_path / "model.pt", random.Random(16)
    first = worker.run(["train", "--out", str(out), "--steps", "1", *TINY], cwd=tmp_path)
    assert first["status"] == 0, first["stderr"]
    steps = [read_checkpoint(out)["step"]]
    for _ in range(KILLS):
        result = worker.run(["train", "--out", str(out), "--resume", "--steps", "1000000", *TINY], cwd=tmp_path,
                            kill_after=moments.uniform(0.0, 0.9), kill_after_change_of=out)
        assert result["killed"], result["stderr"][-500:]
        assert [path.name for path in tmp_path.iterdir()] == ["model.pt"]
        steps.append(read_checkpoint(out)["step"])
        assert steps[-1] > steps[-2], f"no new checkpoint before the kill: steps {steps}"
        load_checkpoint(out)


def test_procedural_writes_its_files_as_a_set(monkeypatch, tmp_path):
    """D16: a failure while writing the second file leaves none of the three (and no staging folder); an existing
    set stays the old set."""
    from course_lib import _io

    real_fsync, calls = _io._fsync, []

    def failing_second(path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_fsync(path)
    monkeypatch.setattr(_io, "_fsync", failing_second)
    status, stderr = _run_in_process(["procedural", "--out", str(tmp_path / "demo"), "--height", "16", "--width", "16"])
    assert status == 1 and "disk full" in stderr and len(stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(_io, "_fsync", real_fsync)
    assert _run_in_process(["procedural", "--out", str(tmp_path / "demo"), "--height", "16", "--width", "16"])[0] == 0
    old = _snapshot(tmp_path)
    calls.clear()
    monkeypatch.setattr(_io, "_fsync", failing_second)
    status, _ = _run_in_process(["procedural", "--out", str(tmp_path / "demo"), "--height", "16", "--width", "16",
                                 "--seed", "1"])
    assert status == 1 and _snapshot(tmp_path) == old
    assert sorted(path.name for path in (tmp_path / "demo").iterdir()) == ["final.png", "stats.csv", "steps.png"]


def test_procedural_killed_at_random_moments_leaves_all_or_none(worker, tmp_path):
    """D16 with SIGKILL: a new folder appears with all three files or not at all; a killed run's hidden staging
    folder is removed by the next run."""
    moments = random.Random(16)
    argv = ["procedural", "--out", str(tmp_path / "demo"), "--height", "512", "--width", "512", "--steps", "100"]
    complete = 0
    for _ in range(6):
        result = worker.run(argv, cwd=tmp_path, kill_after=moments.uniform(0.1, 1.5))
        visible = sorted(path.name for path in tmp_path.glob("demo/*"))
        assert visible in ([], ["final.png", "stats.csv", "steps.png"]), visible
        complete += bool(visible)
        if visible:
            break
    assert worker.run(argv, cwd=tmp_path)["status"] == 0
    assert [path.name for path in tmp_path.iterdir()] == ["demo"]
    assert sorted(path.name for path in (tmp_path / "demo").iterdir()) == ["final.png", "stats.csv", "steps.png"]


# ---------------------------------------------------------------- library edges
def test_slerp_refuses_what_has_no_great_circle():
    noise = torch.randn(16, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="non-zero"):
        ddim.slerp(torch.zeros(16), noise, 0.5)
    with pytest.raises(ValueError, match="same or opposite"):
        ddim.slerp(noise, -2 * noise, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        ddim.slerp(noise, noise[:8], 0.5)
    assert torch.isfinite(ddim.slerp(noise, torch.randn(16), 0.3)).all()


@pytest.mark.parametrize("progress", [1.5, -0.1, np.array([0.0, 2.0]), torch.tensor([0.5, float("nan")])])
def test_easing_refuses_progress_outside_0_1(progress):
    with pytest.raises(ValueError, match=r"progress must lie in \[0, 1\]"):
        procedural.ease(progress)


# ---------------------------------------------------------------- loaders
def test_train_names_a_channel_mismatch_before_torch_does():
    from course_lib.config import TrainConfig, UNetConfig
    from course_lib.training import train

    digits = data.ImageDataset(torch.zeros(8, 1, 8, 8), None, ())
    with pytest.raises(ValueError, match="1 channels, but config.unet takes in_channels=3"):
        train(TrainConfig(unet=UNetConfig(in_channels=3, base_channels=8), steps=1), digits, progress=False)


@pytest.mark.parametrize("drop_last", [True, False])
def test_batches_of_an_empty_dataset_are_refused_at_once(drop_last):
    empty = data.ImageDataset(torch.zeros(0, 1, 8, 8), None, ())
    with pytest.raises(ValueError, match="no images"):
        next(data.iterate_batches(empty, 4, drop_last=drop_last))


def test_hidden_folders_are_not_classes(tmp_path):
    for folder in ("cats", ".ipynb_checkpoints", ".DS_Store"):
        (tmp_path / folder).mkdir()
        Image.new("L", (4, 4), 0).save(tmp_path / folder / "a.png")
    assert data.image_folder(tmp_path, size=4).class_names == ("cats",)


def test_16_bit_grey_png_keeps_its_levels(tmp_path):
    levels = np.array([[0, 16384], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as saved:
        assert saved.mode.startswith("I")           # the case the loader has to convert itself
    images = data.load_image_folder(tmp_path, size=2, channels=1).images[0, 0]
    expected = torch.tensor(np.round(levels / 257) / 255 * 2 - 1, dtype=torch.float32)
    torch.testing.assert_close(images, expected, atol=0.02, rtol=0)


# ---------------------------------------------------------------- atomic writes
def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"previous")

    def half_then_crash(temporary: Path):
        temporary.write_bytes(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_crash)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_atomic_write_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    write_atomically(tmp_path / "out.bin", lambda temporary: temporary.write_bytes(b"new"))
    assert (tmp_path / "out.bin").read_bytes() == b"new"
    # the new content (a nameless O_TMPFILE file on Linux, else .out.bin.PID.tmp), then the directory
    assert len(synced) == 2 and synced[-1] == str(tmp_path) and synced[0].endswith((".tmp", "(deleted)"))
