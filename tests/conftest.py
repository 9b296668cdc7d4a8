"""Shared pytest fixtures."""
import os

import pytest

from tests.slurm_cluster_fixture import slurm_cluster, slurm_cluster_2nodes  # noqa: F401

# Tests never talk to the W&B service; offline mode still runs the real client.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def fer_csv_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small synthetic FER2013 csv set (Kaggle format), shared by the spine tests."""
    from efficientnet.synth import write_synthetic_fer

    return write_synthetic_fer(str(tmp_path_factory.mktemp("fer")), n=880, fmt="csv", seed=0)
