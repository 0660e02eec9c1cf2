"""Fashion-MNIST-LT (ρ = 100), the silk paper's auxiliary clustering loss: head [1024, 32] after dropout 0.3,
CE + 0.5·semantic-triplet + 0.5·colour-similarity on the normalised 32-d features.
Fashion-MNIST is grayscale: every image has saturation 0, so all colour histograms are the same one-hot centre
bin, ρ = 1 for every pair and the colour term only pulls all embeddings together. It is kept to run the paper's
method as written; --config.loss.aux.colour_similarity.weight=0 gives the semantic-only variant."""

from configs import clustering_silknow, fmnist_lt_base


def get_config():
    config = fmnist_lt_base.get_config()
    clustering_silknow.set_clustering(config)
    config.evaluation.embedding_layer = "head_last"
    return config
