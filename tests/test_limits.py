"""The memory estimates the command line checks before starting work (course_lib/limits.py)."""
from __future__ import annotations

import pytest
import torch

from course_lib import limits
from course_lib.compare import training_memory
from course_lib.config import TrainConfig, UNetConfig
from course_lib.training import diffusion_loss
from course_lib.unet import UNet, count_parameters


@pytest.mark.parametrize("unet, shape", [
    (UNetConfig(in_channels=1, base_channels=16), (1, 8, 8)),
    (UNetConfig(in_channels=3, base_channels=16), (3, 32, 32)),
    (UNetConfig(in_channels=3, base_channels=32, channel_mults=(1, 2, 2, 2)), (3, 64, 64)),
    (UNetConfig(in_channels=1, base_channels=8), (1, 28, 28)),
    (UNetConfig(in_channels=3, base_channels=16, channel_mults=(1, 2, 2), attention_levels=(1, 2)), (3, 32, 32)),
    (UNetConfig(in_channels=3, base_channels=16, channel_mults=(1, 2, 2), patch_size=2), (3, 30, 30)),
])
def test_training_estimate_is_within_a_factor_of_two_of_what_autograd_keeps(unet, shape):
    torch.manual_seed(0)
    model = UNet(**unet.__dict__)
    schedule = TrainConfig(unet=unet, steps=1, T=10).make_schedule()

    def kept(batch):
        return training_memory(lambda: diffusion_loss(model, torch.randn(batch, *shape), schedule))
    measured = (kept(4) - kept(2)) / 2          # per image: the weights saved for backward cancel out
    per_image = (limits.training_bytes(TrainConfig(unet=unet, steps=1, batch_size=2, T=10), shape)
                 - limits.training_bytes(TrainConfig(unet=unet, steps=1, batch_size=1, T=10), shape))
    assert 0.5 < per_image / measured < 2, (per_image, measured)


def test_parameters_are_counted_without_building_the_weights():
    unet = UNetConfig(in_channels=3, base_channels=16, channel_mults=(1, 2), num_classes=10)
    assert limits.unet_parameters(unet) == count_parameters(UNet(**unet.__dict__))


def test_the_message_gives_estimate_limit_and_both_ways_out():
    with pytest.raises(limits.TooLarge, match=r"^--n 9 needs about 3 GB of memory \(estimate\), above the limit "
                                              r"of 2 GB: lower --n, or add --no-limits"):
        limits.require_within(3 * 2**30, "--n 9", "lower --n", limit=2 * 2**30)
    limits.require_within(2 * 2**30, "--n 9", "lower --n", limit=2 * 2**30)


def test_no_limits_lets_a_refused_run_go(monkeypatch, tmp_path, capsys):
    from course_lib.__main__ import main

    monkeypatch.setattr(limits, "MEMORY_LIMIT", 1000)
    argv = ["procedural", "--height", "8", "--width", "8", "--steps", "10", "--out", str(tmp_path / "demo")]
    assert main(argv) == 2 and "--no-limits" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
    assert main(argv + ["--no-limits"]) == 0
    assert (tmp_path / "demo" / "final.png").is_file()
