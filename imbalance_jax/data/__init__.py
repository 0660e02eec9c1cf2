"""Datasets, imbalance profiles, samplers, tf.data pipelines and colour histograms."""

from imbalance_jax.data.colour import colour_histogram, colour_histogram_tf
from imbalance_jax.data.imbalance import exponential_profile, symmetric_label_noise
from imbalance_jax.data.pipeline import PipelineOptions, eval_batches, steps_per_epoch, train_batches
from imbalance_jax.data.samplers import SAMPLERS, epoch_order
from imbalance_jax.data.sources import DATASETS, ArraySplit, DatasetError, FileSplit, RawDataset, load_raw_dataset
from imbalance_jax.data.splits import DataSplits, build_splits
