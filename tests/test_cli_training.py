"""`python -m course_lib train` / `sample`: seeded, resumable, files as documented; bad input writes nothing."""
import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.__main__ import main
from course_lib.checkpoints import load_checkpoint, read_checkpoint

TINY = ["--base-channels", "16", "--channel-mults", "1", "--T", "20", "--batch-size", "16", "--seed", "0"]


def run(*argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit:      # argparse's own errors and --help
        return exit.code


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    conditional, unconditional = folder / "cond.pt", folder / "uncond.pt"
    assert run("train", "--dataset", "digits", "--conditional", "--steps", 4, "--out", conditional, *TINY) == 0
    assert run("train", "--dataset", "digits", "--steps", 2, "--out", unconditional, *TINY) == 0
    return conditional, unconditional


def test_train_records_its_command_and_resumes_exactly(tmp_path, checkpoints):
    conditional, _ = checkpoints
    info = load_checkpoint(conditional)[2]
    assert info["command"].startswith("python -m course_lib train --dataset digits --conditional --steps 4")
    config = info["config"]
    assert config.unet.num_classes == 10 and (config.schedule, config.T, config.steps) == ("cosine", 20, 4)
    partial = tmp_path / "partial.pt"
    assert run("train", "--dataset", "digits", "--conditional", "--steps", 2, "--out", partial, *TINY) == 0
    assert run("train", "--dataset", "digits", "--conditional", "--steps", 4, "--out", partial, "--resume", *TINY) == 0
    whole, resumed = read_checkpoint(conditional), read_checkpoint(partial)
    assert resumed["step"] == 4 and resumed["loss_history"] == whole["loss_history"]
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])


def test_export_writes_a_small_sampling_only_copy(tmp_path):
    out, small = tmp_path / "full.pt", tmp_path / "small.pt"
    assert run("train", "--steps", 1, "--out", out, "--export", small, *TINY) == 0
    assert small.stat().st_size < out.stat().st_size / 2
    assert read_checkpoint(small)["optimizer"] is None


def test_sample_npy_is_float32_in_unit_range_and_seeded(tmp_path, checkpoints):
    conditional, _ = checkpoints
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    for out in (first, second):
        assert run("sample", "--checkpoint", conditional, "--n", 3, "--sampler", "ddim", "--steps", 5,
                   "--seed", 7, "--out", out) == 0
    images = np.load(first)
    assert images.dtype == np.float32 and images.shape == (3, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 1
    assert np.array_equal(images, np.load(second))


def test_sample_png_is_an_enlarged_image_grid(tmp_path, checkpoints):
    out = tmp_path / "grid.png"
    assert run("sample", "--checkpoint", checkpoints[0], "--n", 4, "--sampler", "ddpm", "--out", out) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * 64 + 2, 2 * 64 + 2), "8x8 digits enlarged 8 times, a 2-pixel separator"
    assert np.all(grid[64:66] == 128) and np.all(grid[:, 64:66] == 128), "grey separators"
    block = grid[:8, :8]
    assert np.all(block == block[0, 0]), "nearest neighbour: each pixel a uniform 8x8 block"
    assert run("sample", "--checkpoint", checkpoints[0], "--n", 4, "--sampler", "ddpm", "--scale", 3,
               "--out", out, "--seed", 1) == 0
    assert np.asarray(Image.open(out)).shape == (2 * 24 + 2, 2 * 24 + 2)


