"""Fashion-MNIST-LT (ρ = 100), TriCDB-CE: violating-triplet loss (α = 0.2, λ = 1) on the L2-normalised backbone embedding +
CDB-CE with dynamic τ from the balanced validation set, recomputed every epoch."""

from configs import fmnist_lt_base, tricdb_cifar10_lt


def get_config():
    config = fmnist_lt_base.get_config()
    tricdb_cifar10_lt.set_tricdb(config)
    return config
