"""Each process on a study gets its own sampler seed: ``sampler.seed`` + the trials before it +
a stride x its slot. A slot is a number this process claims in the study's storage (the study
attribute ``harness.slot.<k>`` names the process holding it), so that two identical commands
started together, or workers with the same index on two machines, never sample the same
parameters, and a study stays reproducible from what it recorded (each trial records the
seed its process used). A slot whose process is gone (on this machine) is claimed again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from harness.records import schema, trials
from harness.study.recovery import process_is_gone, this_worker

if TYPE_CHECKING:
    import optuna

# far apart, so that the seeds of slots never meet those of later runs of one slot
SAMPLER_SEED_STRIDE = 7919


def claim_slot(study: optuna.Study, settle: float = 0.2) -> int:
    """The lowest slot that is free (or whose process is gone), claimed for this process.

    Claiming is write-then-read-back: of processes writing one slot at the same moment, the
    one whose write is stored last owns it; the others read that back and try the next slot.
    """
    me, slot = this_worker(), 0
    while True:
        key = f"{schema.SLOT_ATTR_PREFIX}{slot}"
        holder = trials.stored_attrs(study).get(key)
        if holder is None or holder == me or process_is_gone(holder):
            study.set_user_attr(key, me)
            time.sleep(settle)
            if trials.stored_attrs(study).get(key) == me:
                return slot
        slot += 1


def sampler_seed(base: int, trials_before: int, slot: int) -> int:
    return int(base) + trials_before + SAMPLER_SEED_STRIDE * slot