def test_label_all_draws_one_row_per_class(tmp_path, checkpoints, capsys):
    grid, array = tmp_path / "all.png", tmp_path / "all.npy"
    for out in (grid, array):
        assert run("sample", "--checkpoint", checkpoints[0], "--n", 3, "--steps", 2, "--label", "all",
                   "--out", out) == 0
    assert np.asarray(Image.open(grid)).shape == (10 * 64 + 9 * 2, 3 * 64 + 2 * 2)
    assert np.load(array).shape == (30, 1, 8, 8)
    assert "one per label: 0, 1, 2" in capsys.readouterr().out
    listed, single = tmp_path / "listed.npy", tmp_path / "single.npy"
    assert run("sample", "--checkpoint", checkpoints[0], "--n", 2, "--steps", 2, "--label", 7, 1,
               "--out", listed, "--seed", 4) == 0
    assert run("sample", "--checkpoint", checkpoints[0], "--n", 2, "--steps", 2, "--label", 7,
               "--out", single, "--seed", 4) == 0
    assert np.load(listed).shape == (4, 1, 8, 8)
    # Batches of different sizes round differently in float32; the order is what is tested.
    assert np.allclose(np.load(listed)[:2], np.load(single), atol=1e-3), "rows in the order the labels were given"


def test_guidance_zero_is_unconditional_and_one_is_conditional(tmp_path, checkpoints):
    conditional, _ = checkpoints
    files = {}
    for name, extra in {"uncond": [], "w0": ["--label", 3, "--guidance", 0], "cond": ["--label", 3],
                        "w1": ["--label", 3, "--guidance", 1], "w3": ["--label", 3, "--guidance", 3]}.items():
        files[name] = tmp_path / f"{name}.npy"
        assert run("sample", "--checkpoint", conditional, "--n", 2, "--steps", 4, "--seed", 1,
                   "--out", files[name], *extra) == 0
    load = {name: np.load(path) for name, path in files.items()}
    # Guidance runs the net on a doubled batch, whose float rounding differs slightly from a single batch.
    assert np.allclose(load["w0"], load["uncond"], atol=1e-3)
    assert np.allclose(load["w1"], load["cond"], atol=1e-3)
    assert not np.allclose(load["w3"], load["cond"], atol=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "cifar", "--steps", 1], "unknown dataset 'cifar'"),
    (["train", "--dataset", "mnist:/no/such/dir", "--steps", 1], "no such directory"),
    (["train", "--dataset", "digits"], "give a budget"),
    (["train", "--steps", 0], "steps must be >= 1, got 0"),
    (["train", "--steps", 1, "--lr", -1], "lr must be > 0"),
    (["train", "--steps", 1, "--threads", 0], "--threads must lie in 1.."),
    (["train", "--steps", 1, "--patch-size", 0], "--patch-size must be >= 1, got 0"),
    (["train", "--steps", 1, "--attention-levels", 1], "--attention-levels must be a sequence of level numbers in 0..0"),
    (["train", "--steps", 1, "--resume"], "no checkpoint"),
    (["sample", "--checkpoint", "missing.pt"], "no checkpoint file at"),
    (["sample", "--checkpoint", "UNCOND", "--label", 1], "unconditional model"),
    (["sample", "--checkpoint", "COND", "--label", 10], "--label must lie in 0..9"),
    (["sample", "--checkpoint", "COND", "--label", 1, "seven"], "--label takes class numbers"),
    (["sample", "--checkpoint", "COND", "--scale", 0], "--scale must be >= 1"),
    (["sample", "--checkpoint", "COND", "--n", 0], "--n must be >= 1"),
    (["sample", "--checkpoint", "COND", "--guidance", 2], "--guidance needs --label"),
    (["sample", "--checkpoint", "COND", "--sampler", "ddpm", "--steps", 5], "--sampler ddim"),
    (["sample", "--checkpoint", "COND", "--label", 1, "--guidance", -1], "guidance"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, checkpoints, argv, message):
    replace = {"COND": checkpoints[0], "UNCOND": checkpoints[1]}
    argv = [replace.get(a, a) for a in argv]
    if argv[0] == "train":
        argv += ["--out", tmp_path / "out.pt", *TINY]
    else:
        argv += ["--out", tmp_path / "out.npy", "--steps" if "--steps" not in argv else "--seed", 3]
    assert run(*argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sample_refuses_unknown_extensions(tmp_path, capsys, checkpoints):
    assert run("sample", "--checkpoint", checkpoints[0], "--out", tmp_path / "x.jpg") == 2
    assert ".npy" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "sample"])
