"""Decoding and geometric transforms of image files inside tf.data (the file-backed input path).

Evaluation (and every un-augmented read: normalisation statistics, colour histograms, affinity prototypes):
resize the shorter side to ``image_size`` (bilinear, antialiased), then crop the centre ``image_size`` square.
Training with ``random_resized_crop``: the Inception-style crop (area fraction in ``scale``, aspect ratio in
``ratio``, 10 attempts, else the whole image) of the decoded image, resized to ``image_size`` — drawn with
stateless ops from a per-example seed, so it is a function of the seed alone.

Images come out float32 in [0, 255] (not rounded back to uint8); the pipeline normalises them.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


def decode_file(path: tf.Tensor, channels: int) -> tf.Tensor:
    """The image of the file at ``path`` (JPEG, PNG, GIF's first frame, BMP) as uint8 [H, W, channels]; grayscale
    (``channels=1``) is the luma of the RGB decode (ITU-R 601 weights, as PIL's ``convert("L")``), since GIFs only
    decode to RGB."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.image.rgb_to_grayscale(image) if channels == 1 else image


def resize_centre_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """Shorter side resized to ``size``, then the centre ``size`` x ``size`` crop; float32 [size, size, C]."""
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(height, width)
    new_h = tf.maximum(size, tf.cast(tf.round(height * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(width * scale), tf.int32))
    resized = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top:top + size, left:left + size, :]


def random_resized_crop(image: tf.Tensor, size: int, seed: tf.Tensor, scale: Sequence[float] = (0.08, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3)) -> tf.Tensor:
    """Inception-style random-resized crop, stateless (same ``seed`` [2] ⇒ same crop); float32 [size, size, C]."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4], tf.float32), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=tuple(ratio), area_range=tuple(scale), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, (size, size), method="bilinear", antialias=True)
