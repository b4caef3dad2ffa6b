"""The procedural demo of seed 000: faithful to the every-step loop, deterministic, in range, frugal."""
import math
import tracemalloc

import numpy as np
import pytest
import torch

from course_lib import procedural


def every_step(height, width, channels=3, T=50, seed=0, easing="cubic", noise_schedule="quadratic"):
    """Seed 000's loop as written: every step from T down to 0, each with its own z_t, nothing skipped."""
    noise = procedural.make_noise(height, width, channels, seed)
    pattern = procedural.make_pattern(height, width, channels, seed)
    steps, stats = [], []
    for t in range(T, -1, -1):
        z = procedural.step_noise(seed, t, noise.shape)
        current = procedural.blend_step(noise, pattern, t, T, z, easing, noise_schedule)
        if t % 5 == 0:
            stats.append(procedural.stats_record(current, t, T, noise_schedule))
        if t % 10 == 0:
            steps.append(current)
    return current, steps, stats


RUNS = [
    dict(height=37, width=23, channels=3, T=50, seed=1),
    dict(height=20, width=30, channels=1, T=47, seed=2, easing="smoothstep", noise_schedule="exponential"),
    # 33 123 values: two blocks, the last one of odd length
    dict(height=181, width=61, channels=3, T=23, seed=3, easing="quartic", noise_schedule="linear"),
    dict(height=1, width=1, channels=1, T=1, seed=0, easing="quadratic"),
]


@pytest.mark.parametrize("run", RUNS, ids=lambda run: "x".join(str(run[k]) for k in ("height", "width", "channels")))
def test_generate_equals_the_every_step_loop(run):
    result = procedural.generate(**run)
    image, steps, stats = every_step(**run)
    assert np.array_equal(result.image, image)
    assert len(result.steps) == len(steps)
    for fast, slow in zip(result.steps, steps):
        assert np.array_equal(fast, slow)
    assert [record["t"] for record in result.stats] == [record["t"] for record in stats]
    for fast, slow in zip(result.stats, stats):
        assert fast.keys() == slow.keys()
        for key in procedural.STAT_KEYS:
            assert fast[key] == pytest.approx(slow[key], rel=1e-6, abs=1e-7), key


def test_same_seed_same_bits_and_other_seed_other_image():
    first, second = procedural.generate(48, 40, seed=7), procedural.generate(48, 40, seed=7)
    assert np.array_equal(first.image, second.image)
    assert all(np.array_equal(a, b) for a, b in zip(first.steps, second.steps))
    assert first.stats == second.stats
    other = procedural.generate(48, 40, seed=8)
    assert not np.array_equal(first.image, other.image)
    assert not np.array_equal(first.steps[0], other.steps[0])


def test_records_every_5_steps_and_images_every_10():
    result = procedural.generate(16, 16, T=50)
    assert [record["t"] for record in result.stats] == list(range(50, -1, -5))
    assert result.step_t == [50, 40, 30, 20, 10, 0] and len(result.steps) == 6
    uneven = procedural.generate(16, 16, T=47)
    assert [record["t"] for record in uneven.stats] == list(range(45, -1, -5))
    assert uneven.step_t == [40, 30, 20, 10, 0]
    unsaved = procedural.generate(16, 16, T=50, save_steps=False)
    assert unsaved.steps == [] and unsaved.step_t == [] and len(unsaved.stats) == 11
    assert np.array_equal(unsaved.image, result.image)


def test_stats_describe_the_saved_images_and_noise_levels():
    result = procedural.generate(24, 20, channels=2, T=30, easing="smoothstep", noise_schedule="linear")
    by_t = {record["t"]: record for record in result.stats}
    for t, image in zip(result.step_t, result.steps):
        pixels = image.astype(np.float64)
        record = by_t[t]
        assert record["mean"] == pytest.approx(pixels.mean(), rel=1e-9)
        assert record["std"] == pytest.approx(pixels.std(), rel=1e-6)
        assert (record["min"], record["max"]) == (pixels.min(), pixels.max())
        assert record["noise_level"] == pytest.approx(0.1 * t / 30 if t else 0.0)


