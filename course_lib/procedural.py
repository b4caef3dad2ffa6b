"""The procedural demo (notebook 02): walk from noise to a sine pattern it drew in advance.

This is not a diffusion model, and it says so in notebook 02. Nothing is learned: the target is
drawn first, and the "reverse process" interpolates from noise toward it, adding a little fresh
noise that shrinks as t falls from T to 0. It is in the course because it has the shape of a
sampler loop (a countdown of timesteps, a strength schedule, injected noise, statistics along the
way) and runs in milliseconds.

Conventions. Images are NumPy float32 arrays of shape (H, W, C) in [0, 1]. The demo's t counts
down from T to 0 (T + 1 values; t = 0 is the finished image), as in the demo's description; this is not the
0-based DDPM index of forward.py. The small formula functions (``ease``, ``noise_scale``,
``blend_step``, ``image_stats``) use only operators and methods that NumPy arrays and torch
tensors share, so the notebook's exercises can check them on tensors.

Decisions the demo's description leaves open:

* Which noise is blended. The demo's pseudocode min-max normalises the noise to [0, 1] (line 1)
  but blends the raw N(0, 1) noise (line 11), so at t = T two thirds of the raw values would be
  clipped away. We blend the normalised noise: both ends of the blend then live in [0, 1], and the
  clip only trims the injected noise g(t) z.
* The "exponential" schedule. The description writes exp(-lambda t/T) * 0.1, which grows as t falls to 0,
  against its own rule "t = T: high noise, t = 0: no noise". We use g(t) = 0.1 exp(-lambda (T - t)/T)
  with lambda = 5: 0.1 at t = T like the other schedules, decaying to e^-5 (0.7 %) of that by the end.
* Where z comes from. The noise z_t injected at step t is drawn from its own generator, keyed by
  (seed, t), rather than from one stream shared by all steps.

Speed, and why it is faithful. Line 11 of the demo's loop overwrites the current image from noise and
pattern at every step: step t never reads step t + 1. The demo has no memory, unlike a real reverse
process, whose x_{t-1} is computed from x_t. So ``generate`` computes only the steps that leave a
trace (statistics every 5 steps, images every 10, the final one) and skips the rest. Because z_t
depends only on (seed, t), skipping steps changes nothing: the images are bit-identical, and the
statistics equal to float rounding, to running every step (tests/test_procedural.py runs that loop).
Work is done in float32, in blocks that stay in cache, with a Box-Muller sampler for the noise
(drawing z is most of the cost). Memory holds the noise, the pattern and the saved images; the
temporaries are block-sized, and the final image is the pattern array itself (the last blend
returns it bit for bit), so 512 x 512 x 3 with steps saved peaks near 22 MiB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._validate import require_choice, require_in_unit_interval, require_int
from .progress import progress_bar

MAX_NOISE = 0.1            # g(T): standard deviation of the injected noise at the first step
EXPONENTIAL_RATE = 5.0     # lambda of the "exponential" schedule: g(0+) = e^-5 * MAX_NOISE
STATS_EVERY, SAVE_EVERY = 5, 10
STAT_KEYS = ("t", "mean", "std", "min", "max", "noise_level")
BLOCK_ELEMENTS = 1 << 15   # floats per block: 128 KiB temporaries, which stay in cache

# Blend strength as a function of progress p in [0, 1]; each has f(0) = 0 and f(1) = 1 exactly.
EASINGS = {
    "quadratic": lambda p: p ** 2,
    "cubic": lambda p: p ** 3,           # the demo's default
    "quartic": lambda p: p ** 4,
    "smoothstep": lambda p: 3 * p ** 2 - 2 * p ** 3,
}

# Shape of the injected noise as a function of the time left, r = t / T in (0, 1]; each is 1 at r = 1.
NOISE_SCHEDULES = {
    "quadratic": lambda r: r ** 2,       # the demo's default
    "linear": lambda r: r,
    "exponential": lambda r: math.exp(-EXPONENTIAL_RATE * (1 - r)),
}

# Independent random streams, one per purpose; the step noise has one stream per t as well.
_NOISE_STREAM, _PATTERN_STREAM, _STEP_STREAM = 0, 1, 2


# ---------------------------------------------------------------- the formulas
def progress_of(t: int, T: int) -> float:
    """How far the reverse process has come: (T - t) / T, from 0 at t = T to 1 at t = 0."""
    return (T - t) / T


def ease(progress, easing: str = "cubic"):
    """Blend strength s = f(progress): quadratic p^2, cubic p^3, quartic p^4, smoothstep 3p^2 - 2p^3.

    progress: a float, array or tensor in [0, 1]; returns the same kind. f(0) = 0 (pure noise),
    f(1) = 1 (pure pattern). These ease in: they start flat, so the pattern appears late.
    """
    require_in_unit_interval(progress, "progress")
    require_choice(easing, "easing", EASINGS)
    return EASINGS[easing](progress)


def noise_scale(t: int, T: int, noise_schedule: str = "quadratic") -> float:
    """g(t), the standard deviation of the noise injected at step t, and 0 at t = 0 (no noise on the result).

    noise_schedule "quadratic" (the default) g = 0.1 (t/T)^2, "linear" g = 0.1 t/T, "exponential" g = 0.1 exp(-5 (T - t)/T).
    """
    return 0.0 if t == 0 else MAX_NOISE * NOISE_SCHEDULES[noise_schedule](t / T)


def blend_step(noise, pattern, t: int, T: int, z, easing: str = "cubic", noise_schedule: str = "quadratic"):
    """One step of the demo's reverse process (the demo's algorithm 3, lines 7-21):

        x_t = clip(noise * (1 - s) + pattern * s + g(t) * z, 0, 1),   s = ease((T - t) / T)

    noise, pattern: (H, W, C) in [0, 1]; z: N(0, 1) noise of the same shape (g(0) = 0 switches it
    off at t = 0). Returns x_t, (H, W, C) in [0, 1]. No x_{t+1} on the right: a step remembers nothing.
    """
    strength = ease(progress_of(t, T), easing)
    blended = noise * (1 - strength) + pattern * strength
    return (blended + noise_scale(t, T, noise_schedule) * z).clip(0, 1)


def image_stats(image) -> tuple[float, float, float, float]:
    """Mean, standard deviation, minimum and maximum over every pixel and channel, as Python floats.

    The standard deviation is the population one, sqrt(mean((x - mean)^2)) (divide by N, ddof = 0),
    like np.std; torch's .std() divides by N - 1 unless told otherwise.
    """
    mean = image.mean()
    std = ((image - mean) ** 2).mean() ** 0.5
    return float(mean), float(std), float(image.min()), float(image.max())


def stats_record(image, t: int, T: int, noise_schedule: str = "quadratic") -> dict:
    """The demo's statistics record of step t: {t, mean, std, min, max, noise_level = g(t)}."""
    return dict(zip(STAT_KEYS, (t, *image_stats(image), noise_scale(t, T, noise_schedule))))


