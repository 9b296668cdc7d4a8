"""Shared pytest fixtures, and the markers that split the suite into lanes.

`make test-fast` deselects ``slow`` and ``slurm``; `make test` (what CI runs) runs all.
A test that takes a Slurm cluster fixture is marked ``slurm`` here, and everything under
tests/gpu/ ``gpu``, so new tests fall into the right lane without remembering to.
"""

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.slurm_cluster_fixture"]
_SLURM_FIXTURES = {"slurm_cluster", "slurm_cluster_2nodes"}
_GPU_DIR = Path(__file__).parent / "gpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SLURM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slurm)
        if _GPU_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)


# Tests never talk to the W&B service; offline mode still runs the real client. WANDB_MODE
# overrides LOG.WANDB.MODE (docs/reliability.md), so only an `online` from the shell is
# turned offline here: a test config's own `disabled` must stay disabled.
if os.environ.get("WANDB_MODE", "").strip().lower() in ("online", "run"):
    os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def fer_csv_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small synthetic FER2013 csv set (Kaggle format), shared by the spine tests."""
    from efficientnet.synth import write_synthetic_fer

    return write_synthetic_fer(str(tmp_path_factory.mktemp("fer")), n=880, fmt="csv", seed=0)
