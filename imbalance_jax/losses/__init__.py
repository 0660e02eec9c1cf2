"""Pure JAX loss kernels for class-imbalanced learning (only jax, chex and numpy; no Flax, no config objects).

Embedding kernels take ``(embeddings[B, D], labels[B], valid[B] | None, ...)`` and return a scalar;
classification kernels take ``(logits[B, C], labels[B], valid[B] | None, ...)``. Every kernel is
jit/grad/vmap safe, never NaN, and accepts ``axis_name`` to compute the global-batch loss inside
``shard_map``/``pmap``.
"""

from imbalance_jax.losses.affinity import (affinity_loss, affinity_loss_terms, affinity_margin_loss,
                                           affinity_margin_terms, affinity_similarity, diversity_regularizer)
from imbalance_jax.losses.aggregation_separation import (aggregation_separation_loss, aggregation_separation_terms,
                                                         multi_layer_aggregation_separation_loss)
from imbalance_jax.losses.classification import (cdb_cross_entropy, focal_loss, ldam_loss, logit_adjusted_loss,
                                                 softmax_cross_entropy)
from imbalance_jax.losses.clustering import colour_similarity_loss, semantic_triplet_loss
from imbalance_jax.losses.distances import pairwise_distances
from imbalance_jax.losses.triplet import triplet_loss, triplet_loss_terms
from imbalance_jax.losses.weighting import (cdb_weights, class_balanced_weights, drw_weights,
                                            inverse_frequency_weights)

__all__ = [
    "affinity_loss", "affinity_loss_terms", "affinity_margin_loss", "affinity_margin_terms", "affinity_similarity", "aggregation_separation_loss",
    "aggregation_separation_terms", "cdb_cross_entropy", "cdb_weights", "class_balanced_weights",
    "colour_similarity_loss", "diversity_regularizer", "drw_weights", "focal_loss", "inverse_frequency_weights",
    "ldam_loss", "logit_adjusted_loss", "multi_layer_aggregation_separation_loss", "pairwise_distances",
    "semantic_triplet_loss", "softmax_cross_entropy", "triplet_loss", "triplet_loss_terms",
]
