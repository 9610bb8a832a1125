"""The divergence guard: a non-finite or absurd training loss stops the run, named."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.reliability("TRN1")
def test_a_finite_blow_up_is_a_divergence():
    from types import SimpleNamespace

    from mnist_cnn.callbacks.divergence import DivergenceGuard
    from mnist_cnn.errors import TrainingDiverged
    from mnist_cnn.models.mlp import MLP
    from mnist_cnn.module import ClassifierModule

    module = ClassifierModule(MLP(), optimizer=torch.optim.SGD)
    with torch.no_grad():
        module.net.output.bias.copy_(torch.tensor([1e6] + [0.0] * 9))  # finite, absurd logits
    x, y = torch.rand(8, 1, 28, 28), torch.full((8,), 3)
    loss = module.training_step((x, y), 0)
    trainer = SimpleNamespace(
        global_step=0, current_epoch=0, log_every_n_steps=50, num_training_batches=10
    )
    with pytest.raises(TrainingDiverged, match="training diverged: train loss 1e\\+06 at epoch 1"):
        DivergenceGuard().on_before_backward(trainer, module, loss)
