"""Weight averages of checkpoints of one configuration (a model soup, Wortsman et al. 2022): one
model, the cost of one at inference.

The checkpoints must share their architecture (the same configuration: the same adapter shape)
and, for the average to land in a good basin, their starting point: the final stage's
``final.vary=data_order`` seeds start from the same weights (head and adapter initialisation)
and differ in data order and dropout only. Every floating-point tensor of the weights file
(``adapter_model.safetensors``: the adapter and the trained head; ``model.safetensors``: the
whole model) is averaged; everything else is the first checkpoint's.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors")


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {' or '.join(WEIGHT_FILES)}")


def average_checkpoints(folders: Sequence[Path], target: Path) -> Path:
    """Write the uniform average of ``folders``' weights as a checkpoint in ``target`` (a new
    folder: the first checkpoint's files, its weights file replaced by the average)."""
    from safetensors.torch import load_file, save_file

    if not folders:
        raise ValueError("a soup needs at least one checkpoint")
    names = {weights_file(Path(f)).name for f in folders}
    if len(names) != 1:
        raise ValueError(f"the checkpoints hold different kinds of weights: {sorted(names)}")
    tables = [load_file(str(weights_file(Path(f)))) for f in folders]
    keys = set(tables[0])
    if any(
        set(t) != keys or any(t[k].shape != tables[0][k].shape for k in keys) for t in tables[1:]
    ):
        raise ValueError(
            "the checkpoints' weights differ in names or shapes: not one configuration"
        )
    average = {}
    for key, first in tables[0].items():
        if first.is_floating_point():
            average[key] = (sum(t[key].double() for t in tables) / len(tables)).to(first.dtype)
        else:
            average[key] = first
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(folders[0], target)
    save_file(
        {k: v.contiguous() for k, v in average.items()},
        str(target / names.pop()),
        metadata={"format": "pt"},
    )
    return target
