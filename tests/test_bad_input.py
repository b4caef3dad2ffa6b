"""Bad input gets one clear line and loses nothing (issue 16, and issue 12 item 7).

Every row of CASES is a command line a careless or hostile user might type. Each must end within seconds with
a non-zero exit status (2: usage, 1: runtime), print exactly one line on stderr naming the problem and no
traceback, and leave every file that existed before byte-identical. Most rows run in-process through
``course_lib.__main__.main`` (a torch start-up costs seconds here); SUBPROCESS_CASES run a few of them for real,
as ``python -m course_lib``, under a memory cap (RLIMIT_AS) and a time limit.
"""
from __future__ import annotations

import contextlib
import io
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib import __main__ as cli_main
from course_lib import data
from course_lib._io import write_atomically
from course_lib.training import DIFFUSION_ASSET

MEMORY_CAP = 4 * 2**30        # bytes of address space for a subprocess (torch alone maps ~1 GB)
TIME_LIMIT = 120              # seconds for a subprocess on this loaded machine (each takes a few)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height grey pixels (the data is a stub: it must never be decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The files the cases point at; all of them must survive every case unchanged."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "random-bytes.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (root / "truncated.pt").write_bytes(DIFFUSION_ASSET.read_bytes()[:100_000])
    torch.save(torch.nn.Linear(2, 2), root / "module.pt")            # a whole pickled module: not weights only
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")     # readable, but not a course checkpoint
    (root / "existing.pt").write_bytes(b"hours of training")
    (root / "a-file").write_text("not a directory")
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no pictures here")
    (root / "notes" / "data.csv").write_text("1,2")
    for name, (width, height) in {"strip": (1, 80_000_000), "huge": (13_000, 13_000)}.items():
        (root / name).mkdir()
        (root / name / f"{name}.png").write_bytes(_png_declaring(width, height))
    (root / "fake").mkdir()
    (root / "fake" / "picture.png").write_text("a text file with a picture's name")
    return root


