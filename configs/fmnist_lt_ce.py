"""Fashion-MNIST-LT (ρ = 100), plain softmax cross-entropy: the baseline of every table."""

from configs import fmnist_lt_base


def get_config():
    return fmnist_lt_base.get_config()
