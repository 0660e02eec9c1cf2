"""Tests for the hue/saturation colour histograms (imbalance_jax.data.colour)."""

import colorsys
import math

import numpy as np
import pytest
import tensorflow as tf

from imbalance_jax.data.colour import (
    NUM_BINS,
    colour_bin_indices,
    colour_bin_indices_tf,
    colour_histogram,
    colour_histogram_tf,
)

CENTRE = 2 * 5 + 2


def _loop_histogram(image: np.ndarray, m: int = 5) -> np.ndarray:
    """Reference: colorsys HSV and a plain floor per pixel (float64)."""
    counts = np.zeros(m * m)
    for pixel in image.reshape(-1, 3):
        h, s, _ = colorsys.rgb_to_hsv(*(pixel / 255.0))
        x = m / 2 + s * m / 2 * math.cos(2 * math.pi * h)
        y = m / 2 + s * m / 2 * math.sin(2 * math.pi * h)
        ix = min(max(int(math.floor(x + 1e-9)), 0), m - 1)
        iy = min(max(int(math.floor(y + 1e-9)), 0), m - 1)
        counts[ix * m + iy] += 1
    return counts / counts.sum()


def test_matches_colorsys_loop():
    image = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    hist = colour_histogram(image)
    assert hist.dtype == np.float32 and hist.shape == (NUM_BINS,)
    np.testing.assert_allclose(hist, _loop_histogram(image), atol=1e-7)
    np.testing.assert_allclose(hist.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "rgb,bin_index",
    [
        ((255, 0, 0), 4 * 5 + 2),    # red: h = 0, s = 1 -> (5, 2.5): upper x edge -> last x bin
        ((0, 255, 255), 0 * 5 + 2),  # cyan: h = 1/2 -> (0, 2.5)
        ((128, 0, 255), 2 * 5 + 0),  # violet: h ~ 0.75 -> (2.5 + ~0.02, ~0.0)
        ((255, 255, 0), 3 * 5 + 4),  # yellow: h = 1/6 -> (3.75, 4.67)
        ((90, 90, 90), CENTRE),      # gray: s = 0 -> centre
        ((0, 0, 0), CENTRE),         # black: s = 0 by convention
        ((255, 255, 153), 3 * 5 + 3),  # yellow, s = 0.4: x = 3 exactly on an edge -> upper bin
    ],
)
def test_hand_computed_bins(rgb, bin_index):
    image = np.array([[rgb]], np.uint8)
    hist = colour_histogram(image)
    assert hist[bin_index] == 1.0
    np.testing.assert_array_equal(colour_histogram_tf(tf.constant(image)).numpy(), hist)


def test_mixed_image_fractions():
    image = np.array([[[255, 0, 0], [255, 0, 0], [0, 0, 0], [0, 255, 255]]], np.uint8)
    hist = colour_histogram(image)
    assert hist[22] == 0.5 and hist[CENTRE] == 0.25 and hist[2] == 0.25


def test_numpy_and_tf_agree_pixel_for_pixel():
    # Every 3rd value per channel (86^3 ~ 636k colours, edge cases included) plus random images.
    v = np.arange(0, 256, 3, dtype=np.uint8)
    grid = np.stack(np.meshgrid(v, v, v, indexing="ij"), -1).reshape(-1, 86, 3)
    np.testing.assert_array_equal(
        colour_bin_indices(grid).ravel(), colour_bin_indices_tf(tf.constant(grid)).numpy()
    )
    rng = np.random.default_rng(1)
    for shape in [(7, 5, 3), (32, 32, 3), (9, 4, 1)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(
            colour_histogram_tf(tf.constant(image)).numpy(), colour_histogram(image)
        )


def test_tf_version_runs_in_tf_data_graph():
    images = np.random.default_rng(2).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(images).map(colour_histogram_tf)
    for image, hist in zip(images, ds):
        assert hist.dtype == tf.float32 and hist.shape == (NUM_BINS,)
        np.testing.assert_array_equal(hist.numpy(), colour_histogram(image))


def test_grayscale_goes_to_centre():
    gray = np.random.default_rng(3).integers(0, 256, (4, 5), dtype=np.uint8)
    for image in (gray, gray[..., None]):
        hist = colour_histogram(image)
        assert hist[CENTRE] == 1.0
        np.testing.assert_array_equal(colour_histogram_tf(tf.constant(image)).numpy(), hist)


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        colour_histogram(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        colour_histogram(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(ValueError, match="at least one pixel"):
        colour_histogram(np.zeros((0, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        colour_histogram_tf(tf.zeros((2, 2, 3), tf.float32))
    with pytest.raises(ValueError, match="shape"):
        colour_histogram_tf(tf.zeros((2, 2, 2), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError):
        colour_histogram_tf(tf.zeros((0, 2, 3), tf.uint8))
    with pytest.raises(ValueError, match="grid_size"):
        colour_histogram(np.zeros((2, 2, 3), np.uint8), grid_size=0)
