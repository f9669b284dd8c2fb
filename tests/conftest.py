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


@pytest.fixture
def pruning_inputs(monkeypatch):
    """Record the prompts every call of `prune_heads` sees, in the modules given:
    `seen = pruning_inputs(module, ...)` patches each module's `prune_heads` name."""
    seen: list[torch.Tensor] = []

    def patch(*modules):
        for module in modules:
            real = module.prune_heads

            def spy(model, Z0, D, keep=1, real=real):
                seen.append(Z0.clone())
                return real(model, Z0, D, keep)

            monkeypatch.setattr(module, "prune_heads", spy)
        return seen

    return patch


def pytest_collection_modifyitems(config, items):
    """The task-generator, model and training tests use only tiny matrices: run them
    single-threaded (two OpenMP threads made tiny float64 ops ~30x slower here)."""
    for item in items:
        name = item.module.__name__
        if name.startswith("test_tasks_") or name in ("test_models", "test_train"):
            item.fixturenames.append("single_thread")
