"""The procedural sprites (recipe steps, seeding, splits) and the sprite metrics with their floors."""
import colorsys
import math

import pytest
import torch

from course_lib import sprite_metrics as sm
from course_lib.metrics import kernel_distance
from course_lib.sprites import (FAMILIES, PALETTES, body_masks, hsv_to_rgb, load_sprites, make_sprites,
                                mirrored_mask, outline_of)


def test_mirrored_mask_keeps_the_left_half_and_is_symmetric():
    half = torch.rand(5, 16, 8, generator=torch.Generator().manual_seed(0)) < 0.5
    full = mirrored_mask(half)
    assert full.shape == (5, 16, 16) and full.dtype == torch.bool
    assert torch.equal(full[..., :8], half) and torch.equal(full, full.flip(-1))


def test_outline_surrounds_the_body_without_touching_it():
    body = torch.zeros(1, 5, 5, dtype=torch.bool)
    body[0, 2, 2] = True
    outline = outline_of(body)
    assert outline.sum() == 4 and not (outline & body).any()
    assert outline[0, 1, 2] and outline[0, 3, 2] and outline[0, 2, 1] and outline[0, 2, 3] and not outline[0, 1, 1]


def test_hsv_to_rgb_matches_colorsys():
    hsv = torch.rand(50, 3, generator=torch.Generator().manual_seed(1))
    rgb = hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2])
    expected = torch.tensor([colorsys.hsv_to_rgb(*row.tolist()) for row in hsv])
    torch.testing.assert_close(rgb, expected, atol=1e-6, rtol=0)


def test_sprites_are_seeded_balanced_split_and_in_range():
    train, test = load_sprites("train"), load_sprites("test")
    assert train.images.shape == (4800, 3, 32, 32) and test.images.shape == (1200, 3, 32, 32)
    assert train.images.dtype == torch.float32 and train.images.min() >= -1 and train.images.max() <= 1
    assert train.class_names == FAMILIES and len(FAMILIES) == 6
    assert torch.bincount(load_sprites("all").labels).tolist() == [1000] * 6
    assert torch.equal(load_sprites("test").images, test.images)           # same seed, same pictures
    assert not torch.equal(load_sprites("test", seed=1).images, test.images)
    distances = torch.cdist(test.images[:200].flatten(1), train.images.flatten(1)).min(1).values
    assert distances.min() > 1.0                                            # no test sprite repeats a train sprite


def test_load_sprites_does_not_share_its_cache_with_the_caller():
    first = load_sprites("test")
    first.images.zero_()
    assert load_sprites("test").images.abs().sum() > 0


def test_shapes_are_symmetric_and_shading_is_not():
    labels = torch.arange(60) % 6
    images = make_sprites(labels, seed=3)
    background = (images == 1).all(dim=1)                                  # white cells
    assert torch.equal(background, background.flip(-1))                    # the silhouette is symmetric
    assert 0.003 < sm.symmetry_error(images) < 0.03                        # the lighting is not
    assert torch.equal(body_masks(labels // 2, torch.Generator().manual_seed(0)),
                       body_masks(labels // 2, torch.Generator().manual_seed(0)))


def test_palettes_set_the_hue():
    images = (make_sprites(torch.arange(600) % 6, seed=2) + 1) / 2
    coloured = ~(images == 1).all(dim=1, keepdim=True)
    red_minus_blue = ((images[:, 0] - images[:, 2])[coloured[:, 0]])
    warm = torch.tensor([FAMILIES[k].endswith("warm") for k in torch.arange(600) % 6])
    per_image = [(images[i, 0] - images[i, 2])[coloured[i, 0]].mean() for i in range(600)]
    per_image = torch.stack(per_image)
    assert (per_image[warm] > 0).all() and (per_image[~warm] < 0).all()
    assert red_minus_blue.numel() > 0 and set(PALETTES) == {"warm", "cool"}


def test_load_sprites_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_sprites("validation")
    with pytest.raises(ValueError, match="seed"):
        load_sprites("train", seed=-1)


# ---------------------------------------------------------------- metrics
def test_symmetry_error_of_known_images():
    x = -torch.ones(1, 3, 2, 2)
    assert sm.symmetry_error(x) == 0
    x[..., 0] = 1.0                                                       # left column white, right black
    assert sm.symmetry_error(x) == pytest.approx(1.0)


def test_colour_histogram_and_palette_distance():
    black, white = -torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    h = sm.colour_histogram(torch.cat([black, white]))
    assert h.sum().item() == pytest.approx(1) and h[0] == 0.5 and h[-1] == 0.5
    assert sm.palette_distance(black, black) == 0 and sm.palette_distance(black, white) == pytest.approx(1)


def test_kid_is_the_unbiased_mmd_of_its_docstring():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 3, generator=g).double(), torch.randn(5, 3, generator=g).double() + 1
    k = lambda x, y: (x @ y / 3 + 1) ** 3
    aa = sum(k(a[i], a[j]) for i in range(6) for j in range(6) if i != j) / 30
    bb = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    ab = sum(k(a[i], b[j]) for i in range(6) for j in range(5)) / 30
    assert kernel_distance(a, b) == pytest.approx((aa + bb - 2 * ab).item(), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    assert abs(kernel_distance(a, b)) < 0.05
    assert kernel_distance(a, b + 1) > 1


def test_mode_coverage_and_spread():
    assert sm.mode_coverage(torch.tensor([0.5, 0.5, 0.0, 0.0])) == 0.5
    assert sm.mode_coverage(torch.full((6,), 1 / 6)) == 1.0
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0], [5.0, 5.0]])
    assert sm.per_class_spread(features, torch.tensor([0, 0, 1, 1])) == pytest.approx(0.5)


def test_classifier_asset_is_accurate_and_doubts_non_sprites():
    classifier = sm.load_classifier()
    test = load_sprites("test")
    with torch.no_grad():
        assert (classifier(test.images).argmax(1) == test.labels).float().mean() > 0.97
        junk = sm.non_sprites(test.images[:300], torch.Generator().manual_seed(0))
        assert sm.confident_fraction(torch.softmax(classifier(junk), 1)) < 0.1


def test_real_floor_is_what_a_perfect_generator_scores():
    floor = sm.real_floor(60)
    assert floor["confident_fraction"] > 0.95 and floor["mode_coverage"] == 1.0
    assert floor["class_entropy"] == pytest.approx(math.log(6), abs=1e-6)    # fresh sprites are balanced
    assert floor["nn_distance_min"] > 1.0
    collapsed = sm.evaluate_sprites(sm.fresh_sprites(60)[:1].expand(60, -1, -1, -1).clone())
    assert collapsed["mode_coverage"] < 0.2 and collapsed["per_class_spread"] < 0.01 * floor["per_class_spread"]
    assert collapsed["kid"] > 10 * abs(floor["kid"])           # the floor's KID is ~0 on the scale of a failure


def test_evaluate_sprites_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        sm.evaluate_sprites(torch.zeros(4, 1, 8, 8))
