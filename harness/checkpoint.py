"""Public name of the checkpoint loader (defined in :mod:`harness.train.checkpoints`)."""

from harness.train.checkpoints import load_checkpoint

__all__ = ["load_checkpoint"]
