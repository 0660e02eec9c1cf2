"""Fashion-MNIST-LT (ρ = 100), Gaussian-affinity max-margin loss (Hayat et al.): FC-128 features → affinity head
with m = 5 centres per class, σ = 10, λ = 0.75, γ = 1, no softmax. --config.model.affinity.num_centres=1 (and the same
for the loss) for one centre per class."""

from configs import affinity_mnist, fmnist_lt_base


def get_config():
    config = fmnist_lt_base.get_config()
    affinity_mnist.set_affinity(config, num_centres=5)
    return config
