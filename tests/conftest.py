"""Shared pytest fixtures, and the markers that split the suite into lanes.

`make test-fast` deselects ``slow`` and ``slurm``; `make test` (what CI runs) runs all.
A test that takes a Slurm cluster fixture is marked ``slurm`` here, and everything under
tests/gpu/ ``gpu``, so new tests fall into the right lane without remembering to.
"""

import os
from pathlib import Path

import pytest

from harness.devices import usable_cores

pytest_plugins = ["tests.slurm_cluster_fixture"]
_SLURM_FIXTURES = {"slurm_cluster", "slurm_cluster_2nodes"}
_GPU_DIR = Path(__file__).parent / "gpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SLURM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slurm)
        if _GPU_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
    _long_files_first(items)


def _long_files_first(items: list[pytest.Item]) -> None:
    """Run the files that hold ``slow`` or ``slurm`` tests first, each file's tests still
    together (module fixtures are set up once), and the many short files last.

    Under pytest-xdist a long test that starts last holds one worker while the others have
    nothing left; started first, the short files even out the workers' ends.
    """
    long_files = {
        item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("slurm")
    }
    position = {id(item): n for n, item in enumerate(items)}
    items.sort(key=lambda item: (item.path not in long_files, position[id(item)]))


# Tests never talk to the W&B service; offline mode still runs the real client. WANDB_MODE
# overrides LOG.WANDB.MODE (docs/reliability.md), so only an `online` from the shell is
# turned offline here: a test config's own `disabled` must stay disabled.
if os.environ.get("WANDB_MODE", "").strip().lower() in ("online", "run"):
    os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


def _share_cores_among_xdist_workers() -> None:
    """Give each pytest-xdist worker's torch processes its share of the cores.

    A run on the CPU takes every core for its OpenMP threads (harness/train.py splits them
    only among one launch's ranks). With two workers each running such a run, four threads
    share two cores and OpenMP's spin-waits burn what the other run needed: a tiny HRNet
    run that takes 14 core-s alone took 31 beside another test. Set before torch is
    imported, so that the worker, and every run and Slurm job it starts, inherits it; an
    OMP_NUM_THREADS from the shell wins.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if workers > 1 and not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // workers))


_share_cores_among_xdist_workers()


@pytest.fixture(scope="session")
def fer_csv_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small synthetic FER2013 csv set (Kaggle format), shared by the spine tests."""
    from efficientnet.synth import write_synthetic_fer

    return write_synthetic_fer(str(tmp_path_factory.mktemp("fer")), n=880, fmt="csv", seed=0)