def normalise(x):
    """Min-max normalise to [0, 1]: (x - min) / (max - min). A constant array maps to 0."""
    low, span = x.min(), x.max() - x.min()
    return (x - low) / span if span > 0 else x * 0


# ---------------------------------------------------------------- the random ingredients
def _generator(seed: int, stream: int, t: int = 0) -> np.random.Generator:
    """A generator of its own for each (seed, stream, t): streams never overlap, whatever is skipped."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(stream, t))))


def standard_normal(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` N(0, 1) samples, float32, by the Box-Muller transform: for uniforms u1 in (0, 1] and u2 in
    [0, 1), sqrt(-2 ln u1) cos(2 pi u2) and sqrt(-2 ln u1) sin(2 pi u2) are independent standard normals.

    Drawing the noise is most of the demo's run time, and on blocks that stay in cache this is about
    2.5x faster than Generator.standard_normal. Each pair of outputs uses a pair of consecutive uniforms,
    so an array drawn in pieces of even length equals the array drawn at once. float32 uniforms cap |z|
    at sqrt(2 ln 2^24) = 5.8, which matters to nobody here.
    """
    uniforms = rng.random(((size + 1) // 2, 2), dtype=np.float32)
    radius = np.sqrt(-2 * np.log(1 - uniforms[:, 0]))
    angle = (2 * math.pi) * uniforms[:, 1]
    pairs = np.empty_like(uniforms)
    np.multiply(radius, np.cos(angle), out=pairs[:, 0])
    np.multiply(radius, np.sin(angle), out=pairs[:, 1])
    return pairs.reshape(-1)[:size]


def validate_arguments(height, width, channels=3, T=50, seed=0, easing="cubic", noise_schedule="quadratic") -> None:
    """Raise TypeError/ValueError naming the expected value when an argument of ``generate`` is wrong."""
    for value, name, minimum in ((height, "height", 1), (width, "width", 1), (channels, "channels", 1),
                                 (T, "T (the number of steps)", 1), (seed, "seed", 0)):
        require_int(value, name, minimum)
    require_choice(easing, "easing", EASINGS)
    require_choice(noise_schedule, "noise schedule", NOISE_SCHEDULES)


def make_noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """The starting noise (the demo's algorithm 1): N(0, 1) of shape (H, W, C), min-max normalised to [0, 1], float32."""
    validate_arguments(height, width, channels, seed=seed)
    raw = standard_normal(_generator(seed, _NOISE_STREAM), height * width * channels)
    return normalise(raw.reshape(height, width, channels))


def make_pattern(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """The target (the demo's algorithm 2), (H, W, C) float32, each channel min-max normalised to [0, 1].

    Per channel: 3 to 7 plane waves a sin(fx x + fy y + phase), with x, y the pixel's column and row,
    fx, fy in [0.01, 0.08] radians per pixel, phase in [0, 2 pi), a in [0.3, 1]; then, with probability
    1/2, a radial wave 0.5 sin(f r), r the distance to a centre in the middle 30-70 % of the image
    and f in [0.02, 0.05].
    """
    validate_arguments(height, width, channels, seed=seed)
    rng = _generator(seed, _PATTERN_STREAM)
    x = np.arange(width, dtype=np.float32)[None, :]    # broadcast over rows
    y = np.arange(height, dtype=np.float32)[:, None]   # broadcast over columns
    pattern = np.empty((height, width, channels), dtype=np.float32)
    for channel in range(channels):
        waves = np.zeros((height, width), dtype=np.float32)
        for _ in range(rng.integers(3, 8)):
            fx, fy = rng.uniform(0.01, 0.08), rng.uniform(0.01, 0.08)
            phase, amplitude = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1.0)
            waves += amplitude * np.sin(x * fx + (y * fy + phase))
        if rng.uniform(0, 1) > 0.5:
            cx, cy = rng.uniform(0.3 * width, 0.7 * width), rng.uniform(0.3 * height, 0.7 * height)
            radius = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
            waves += 0.5 * np.sin(radius * rng.uniform(0.02, 0.05))
        pattern[..., channel] = normalise(waves)
    return pattern


def step_noise(seed: int, t: int, shape: tuple) -> np.ndarray:
    """z_t, the N(0, 1) noise injected at step t: float32 of ``shape``, from the generator of (seed, t)."""
    return standard_normal(_generator(seed, _STEP_STREAM, t), math.prod(shape)).reshape(shape)


# ---------------------------------------------------------------- the whole run
@dataclass
class ProceduralResult:
    """What ``generate`` returns.

    image:  (H, W, C) float32 in [0, 1], the image at t = 0: a read-only array, the same one as
            steps[-1] when steps are kept (copy it to edit it).
    steps:  the images at every t with t mod 10 == 0, from T down to 0, when save_steps; else empty.
    step_t: the t of each image in ``steps``.
    stats:  one record per t with t mod 5 == 0, from T down to 0: dicts with keys STAT_KEYS.
    """
    image: np.ndarray
    steps: list = field(default_factory=list)
    step_t: list = field(default_factory=list)
    stats: list = field(default_factory=list)


class _RunningStats:
    """``image_stats`` of an image seen block by block, in one pass: float64 sums of x and x^2, min and max."""

    def __init__(self):
        self.count, self.total, self.total_squares = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf

    def add(self, block: np.ndarray) -> None:
        values = block.astype(np.float64)
        self.count += values.size
        self.total += values.sum()
        self.total_squares += values @ values
        self.low, self.high = min(self.low, values.min()), max(self.high, values.max())

    def result(self) -> tuple[float, float, float, float]:
        mean = self.total / self.count
        variance = max(self.total_squares / self.count - mean * mean, 0.0)   # rounding may dip below 0
        return float(mean), math.sqrt(variance), float(self.low), float(self.high)


def _blocks(size: int):
    """Consecutive slices of BLOCK_ELEMENTS (an even number, so no Box-Muller pair straddles two blocks)."""
    return [slice(start, start + BLOCK_ELEMENTS) for start in range(0, size, BLOCK_ELEMENTS)]


def _blend_in_blocks(noise, pattern, t, T, seed, easing, noise_schedule, out=None):
    """``blend_step`` of step t, block by block of the flattened image, into ``out`` (when given).

    Returns the image_stats of the result. z_t is drawn block after block from the generator of
    (seed, t), which gives the same numbers as ``step_noise`` draws at once.
    """
    rng, stats = _generator(seed, _STEP_STREAM, t), _RunningStats()
    noise, pattern = noise.reshape(-1), pattern.reshape(-1)
    for block in _blocks(noise.size):
        z = standard_normal(rng, noise[block].size)
        blended = blend_step(noise[block], pattern[block], t, T, z, easing, noise_schedule)
        stats.add(blended)
        if out is not None:
            out.reshape(-1)[block] = blended
    return stats.result()


def _stats_in_blocks(image):
    """image_stats of an existing image, computed like those of a blended one (no large temporaries)."""
    stats = _RunningStats()
    for block in _blocks(image.size):
        stats.add(image.reshape(-1)[block])
    return stats.result()


def generate(height: int, width: int, channels: int = 3, T: int = 50, seed: int = 0, easing: str = "cubic",
             noise_schedule: str = "quadratic", save_steps: bool = True, *,
             show_progress: bool = False) -> ProceduralResult:
    """Run the demo (the demo's algorithm 3) for t = T, T-1, ..., 0 and return a ``ProceduralResult``.

    Each step is ``blend_step(noise, pattern, t, T, step_noise(seed, t), easing, noise_schedule)``
    with noise = make_noise(...) and pattern = make_pattern(...). Only the steps that are recorded
    are computed (see the module docstring: the loop has no memory, so the others cannot matter).
    The same arguments give bit-identical results. ``show_progress`` draws a tqdm bar.
    """
    validate_arguments(height, width, channels, T, seed, easing, noise_schedule)
    noise = make_noise(height, width, channels, seed)
    pattern = make_pattern(height, width, channels, seed)
    pattern.setflags(write=False)   # it is also the final image and steps[-1]: no silent edits through one of them
    result = ProceduralResult(image=pattern)
    recorded = range(T - T % STATS_EVERY, -1, -STATS_EVERY)   # every image kept is also a stats step
    if show_progress:
        recorded = progress_bar(recorded, desc="procedural demo", unit="record")
    for t in recorded:
        keep = save_steps and t % SAVE_EVERY == 0
        if t == 0:
            # ease(1) = 1 exactly and g(0) = 0, so the last blend returns the pattern bit for bit:
            # reuse it rather than hold a copy (tested against blend_step).
            image, stats = pattern, _stats_in_blocks(pattern)
        else:
            image = np.empty_like(noise) if keep else None
            stats = _blend_in_blocks(noise, pattern, t, T, seed, easing, noise_schedule, out=image)
        result.stats.append(dict(zip(STAT_KEYS, (t, *stats, noise_scale(t, T, noise_schedule)))))
        if keep:
            result.steps.append(image)
            result.step_t.append(t)
    return result


# ---------------------------------------------------------------- pictures
def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to 0..255 bytes, rounding to the nearest level (what the PNG files hold)."""
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def steps_strip(steps: list, gap: int = 2) -> np.ndarray:
    """The images side by side, first to last, with ``gap`` white columns between: (H, n W + (n - 1) gap, C)."""
    if not steps:
        raise ValueError("steps_strip needs at least one image; run generate with save_steps=True")
    height, _, channels = steps[0].shape
    white = np.ones((height, gap, channels), dtype=steps[0].dtype)
    return np.concatenate([piece for step in steps for piece in (white, step)][1:], axis=1)
