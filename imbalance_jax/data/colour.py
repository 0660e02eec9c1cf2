"""Hue/saturation colour histograms for the silk paper's colour similarity loss.

Dorozynski & Rottensteiner (silk paper §3.2 and the authors' reference code; docs/design.md §5.4):
every pixel's HSV hue h in [0, 1) and saturation s in [0, 1] map to the point of the hue/saturation disc

    (x, y) = (m/2 + s * m/2 * cos(2 pi h),  m/2 + s * m/2 * sin(2 pi h)),

which is binned on an m x m grid over [0, m]^2 (m = 5, so 25 bins, flattened as ``ix * m + iy``);
the value channel is ignored; the counts are normalised to sum 1.

Choices (documented deviations):

* Points on the upper edge (x or y = m) go into the last bin.
* Bin edges are shifted down by ``EDGE_TOLERANCE`` = 1e-9: a point that lies on an interior bin
  edge in exact arithmetic (e.g. pure yellow with s = 0.4 gives x = 3) goes into the upper bin
  whatever the last-ulp rounding of cos/sin in NumPy or TensorFlow. Both implementations work in
  float64 (rounding ~1e-15); of the 2^24 uint8 colours, those not on an edge are >= 8e-8 away
  from it, so the shift moves no other pixel and the two agree bin for bin on every colour.
* Grayscale images ([H, W] or [H, W, 1]) are treated as RGB with three equal channels: s = 0, so
  all their mass lands in the centre bin (index 12 for m = 5).
* HSV follows the usual convention (``colorsys`` / ``tf.image.rgb_to_hsv``): s = (max - min) / max,
  s = 0 and h = 0 for gray pixels and black.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

GRID_SIZE = 5
NUM_BINS = GRID_SIZE * GRID_SIZE
EDGE_TOLERANCE = 1e-9


def _check_grid_size(grid_size: int) -> None:
    if not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int, got {grid_size!r}.")


def _as_rgb_numpy(image) -> np.ndarray:
    """uint8 [H, W, 3] view of ``image``; grayscale is repeated over three channels."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype}.")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"image must have shape [H, W], [H, W, 1] or [H, W, 3], got {image.shape}."
        )
    if image.shape[0] * image.shape[1] == 0:
        raise ValueError(f"image must have at least one pixel, got shape {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def _hue_saturation_numpy(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 hue in [0, 1) and saturation in [0, 1] of a uint8 [..., 3] array."""
    rgb = rgb.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = np.max(rgb, axis=-1)
    mn = np.min(rgb, axis=-1)
    delta = mx - mn
    safe_delta = np.where(delta > 0, delta, 1.0)
    sat = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    hue = np.where(
        mx == r,
        (g - b) / safe_delta,
        np.where(mx == g, (b - r) / safe_delta + 2.0, (r - g) / safe_delta + 4.0),
    )
    hue = np.where(delta > 0, np.mod(hue / 6.0, 1.0), 0.0)
    return hue, sat


def _bin_index(coord, grid_size: int, floor, clip):
    """Bin of a coordinate in [0, m]: floor with tolerant edges, upper edge into the last bin."""
    return clip(floor(coord + EDGE_TOLERANCE), 0, grid_size - 1)


def colour_bin_indices(image, grid_size: int = GRID_SIZE) -> np.ndarray:
    """int64 [H, W] histogram bin (``ix * m + iy``) of every pixel of ``image`` (NumPy)."""
    _check_grid_size(grid_size)
    hue, sat = _hue_saturation_numpy(_as_rgb_numpy(image))
    half = grid_size / 2.0
    angle = 2.0 * math.pi * hue
    x = half + sat * half * np.cos(angle)
    y = half + sat * half * np.sin(angle)
    ix = _bin_index(x, grid_size, np.floor, np.clip).astype(np.int64)
    iy = _bin_index(y, grid_size, np.floor, np.clip).astype(np.int64)
    return ix * grid_size + iy


def colour_histogram(image, grid_size: int = GRID_SIZE) -> np.ndarray:
    """Hue/saturation histogram of one image (NumPy; accepts NumPy or JAX arrays).

    Args:
      image: uint8 [H, W, 3] RGB image, or grayscale [H, W] / [H, W, 1].
      grid_size: m; the histogram has m * m bins.

    Returns:
      float32 [m * m], non-negative, summing to 1.
    """
    bins = colour_bin_indices(image, grid_size)
    counts = np.bincount(bins.ravel(), minlength=grid_size * grid_size)
    return (counts / counts.sum()).astype(np.float32)


def colour_bin_indices_tf(image: tf.Tensor, grid_size: int = GRID_SIZE) -> tf.Tensor:
    """int32 [H * W] histogram bin of every pixel (TensorFlow twin of ``colour_bin_indices``)."""
    _check_grid_size(grid_size)
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(f"image must have dtype uint8, got {image.dtype.name}.")
    if image.shape.rank == 2:
        image = image[..., None]
    channels = image.shape[-1] if image.shape.rank == 3 else None
    if channels not in (1, 3):
        raise ValueError(
            "image must have shape [H, W], [H, W, 1] or [H, W, 3] with a static channel "
            f"count, got {image.shape}."
        )
    if channels == 1:
        image = tf.tile(image, [1, 1, 3])
    rgb = tf.reshape(tf.cast(image, tf.float64) / 255.0, [-1, 3])
    with tf.control_dependencies(
        [tf.debugging.assert_positive(tf.shape(rgb)[0], message="image must have a pixel")]
    ):
        rgb = tf.identity(rgb)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    mx = tf.reduce_max(rgb, axis=-1)
    mn = tf.reduce_min(rgb, axis=-1)
    delta = mx - mn
    safe_delta = tf.where(delta > 0, delta, tf.ones_like(delta))
    sat = tf.where(mx > 0, delta / tf.where(mx > 0, mx, tf.ones_like(mx)), tf.zeros_like(mx))
    hue = tf.where(
        tf.equal(mx, r),
        (g - b) / safe_delta,
        tf.where(tf.equal(mx, g), (b - r) / safe_delta + 2.0, (r - g) / safe_delta + 4.0),
    )
    hue = tf.where(delta > 0, tf.math.floormod(hue / 6.0, 1.0), tf.zeros_like(hue))
    half = tf.constant(grid_size / 2.0, tf.float64)
    angle = 2.0 * math.pi * hue
    x = half + sat * half * tf.cos(angle)
    y = half + sat * half * tf.sin(angle)
    ix = tf.cast(_bin_index(x, grid_size, tf.floor, tf.clip_by_value), tf.int32)
    iy = tf.cast(_bin_index(y, grid_size, tf.floor, tf.clip_by_value), tf.int32)
    return ix * grid_size + iy


def colour_histogram_tf(image: tf.Tensor, grid_size: int = GRID_SIZE) -> tf.Tensor:
    """TensorFlow twin of ``colour_histogram`` for ``tf.data`` pipelines (graph-mode safe).

    Args:
      image: uint8 tf.Tensor [H, W, C] with a static channel count C in {1, 3}, or [H, W].
      grid_size: m; the histogram has m * m bins.

    Returns:
      tf.float32 [m * m] summing to 1 (bin for bin equal to ``colour_histogram``).
    """
    bins = colour_bin_indices_tf(image, grid_size)
    counts = tf.math.bincount(
        bins,
        minlength=grid_size * grid_size,
        maxlength=grid_size * grid_size,
        dtype=tf.float64,
    )
    return tf.cast(counts / tf.reduce_sum(counts), tf.float32)

__all__ = [
    "EDGE_TOLERANCE",
    "GRID_SIZE",
    "NUM_BINS",
    "colour_bin_indices",
    "colour_bin_indices_tf",
    "colour_histogram",
    "colour_histogram_tf",
]