def test_images_are_float32_in_the_unit_range():
    result = procedural.generate(33, 17, channels=4, seed=5, noise_schedule="exponential")
    for image in result.steps + [result.image]:
        assert image.shape == (33, 17, 4) and image.dtype == np.float32
        assert image.min() >= 0 and image.max() <= 1


def test_the_final_image_is_the_pattern_for_every_easing_and_schedule():
    pattern = procedural.make_pattern(20, 20, seed=4)
    noise = procedural.make_noise(20, 20, seed=4)
    z = procedural.step_noise(4, 0, noise.shape)
    for easing in procedural.EASINGS:
        for schedule in procedural.NOISE_SCHEDULES:
            assert np.array_equal(procedural.blend_step(noise, pattern, 0, 50, z, easing, schedule), pattern)
            assert np.array_equal(procedural.generate(20, 20, seed=4, easing=easing, noise_schedule=schedule).image,
                                  pattern)


def test_the_first_image_is_the_noise_plus_the_largest_injected_noise():
    noise, z = procedural.make_noise(10, 12, seed=3), procedural.step_noise(3, 40, (10, 12, 3))
    first = procedural.generate(10, 12, T=40, seed=3).steps[0]
    assert np.array_equal(first, np.clip(noise + np.float32(0.1) * z, 0, 1))


@pytest.mark.parametrize("easing", sorted(procedural.EASINGS))
def test_easings_run_from_0_to_1_and_rise(easing):
    assert procedural.ease(0.0, easing) == 0.0 and procedural.ease(1.0, easing) == 1.0
    grid = np.linspace(0, 1, 101)
    assert np.all(np.diff(procedural.ease(grid, easing)) > 0)


def test_easing_formulas():
    p = 0.3
    assert procedural.ease(p, "quadratic") == pytest.approx(0.09)
    assert procedural.ease(p, "cubic") == pytest.approx(0.027)
    assert procedural.ease(p, "quartic") == pytest.approx(0.0081)
    assert procedural.ease(p, "smoothstep") == pytest.approx(3 * 0.09 - 2 * 0.027)
    assert procedural.ease(p) == procedural.ease(p, "cubic")


def test_noise_schedules():
    assert procedural.noise_scale(25, 50) == pytest.approx(0.1 * 0.25)
    assert procedural.noise_scale(25, 50, "linear") == pytest.approx(0.1 * 0.5)
    assert procedural.noise_scale(25, 50, "exponential") == pytest.approx(0.1 * math.exp(-2.5))
    for schedule in procedural.NOISE_SCHEDULES:
        scales = [procedural.noise_scale(t, 50, schedule) for t in range(51)]
        assert scales[0] == 0.0 and scales[50] == pytest.approx(0.1)
        assert all(a < b for a, b in zip(scales, scales[1:])), "g(t) must shrink as t falls to 0"


def test_blend_step_formula_and_clip_on_numpy_and_torch():
    rng = np.random.default_rng(0)
    noise, pattern = rng.random((5, 4, 3), dtype=np.float32), rng.random((5, 4, 3), dtype=np.float32)
    z = rng.standard_normal((5, 4, 3), dtype=np.float32) * 5   # large, so that the clip bites
    s, g = (1 - 8 / 20) ** 2, 0.1 * (8 / 20)
    expected = np.clip(noise * (1 - s) + pattern * s + g * z, 0, 1)
    got = procedural.blend_step(noise, pattern, 8, 20, z, "quadratic", "linear")
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.min() == 0 and got.max() == 1
    as_tensors = procedural.blend_step(*map(torch.from_numpy, (noise, pattern)), 8, 20, torch.from_numpy(z),
                                       "quadratic", "linear")
    np.testing.assert_allclose(as_tensors.numpy(), got, rtol=1e-6)


