import os

import pytest
import torch

# Two cores are shared by everything on the CI machine: keep each test single-threaded and deterministic.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)
