"""The U-Net and its pieces: shapes, formulas, gradients, conditioning, determinism, input errors."""
import math

import pytest
import torch
from torch import nn

from course_lib import unet


def small_unet(**options):
    torch.manual_seed(0)
    defaults = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1)
    return unet.UNet(**{**defaults, **options})


def timesteps(batch, seed=0):
    return torch.randint(0, 1000, (batch,), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- time embedding
def test_sinusoidal_embedding_follows_the_interleaved_formula():
    t = torch.tensor([0, 1, 17, 999])
    emb = unet.sinusoidal_embedding(t, 6)
    assert emb.shape == (4, 6) and emb.dtype == torch.float32
    for i in range(3):
        frequency = 1 / 10000 ** (2 * i / 6)
        assert torch.allclose(emb[:, 2 * i], torch.sin(t * frequency))
        assert torch.allclose(emb[:, 2 * i + 1], torch.cos(t * frequency))
    assert torch.equal(emb[0], torch.tensor([0.0, 1.0] * 3))          # t = 0: every sin 0, every cos 1


def test_sinusoidal_embedding_range_and_distinct_timesteps():
    emb = unet.sinusoidal_embedding(torch.arange(1000), 32)
    assert emb.abs().max() <= 1
    assert torch.allclose(emb.pow(2).sum(1), torch.full((1000,), 16.0), atol=1e-4)   # sin^2 + cos^2 = 1 per pair
    gaps = torch.cdist(emb, emb) + torch.eye(1000) * 1e9
    assert gaps.min() > 1e-3                                           # no two timesteps share an embedding


def test_time_embedding_separates_timesteps():
    torch.manual_seed(0)
    embed = unet.TimeEmbedding(16, 64)
    out = embed(torch.tensor([0, 1, 500]))
    assert out.shape == (3, 64)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


# ---------------------------------------------------------------- blocks
def test_parameter_count_formulas():
    assert unet.count_parameters(nn.Conv2d(3, 5, 3)) == 5 * 3 * 3 * 3 + 5
    assert unet.count_parameters(nn.Linear(7, 4), None) == 7 * 4 + 4
    c_in, c_out, d = 8, 16, 32
    block = unet.ResidualBlock(c_in, c_out, d)
    expected = (2 * c_in                                   # norm1 (weight, bias)
                + 9 * c_in * c_out + c_out                 # conv1
                + d * 2 * c_out + 2 * c_out                # time_proj -> scale and shift
                + 2 * c_out                                # norm2
                + 9 * c_out * c_out + c_out                # conv2
                + c_in * c_out + c_out)                    # 1x1 skip conv (channel count changes)
    assert unet.count_parameters(block) == expected
    assert unet.count_parameters(unet.AttentionBlock(8)) == 2 * 8 + 3 * 8 * 8 + 8 * 8 + 8


def test_residual_block_film_and_identity_skip():
    torch.manual_seed(0)
    block = unet.ResidualBlock(8, 8, 4)
    assert isinstance(block.skip, nn.Identity)
    x, emb = torch.randn(2, 8, 5, 5), torch.randn(2, 4)
    with torch.no_grad():
        block.time_proj.weight.zero_()
        block.time_proj.bias.zero_()                     # scale = shift = 0: FiLM leaves norm2(h) alone
        h = block.conv1(nn.functional.silu(block.norm1(x)))
        expected = x + block.conv2(nn.functional.silu(block.norm2(h)))
        assert torch.allclose(block(x, emb), expected, atol=1e-6)
        block.time_proj.bias[8:] = 1.0                   # shift by one everywhere changes the output
        assert not torch.allclose(block(x, emb), expected, atol=1e-3)


def test_self_attention_matches_explicit_loops():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 2, generator=generator)
    w_q, w_k, w_v = (torch.randn(3, 3, generator=generator) for _ in range(3))
    out = unet.self_attention(x, w_q, w_k, w_v)
    for b in range(2):
        tokens = [x[b, :, i, j] for i in range(2) for j in range(2)]
        for n, (i, j) in enumerate((i, j) for i in range(2) for j in range(2)):
            scores = torch.stack([(w_q @ tokens[n]) @ (w_k @ other) / math.sqrt(3) for other in tokens])
            weights = torch.softmax(scores, dim=0)
            expected = sum(w * (w_v @ other) for w, other in zip(weights, tokens))
            assert torch.allclose(out[b, :, i, j], expected, atol=1e-5)
    weights = unet.attention_weights(x, w_q, w_k)
    assert weights.shape == (2, 4, 4) and torch.allclose(weights.sum(-1), torch.ones(2, 4))


def test_attention_is_global_and_convolution_is_local():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 6)
    for module, global_reach in ((unet.AttentionBlock(8), True), (nn.Conv2d(8, 8, 3, padding=1), False)):
        moved = x.clone()
        moved[0, :, 5, 5] += 1.0                         # change one far corner
        changed = (module(moved) - module(x)).abs().sum(1)[0, 0, 0] > 1e-6
        assert bool(changed) == global_reach


def test_upsample_and_concat_order_and_shape():
    h, skip = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 6, 6)
    out = unet.upsample_and_concat(h, skip, nn.Identity())
    assert out.shape == (2, 9, 6, 6)
    assert torch.equal(out[:, 4:], skip)                 # the skip comes second
    assert torch.equal(out[:, :4, 0:2, 0:2], h[:, :, :1, :1].expand(2, 4, 2, 2))  # nearest neighbour