def test_image_stats_is_the_population_std():
    image = np.array([0.0, 1.0, 1.0, 1.0], dtype=np.float32).reshape(2, 2, 1)
    assert procedural.image_stats(image) == pytest.approx((0.75, math.sqrt(0.1875), 0.0, 1.0))
    assert procedural.image_stats(torch.from_numpy(image)) == pytest.approx((0.75, math.sqrt(0.1875), 0.0, 1.0))
    record = procedural.stats_record(image, 10, 50)
    assert list(record) == list(procedural.STAT_KEYS) and record["noise_level"] == pytest.approx(0.004)


def test_pattern_channels_are_normalised_and_seeded():
    pattern = procedural.make_pattern(40, 50, channels=3, seed=2)
    assert pattern.shape == (40, 50, 3) and pattern.dtype == np.float32
    assert np.allclose(pattern.min(axis=(0, 1)), 0) and np.allclose(pattern.max(axis=(0, 1)), 1)
    assert np.array_equal(pattern, procedural.make_pattern(40, 50, channels=3, seed=2))
    assert not np.array_equal(pattern, procedural.make_pattern(40, 50, channels=3, seed=3))
    # smooth: neighbouring pixels differ by at most about fx + fy summed over the waves, far below noise
    assert np.abs(np.diff(pattern, axis=1)).mean() < 0.1


def test_noise_is_gaussian_and_drawn_in_pieces_the_same():
    z = procedural.step_noise(0, 3, (400, 500))
    assert z.dtype == np.float32
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(np.abs(z) < 1) - 0.6827) < 0.005   # the one-sigma mass of a Gaussian
    rng = procedural._generator(0, procedural._STEP_STREAM, 3)
    pieces = [procedural.standard_normal(rng, size) for size in (1000, 64, 198_936)]
    assert np.array_equal(np.concatenate(pieces), z.reshape(-1))
    noise = procedural.make_noise(30, 30, seed=1)
    assert noise.min() == 0 and noise.max() == 1


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(height=0), ValueError, "height must be >= 1"),
    (dict(width=1.5), TypeError, "width must be an int"),
    (dict(channels=0), ValueError, "channels must be >= 1"),
    (dict(T=0), ValueError, "T (the number of steps) must be >= 1"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(easing="cubical"), ValueError, "unknown easing 'cubical'; expected one of"),
    (dict(noise_schedule="gaussian"), ValueError, "unknown noise schedule 'gaussian'; expected one of"),
])
def test_bad_arguments_are_named(kwargs, error, words):
    arguments = dict(height=8, width=8) | kwargs
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        procedural.generate(**arguments)


def test_peak_memory_at_512_squared_with_steps_saved():
    tracemalloc.start()
    try:
        procedural.generate(512, 512, 3, save_steps=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 24 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_steps_strip_and_bytes():
    steps = [np.full((3, 4, 1), value, dtype=np.float32) for value in (0.0, 0.5, 1.0)]
    strip = procedural.steps_strip(steps, gap=2)
    assert strip.shape == (3, 3 * 4 + 2 * 2, 1)
    assert np.all(strip[:, 4:6] == 1) and np.all(strip[:, 6:10] == 0.5)
    assert procedural.to_uint8(strip)[0, :, 0].tolist() == [0] * 4 + [255] * 2 + [128] * 4 + [255] * 2 + [255] * 4
    with pytest.raises(ValueError, match="save_steps=True"):
        procedural.steps_strip([])


def test_final_image_is_read_only_so_it_cannot_silently_change_the_steps():
    result = procedural.generate(8, 8, 1, T=10, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        result.image[0, 0, 0] = 0.5


def test_numpy_integers_are_accepted():
    assert procedural.generate(np.int64(8), 8, 1, T=np.int64(10)).image.shape == (8, 8, 1)
