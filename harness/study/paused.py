"""Paused trials' training states on disk, bounded: ``<study.output_dir>/paused/trial-N``.

The same folder holds the states of trials a signal interrupted under ``study.resume_trials``
(``harness.interrupted_state``): kept until a continuation of theirs has ended or saved a later
state, never dropped for the budget (:mod:`harness.study.recovery`).

A state is written to ``.partial/paused-N`` and renamed into ``paused/`` once complete, before
Optuna records the trial as paused: a process killed while writing leaves only a partial folder,
which the next run removes. A state is kept while its trial waits for a promotion or is being
continued; it goes once the continuation has ended, or when its trial did not end paused.

``checkpoints.paused_gb`` bounds the states kept: over it, the states of paused trials that are
not due for a promotion go first, the oldest first. A dropped state is recorded in the study
(``harness.dropped.<trial>``: the report and the summary say so) and its configuration stays
where it paused. Every change happens under the study's promotion lock
(:mod:`harness.study.promotion`), so no worker drops a state another is about to continue.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from harness.records import schema, trials

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
GB = 1024**3


class PausedStates:
    """The study's paused training states (see the module)."""

    def __init__(self, root: str | Path, max_gb: float | None) -> None:
        self.root = Path(root)
        self.dir = self.root / "paused"
        self.partial_dir = self.root / ".partial"
        self.max_bytes = None if max_gb is None else int(float(max_gb) * GB)

    def partial(self, number: int) -> Path:
        """Where trial ``number`` writes its state if it pauses (emptied first; not created)."""
        path = self.partial_dir / f"paused-{number}"
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, number: int) -> Path:
        """Trial ``number``'s finished state moved in among the kept ones."""
        target = self.path(number)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        (self.partial_dir / f"paused-{number}").rename(target)
        return target

    def path(self, number: int) -> Path:
        return self.dir / f"trial-{number}"

    def relative(self, number: int) -> str:
        return str(self.path(number).relative_to(self.root))

    def discard(self, number: int) -> None:
        """Trial ``number``'s half-written state (it was killed, failed, or did not pause)."""
        shutil.rmtree(self.partial_dir / f"paused-{number}", ignore_errors=True)

    def remove(self, number: int) -> None:
        shutil.rmtree(self.path(number), ignore_errors=True)

    def numbers(self) -> list[int]:
        """Trial numbers with a state on disk."""
        if not self.dir.is_dir():
            return []
        out = []
        for folder in self.dir.iterdir():
            prefix, _, number = folder.name.partition("-")
            if folder.is_dir() and prefix == "trial" and number.isdigit():
                out.append(int(number))
        return sorted(out)

    def tidy(self, study: optuna.Study, protect: set[int]) -> list[int]:
        """Remove the states nothing needs any more, then keep the rest within the budget
        (``protect``: trial numbers due for a promotion). Returns the trials whose states were
        dropped for the budget."""
        every = study.get_trials(deepcopy=False)
        by_number = {t.number: t for t in every}
        waiting = {t.number for t in trials.paused(study, every)}
        later = trials.continuations(every)
        live = {
            number
            for number, runs in later.items()
            if any(r.state in (TrialState.RUNNING, TrialState.WAITING) for r in runs)
        }
        live |= interrupted(every)  # never dropped for the budget: the next run continues them
        for number in self.numbers():
            if number not in waiting and number not in live:
                self.remove(number)
        self.clear_partials(study, every)
        if self.max_bytes is None:
            return []
        sizes = {n: _size(self.path(n)) for n in self.numbers()}
        total = sum(sizes.values())
        dropped = []
        candidates = sorted(
            (by_number[n] for n in sizes if n in by_number and n not in live and n not in protect),
            key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number),
        )
        for trial in candidates:
            if total <= self.max_bytes:
                break
            total -= sizes[trial.number]
            self.remove(trial.number)
            study.set_user_attr(
                f"{schema.DROPPED_ATTR_PREFIX}{trial.number}",
                f"paused at evaluation {trials.paused_at(trial)}: its state was "
                f"removed to keep paused states under checkpoints.paused_gb "
                f"({self.max_bytes / GB:g} GB)",
            )
            dropped.append(trial.number)
        if dropped:
            log.warning(
                "paused states over checkpoints.paused_gb: removed the oldest not due for "
                "a promotion (trials %s); those configurations stay where they paused",
                ", ".join(map(str, dropped)),
            )
        return dropped

    def clear_partials(self, study: optuna.Study, every: list[FrozenTrial] | None = None) -> None:
        """Remove the half-written states whose trial is not running (its writer is gone)."""
        if not self.partial_dir.is_dir():
            return
        every = study.get_trials(deepcopy=False) if every is None else every
        by_number = {t.number: t for t in every}
        for folder in self.partial_dir.glob("paused-*"):
            trial = by_number.get(int(folder.name.rpartition("-")[2]))
            if trial is None or trial.state != TrialState.RUNNING:
                shutil.rmtree(folder, ignore_errors=True)


def interrupted(every: list[FrozenTrial]) -> set[int]:
    """Trials interrupted with their training state saved whose configuration still needs it:
    no continuation of theirs has ended (COMPLETE, PRUNED) or saved a later state."""
    later = trials.continuations(every)
    return {
        t.number
        for t in every
        if trials.interrupted_state(t) is not None
        and not any(
            c.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or trials.interrupted_state(c) is not None
            for c in later.get(t.number, [])
        )
    }


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