def test_help(capsys, command):
    assert run(command, "--help") == 0
    assert "--out" in capsys.readouterr().out


def test_train_help_shows_the_config_defaults(capsys):
    """The command line's defaults are TrainConfig's and UNetConfig's, not a second copy."""
    from course_lib.config import TrainConfig, UNetConfig

    assert run("train", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, value in [("--label-dropout", TrainConfig.label_dropout), ("--lr", TrainConfig.lr),
                        ("--T", TrainConfig.T), ("--batch-size", TrainConfig.batch_size),
                        ("--base-channels", UNetConfig.base_channels), ("--schedule", TrainConfig.schedule)]:
        assert f"{flag}" in text and f"default {value}" in text


def test_patch_size_and_attention_levels_are_recorded(tmp_path):
    """--patch-size reaches the checkpoint's U-Net, whose default layout is chosen for the size it works at;
    --attention-levels adds attention to the levels given."""
    out, grid = tmp_path / "patched.pt", tmp_path / "grid.npy"
    assert run("train", "--dataset", "sprites", "--patch-size", "2", "--steps", 1, "--batch-size", 8, "--T", 20,
               "--out", out) == 0
    unet = load_checkpoint(out)[2]["config"].unet
    assert unet.patch_size == 2 and (unet.channel_mults, unet.attention_levels) == ((1, 2), ())   # 16 px: two levels
    assert run("sample", "--checkpoint", out, "--n", 2, "--sampler", "ddim", "--steps", 2, "--out", grid) == 0
    assert np.load(grid).shape == (2, 3, 32, 32)
    assert run("train", "--dataset", "sprites", "--patch-size", "2", "--channel-mults", 1, 2, 2, "--attention-levels",
               0, 1, "--steps", 1, "--batch-size", 8, "--T", 20, "--out", out, "--force") == 0
    unet = load_checkpoint(out)[2]["config"].unet
    assert (unet.channel_mults, unet.attention_levels) == ((1, 2, 2), (0, 1))


def test_flow_objective_trains_and_samples_with_euler_and_heun(tmp_path, capsys):
    """`train --objective flow` learns flow matching's velocity (U-Net with time tau * 1000); `sample` then solves
    the ODE with --sampler euler|heun, seeded, and refuses the diffusion samplers (and vice versa)."""
    flow = tmp_path / "flow.pt"
    assert run("train", "--dataset", "digits", "--conditional", "--objective", "flow", "--steps", 3, "--out", flow,
               *TINY) == 0
    assert load_checkpoint(flow)[2]["config"].parameterization == "flow"
    outputs = {}
    for sampler in ("euler", "heun"):
        for name in ("a", "b"):
            out = tmp_path / f"{sampler}_{name}.npy"
            assert run("sample", "--checkpoint", flow, "--sampler", sampler, "--steps", 3, "--n", 4, "--label", 2,
                       "--out", out) == 0
            outputs[sampler, name] = np.load(out)
        assert np.array_equal(outputs[sampler, "a"], outputs[sampler, "b"])
    assert not np.array_equal(outputs["euler", "a"], outputs["heun", "a"])
    assert outputs["euler", "a"].shape == (4, 1, 8, 8) and outputs["euler", "a"].dtype == np.float32
    assert run("sample", "--checkpoint", flow, "--sampler", "ddim", "--out", tmp_path / "x.npy") == 2
    assert "flow-matching model" in capsys.readouterr().err and not (tmp_path / "x.npy").exists()
    diffusion = tmp_path / "diffusion.pt"
    assert run("train", "--steps", 1, "--out", diffusion, *TINY) == 0
    assert run("sample", "--checkpoint", diffusion, "--sampler", "heun", "--out", tmp_path / "y.npy") == 2
    assert "diffusion model" in capsys.readouterr().err
