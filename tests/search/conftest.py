"""Fixtures shared by the search tests."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """One torch thread: reproducible sums, and fair on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
