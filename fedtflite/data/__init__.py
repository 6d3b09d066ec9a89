"""Fashion-MNIST loading and non-IID partitioning over simulated clients.

Nothing here imports TensorFlow (only :func:`download_fashion_mnist` does, lazily),
so Flower clients can import this package cheaply.
"""

from fedtflite.data.fashion_mnist import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    DEBIAN_DATA_DIR,
    FashionMnist,
    Split,
    download_fashion_mnist,
    find_data_dir,
    load_fashion_mnist,
    load_train_uint8,
    read_idx,
    read_idx_images,
    read_idx_labels,
    to_float,
)
from fedtflite.data.partition import (
    FLWR_DATASETS_KINDS,
    NIID_BENCH_KINDS,
    PARTITION_KINDS,
    PartitionSpec,
    local_test_size,
    partition_indices,
    partition_stats,
    split_local_test,
    validate_partition_spec,
    write_partition_stats,
)

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "DEBIAN_DATA_DIR",
    "FLWR_DATASETS_KINDS",
    "NIID_BENCH_KINDS",
    "PARTITION_KINDS",
    "FashionMnist",
    "PartitionSpec",
    "Split",
    "download_fashion_mnist",
    "find_data_dir",
    "load_fashion_mnist",
    "load_train_uint8",
    "local_test_size",
    "partition_indices",
    "partition_stats",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "split_local_test",
    "to_float",
    "validate_partition_spec",
    "write_partition_stats",
]
