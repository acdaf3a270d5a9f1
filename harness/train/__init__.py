"""One fine-tune: the model (base weights once per study, a fresh copy + adapter per trial), the
HF Trainer with the harness's callbacks, and the trial's checkpoint (saved, loaded, kept).

transformers and peft are imported where they are used, so that importing this package stays
cheap (the CLI checks a config in well under a second)."""

from harness.train.checkpoints import CheckpointStore, load_checkpoint, save_checkpoint

__all__ = ["CheckpointStore", "load_checkpoint", "save_checkpoint"]