# ---------------------------------------------------------------- the U-Net
@pytest.mark.parametrize("size, mults", [(8, (1, 2)), (28, (1, 2, 2)), (28, (1, 2, 2, 2)), (32, (1, 2, 2)),
                                         (7, (1, 2, 2))])
def test_shapes_at_several_sizes(size, mults):
    model = small_unet(channel_mults=mults, in_channels=3, out_channels=2)
    out = model(torch.randn(2, 3, size, size), timesteps(2))
    assert out.shape == (2, 2, size, size)


def test_28_pixels_with_four_levels_pads_to_32_and_crops():
    model = small_unet(channel_mults=(1, 1, 1, 1))
    shapes = dict(unet.trace_shapes(model, torch.randn(1, 1, 28, 28), timesteps(1)))
    assert shapes["conv_in"] == (1, 8, 32, 32) and shapes["mid[1] AttentionBlock"] == (1, 8, 4, 4)
    assert shapes["conv_out"] == (1, 1, 32, 32)


@pytest.mark.parametrize("size", [32, 30, 7])
def test_patches_fold_into_channels_and_unfold_at_the_end(size):
    """patch_size 2: the first level works at half the size on 4 x the channels; every pixel gets an output."""
    model = small_unet(in_channels=3, patch_size=2)
    x = torch.randn(1, 3, size, size, requires_grad=True)
    shapes = dict(unet.trace_shapes(model, x, timesteps(1)))
    padded = -(-size // 4) * 4                                   # a multiple of patch_size * 2^(levels - 1)
    assert model.conv_in.in_channels == 12 and shapes["conv_in"] == (1, 8, padded // 2, padded // 2)
    assert shapes["conv_out"] == (1, 12, padded // 2, padded // 2)
    out = model(x, timesteps(1))
    assert out.shape == (1, 3, size, size)
    out[0, 2, size - 1, size - 1].backward()           # the last pixel's output depends on that pixel
    assert x.grad[0, 2, size - 1, size - 1] != 0
    with pytest.raises(ValueError, match="patch_size must be >= 1, got 0"):
        small_unet(patch_size=0)


def test_every_parameter_gets_a_finite_gradient():
    model = small_unet(num_classes=3, num_res_blocks=2, dropout=0.1)
    out = model(torch.randn(4, 1, 8, 8), timesteps(4), torch.tensor([0, 1, 2, 3]))
    out.pow(2).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_time_and_class_change_the_output():
    model = small_unet(num_classes=10).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        base = model(x, torch.tensor([5, 5, 5]), torch.tensor([1, 1, 1]))
        assert not torch.allclose(base, model(x, torch.tensor([600, 600, 600]), torch.tensor([1, 1, 1])))
        assert not torch.allclose(base, model(x, torch.tensor([5, 5, 5]), torch.tensor([2, 2, 2])))
        null = model(x, torch.tensor([5, 5, 5]))                          # y=None means the null class
        assert torch.equal(null, model(x, torch.tensor([5, 5, 5]), torch.full((3,), 10)))
        assert not torch.allclose(null, base)
        assert torch.equal(model(x, 5), model(x, torch.tensor([5, 5, 5]))) # one int for the whole batch


def test_ablations_remove_what_they_say():
    no_skip = small_unet(skip_connections=False)
    assert no_skip.up_blocks[0][0].conv1.in_channels == 8               # the up path sees no skip channels
    no_time = small_unet(time_conditioning=False).eval()
    assert no_time.parameter_breakdown()["time embedding"] == 0
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(no_time(x, torch.tensor([0, 0])), no_time(x, torch.tensor([999, 999])))


def test_parameter_breakdown_adds_up():
    model = small_unet(num_classes=4)
    parts = model.parameter_breakdown()
    assert sum(parts.values()) == unet.count_parameters(model)
    assert parts["class embedding"] == 5 * model.time_dim                 # 4 classes + the null class
    wider = unet.UNet(base_channels=16, channel_mults=(1, 2))
    assert unet.count_parameters(wider) > 3 * unet.count_parameters(small_unet())   # widths enter squared


def test_same_seed_same_network_and_output():
    x, t = torch.randn(2, 1, 8, 8), timesteps(2)
    a, b = small_unet().eval(), small_unet().eval()
    with torch.no_grad():
        assert torch.equal(a(x, t), b(x, t))
        torch.manual_seed(1)
        assert not torch.allclose(a(x, t), unet.UNet(base_channels=8).eval()(x, t))


def test_bad_inputs_name_expected_and_got():
    model, conditional = small_unet(), small_unet(num_classes=3)
    x, t = torch.randn(2, 1, 8, 8), timesteps(2)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\), got \(2, 3, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8), t)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\), got \(1, 8, 8\)"):
        model(torch.randn(1, 8, 8), t[:1])
    with pytest.raises(ValueError, match=r"shape \(2,\).*got \(3,\)"):
        model(x, timesteps(3))
    with pytest.raises(TypeError, match="timesteps"):
        model(x, torch.tensor([True, False]))
    assert model(x, torch.tensor([0.5, 999.5])).shape == x.shape      # continuous time (flow matching's tau * 1000)
    with pytest.raises(ValueError, match="unconditional"):
        model(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        conditional(x, t, torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="floating-point"):
        model(x.long(), t)
    with pytest.raises(ValueError, match="even"):
        unet.UNet(base_channels=7)
    with pytest.raises(ValueError, match="channel_mults"):
        unet.UNet(channel_mults=())
