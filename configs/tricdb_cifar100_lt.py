"""TriCDB-CE on CIFAR-100-LT, ρ = 100: the CIFAR-10-LT protocol of tricdb_cifar10_lt.py with 100 classes."""

from configs import tricdb_cifar10_lt


def get_config():
    return tricdb_cifar10_lt.get_config("cifar100")
