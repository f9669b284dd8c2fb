"""Shared test configuration."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

settings.register_profile("eaglelab", deadline=None)
settings.load_profile("eaglelab")


@pytest.fixture
def single_thread():
    """Keep BLAS/OpenMP and torch single-threaded: on a busy 2-core machine tiny matrix
    products are much faster (and steadier) without thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """The task-generator tests use only tiny matrices: run them single-threaded."""
    for item in items:
        if item.module.__name__.startswith("test_tasks_"):
            item.fixturenames.append("single_thread")
