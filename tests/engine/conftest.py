"""Shared fixtures for the engine tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tiny ops only add contention on a shared machine, and
    nn.LSTM's oneDNN kernels can stall ~100x with 2 threads when another process holds a core."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
