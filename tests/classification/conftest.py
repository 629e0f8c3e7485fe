"""Fixtures of the classifier tests (the crop build `crops` is in tests/conftest.py, shared with tests/app)."""

from __future__ import annotations

import pytest


def _recalibrate_batch_norm(model, x) -> None:
    """Batch-norm statistics of the batch `x` itself. A network fresh from init (or after a step or two) still has
    the init's running statistics, with which a deep network's eval-mode activations vanish (every crop gets
    p = 0.5) or overflow (the predictor refuses the weights as damaged)."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative average: one pass gives the batch's statistics
    was_training = model.training
    model.train()
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for m in norms:
        m.momentum = 0.1


@pytest.fixture
def recalibrate_batch_norm():
    return _recalibrate_batch_norm