TRAIN = ["train", "--steps", "1"]
SAMPLE = ["sample", "--out", "{tmp}/samples.npy", "--checkpoint"]
# (id, argv ({tmp} is the workspace), expected exit status, words the one line must contain)
CASES = [
    ("12.7 random bytes", SAMPLE + ["{tmp}/random-bytes.pt"], 2, ["not a readable course checkpoint", "not a PyTorch"]),
    ("12.7 truncated", SAMPLE + ["{tmp}/truncated.pt"], 2, ["not a readable course checkpoint", "truncated"]),
    ("12.7 pickled module", SAMPLE + ["{tmp}/module.pt"], 2, ["not a readable course checkpoint", "different format"]),
    ("foreign torch file", SAMPLE + ["{tmp}/foreign.pt"], 2, ["not a diffusion-course checkpoint"]),
    ("missing checkpoint", SAMPLE + ["{tmp}/nothing.pt"], 2, ["no checkpoint file", "nothing.pt"]),
    ("sample seed 2**64", ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/s.npy",
                           "--seed", str(2**64)], 2, ["--seed"]),
    ("sample --n 0", ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/s.npy", "--n", "0"], 2, ["--n"]),
    ("sample --eta 2", ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/s.npy", "--eta", "2"], 2,
     ["--eta"]),
    ("sample --out .txt", ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/s.txt"], 2, ["--out"]),
    ("sample --out under a file", ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/a-file/s.npy"],
     2, ["--out", "not a writable directory"]),
    ("sample --label on unknown class", ["sample", "--checkpoint", str(DIFFUSION_ASSET), "--out", "{tmp}/s.npy",
                                         "--label", "10"], 2, ["--label"]),
    ("sample without --checkpoint", ["sample", "--out", "{tmp}/s.npy"], 2, ["--checkpoint"]),
    ("sample --n not a number", SAMPLE + [str(DIFFUSION_ASSET), "--n", "many"], 2, ["--n", "many"]),
    ("sample --sampler unknown", SAMPLE + [str(DIFFUSION_ASSET), "--sampler", "magic"], 2, ["--sampler"]),
    ("no command", [], 2, ["COMMAND"]),
    ("D2 overwrite", TRAIN + ["--out", "{tmp}/existing.pt"], 2, ["exists", "--resume", "--force"]),
    ("D2 resume and force", TRAIN + ["--out", "{tmp}/existing.pt", "--resume", "--force"], 2, ["give one"]),
    ("D4 --out under a file", TRAIN + ["--out", "{tmp}/a-file/model.pt"], 2, ["--out", "not a writable directory"]),
    ("D4 --export under a file", TRAIN + ["--out", "{tmp}/new.pt", "--export", "{tmp}/a-file/small.pt"], 2,
     ["--export", "not a writable directory"]),
    ("--out not .pt", TRAIN + ["--out", "{tmp}/model.ckpt"], 2, ["--out", ".pt"]),
    ("--resume nothing", TRAIN + ["--out", "{tmp}/new.pt", "--resume"], 2, ["--resume", "no checkpoint"]),
    ("D13 --checkpoint-every 0", TRAIN + ["--out", "{tmp}/new.pt", "--checkpoint-every", "0"], 2, ["checkpoint_every"]),
    ("D14 seed 2**64", TRAIN + ["--out", "{tmp}/new.pt", "--seed", str(2**64)], 2, ["seed", "2**64"]),
    ("seed negative", TRAIN + ["--out", "{tmp}/new.pt", "--seed", "-1"], 2, ["seed"]),
    ("D8 --grad-clip 0", TRAIN + ["--out", "{tmp}/new.pt", "--grad-clip", "0"], 2, ["grad_clip"]),
    ("D8 --grad-clip -1", TRAIN + ["--out", "{tmp}/new.pt", "--grad-clip", "-1"], 2, ["grad_clip"]),
    ("--lr 0", TRAIN + ["--out", "{tmp}/new.pt", "--lr", "0"], 2, ["lr"]),
    ("--batch-size 0", TRAIN + ["--out", "{tmp}/new.pt", "--batch-size", "0"], 2, ["batch_size"]),
    ("--ema-decay 1", TRAIN + ["--out", "{tmp}/new.pt", "--ema-decay", "1"], 2, ["ema_decay"]),
    ("--T 0", TRAIN + ["--out", "{tmp}/new.pt", "--T", "0"], 2, ["T"]),
    ("--schedule unknown", TRAIN + ["--out", "{tmp}/new.pt", "--schedule", "wavy"], 2, ["--schedule"]),
    ("--channels 2", TRAIN + ["--out", "{tmp}/new.pt", "--channels", "2"], 2, ["--channels"]),
    ("--base-channels odd", TRAIN + ["--out", "{tmp}/new.pt", "--base-channels", "7"], 2, ["base_channels"]),
    ("no budget", ["train", "--out", "{tmp}/new.pt"], 2, ["budget"]),
    ("unknown dataset", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "imagenet"], 2, ["unknown dataset"]),
    ("missing folder", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "folder:{tmp}/nowhere"], 2, ["nowhere"]),
    ("D12 empty folder", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "folder:{tmp}/empty"], 2,
     ["empty", "no pictures"]),
    ("D12 folder of non-images", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "folder:{tmp}/notes"], 2,
     ["notes", "found 2 other entries", "readme.txt"]),
    ("D1 1 x 80M strip", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "folder:{tmp}/strip"], 2,
     ["strip.png", "too large"]),
    ("D1 13000 x 13000", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "folder:{tmp}/huge"], 2,
     ["huge.png", "too large"]),
    ("text file named .png", TRAIN + ["--out", "{tmp}/new.pt", "--dataset", "folder:{tmp}/fake"], 2,
     ["picture.png", "not a readable"]),
]
SUBPROCESS_CASES = ("12.7 random bytes", "D2 overwrite", "D1 13000 x 13000")


def _snapshot(root: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _argv(argv: list[str], root: Path) -> list[str]:
    return [arg.replace("{tmp}", str(root)) for arg in argv]


def _check_outcome(status: int, stderr: str, expected_status: int, words: list[str], before: dict, root: Path):
    lines = stderr.strip().splitlines()
    assert status == expected_status, stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr and "weights_only" not in stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert _snapshot(root) == before, "a file changed, appeared or vanished"


def _run_in_process(argv: list[str]) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli_main.main(argv)
        except SystemExit as exit_:   # argparse's usage errors
            status = exit_.code
    return status, stderr.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_in_process(case, workspace):
    _, argv, expected_status, words = case
    before = _snapshot(workspace)
    status, stderr = _run_in_process(_argv(argv, workspace))
    _check_outcome(status, stderr, expected_status, words, before, workspace)


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_as_a_real_command(name, workspace):
    _, argv, expected_status, words = next(case for case in CASES if case[0] == name)
    before = _snapshot(workspace)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "course_lib", *_argv(argv, workspace)], capture_output=True,
                            text=True, timeout=TIME_LIMIT, preexec_fn=_cap_memory, env=environment,
                            cwd=workspace)
    _check_outcome(result.returncode, result.stderr, expected_status, words, before, workspace)


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


# ---------------------------------------------------------------- loaders
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
    assert synced[-1] == str(tmp_path) and synced[0].endswith(".tmp") and len(synced) == 2
