import os

import pytest
import torch

# Under pytest-xdist each worker gets its share of the cores: two workers with two OpenMP threads each on a 2-core
# machine would spin against each other.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, 2 // _WORKERS))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
