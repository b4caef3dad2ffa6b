"""The autoencoder of latent diffusion, the DCGAN, the CLI's sprites / --latent paths, and how compare samples a checkpoint."""
from dataclasses import asdict

import numpy as np
import pytest
import torch

from course_lib import autoencoder, compare, gan
from course_lib.__main__ import main
from course_lib.config import TrainConfig, UNetConfig
from course_lib.data import ImageDataset
from course_lib.sampling import sample
from course_lib.unet import UNet


def _tiny_sprites(n=8):
    from course_lib.sprites import make_sprites
    labels = torch.arange(n) % 6
    return ImageDataset(make_sprites(labels, seed=5), labels, tuple(str(k) for k in range(6)))


# ---------------------------------------------------------------- autoencoder
def test_autoencoder_shapes_and_range():
    model = autoencoder.Autoencoder(latent_channels=4, width=8)
    mean, logvar = model.encode(torch.zeros(2, 3, 32, 32))
    assert mean.shape == logvar.shape == (2, 4, 8, 8)
    out = model.decode(torch.randn(2, 4, 8, 8) * 10)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).mean()
    torch.testing.assert_close(autoencoder.kl_to_standard_normal(mean, logvar), expected)
    assert autoencoder.kl_to_standard_normal(torch.zeros(5), torch.zeros(5)) == 0


def test_latent_scale_factor_gives_unit_std():
    z = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 7 + 3
    assert (autoencoder.latent_scale_factor(z) * z).std().item() == pytest.approx(1.0, abs=1e-5)


def test_vae_loss_uses_the_reparameterised_draw():
    torch.manual_seed(0)
    model = autoencoder.Autoencoder(width=8).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn(2, 4, 8, 8)
    mean, logvar = model.encode(x)
    expected = ((model.decode(mean + (0.5 * logvar).exp() * noise) - x) ** 2).mean() \
        + 0.5 * autoencoder.kl_to_standard_normal(mean, logvar)
    torch.testing.assert_close(autoencoder.vae_loss(model, x, 0.5, noise), expected)


def test_payload_round_trip_and_decode(tmp_path):
    torch.manual_seed(0)
    model = autoencoder.Autoencoder(width=8).eval()
    path = tmp_path / "ae.pt"
    torch.save(autoencoder.payload_of(model, 2.0), path)
    loaded, scale, _ = autoencoder.load_autoencoder(path)
    z = torch.randn(3, 4, 8, 8)
    assert scale == 2.0
    torch.testing.assert_close(autoencoder.decode_latents(loaded, scale, z), model.decode(z / 2.0))
    data = _tiny_sprites()
    latents = autoencoder.latent_dataset(loaded, scale, data)
    torch.testing.assert_close(latents.images, 2.0 * model.encode(data.images)[0])
    assert torch.equal(latents.labels, data.labels)


def test_load_autoencoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no autoencoder file"):
        autoencoder.load_autoencoder(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable autoencoder"):
        autoencoder.load_autoencoder(tmp_path / "bad.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a diffusion-course autoencoder"):
        autoencoder.load_autoencoder(tmp_path / "other.pt")


def test_shipped_autoencoder_reconstructs_held_out_sprites():
    from course_lib.sprites import load_sprites
    model, scale, payload = autoencoder.load_autoencoder()
    test = load_sprites("test").images[:200]
    with torch.no_grad():
        latents = autoencoder.encode_means(model, test)
        error = ((autoencoder.decode_latents(model, scale, scale * latents) - test) ** 2).mean().item()
    assert latents.shape == (200, 4, 8, 8) and error < 0.02
    assert 0.5 < (scale * latents).std().item() < 2.0 and payload["command"] == autoencoder.ASSET_COMMAND


# ---------------------------------------------------------------- GAN
def test_gan_losses_are_goodfellows():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-3.0, 1.0])
    expected = -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(fake)).mean()
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected)
    torch.testing.assert_close(gan.generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean())


def test_gan_training_is_seeded_and_round_trips(tmp_path):
    data = _tiny_sprites(16)
    runs = [gan.train_gan(data, steps=2, seed=3, batch_size=4, width=8, progress=False) for _ in range(2)]
    assert runs[0].d_losses == runs[1].d_losses and len(runs[0].g_losses) == 2
    images = gan.gan_sample(runs[0].generator, 5, seed=1)
    assert images.shape == (5, 3, 32, 32) and images.abs().max() <= 1
    assert torch.equal(images, gan.gan_sample(runs[1].generator, 5, seed=1))
    gan.save_gan(tmp_path / "g.pt", runs[0], command="test")
    generator, payload = gan.load_gan(tmp_path / "g.pt")
    assert torch.equal(gan.gan_sample(generator, 5, seed=1), images) and payload["step"] == 2
    with pytest.raises(ValueError, match="budget"):
        gan.train_gan(data, seed=0)


# ---------------------------------------------------------------- CLI
def test_cli_trains_on_latents_and_sample_decodes(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(autoencoder.payload_of(autoencoder.Autoencoder(width=8).eval(), 1.5), tmp_path / "ae.pt")
    checkpoint, out = tmp_path / "latent.pt", tmp_path / "s.npy"
    assert main(["train", "--dataset", "sprites", "--latent", str(tmp_path / "ae.pt"), "--conditional", "--steps", "2",
                 "--base-channels", "8", "--channel-mults", "1", "--batch-size", "4", "--out", str(checkpoint)]) == 0
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["dataset"]["image_shape"] == [4, 8, 8] and payload["latent"]["scale"] == 1.5
    assert main(["sample", "--checkpoint", str(checkpoint), "--n", "3", "--steps", "2", "--label", "1",
                 "--out", str(out)]) == 0
    images = np.load(out)
    assert images.shape == (3, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_cli_latent_errors(tmp_path, capsys):
    assert main(["train", "--dataset", "sprites", "--latent", str(tmp_path / "none.pt"), "--steps", "1",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "no autoencoder file" in capsys.readouterr().err
    torch.save(autoencoder.payload_of(autoencoder.Autoencoder(width=8), 1.0), tmp_path / "ae.pt")
    assert main(["train", "--dataset", "digits", "--latent", str(tmp_path / "ae.pt"), "--steps", "1",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert "3-channel pictures" in capsys.readouterr().err


@pytest.mark.parametrize("parameterization", ["v", "x0"])
def test_diffusion_sprites_reads_the_checkpoints_parameterization(parameterization):
    config = TrainConfig(unet=UNetConfig(in_channels=3, base_channels=8), parameterization=parameterization, steps=1)
    torch.manual_seed(0)
    model, schedule = UNet(**asdict(config.unet)).eval(), config.make_schedule()
    info = {"config": config, "dataset": {"image_shape": [3, 8, 8]}, "latent": None}
    images, _ = compare.diffusion_sprites(model, schedule, info, 2, steps=3, seed=0)
    expected = {(p, eta): sample(model, schedule, (2, 3, 8, 8), sampler="ddim", steps=3, eta=eta, seed=0, clip_x0=True,
                                 progress=False, parameterization=p).images.clamp(-1, 1)
                for p in (parameterization, "eps") for eta in (0.0, compare.SAMPLING_ETA)}
    torch.testing.assert_close(images, expected[parameterization, compare.SAMPLING_ETA])
    assert not torch.allclose(images, expected["eps", compare.SAMPLING_ETA])
    deterministic, _ = compare.diffusion_sprites(model, schedule, info, 2, steps=3, seed=0, eta=0.0)
    torch.testing.assert_close(deterministic, expected[parameterization, 0.0])
    assert not torch.allclose(deterministic, images)
