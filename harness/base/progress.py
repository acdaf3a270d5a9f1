"""The study-level progress display: trial i of N, best so far, the running trial's evaluations.

On a terminal a progress bar; elsewhere (a pipe, a file: CI, nohup, SLURM) one line per
evaluation and per trial instead, no redraws. Every line also goes to the study's log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING, Protocol, TextIO

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from harness.base.study_log import StudyLog


class Progress(Protocol):
    """What a study reports to its progress display (:class:`StudyProgress`, or another:
    a test's recorder, a quiet one)."""

    def trial_started(self, number: int) -> None: ...

    def evaluation(self, number: int, index: int, value: float | None) -> None: ...

    def trial_finished(self, counted: bool, best: tuple[int, float] | None) -> None: ...

    def write(self, line: str) -> None: ...

    def close(self) -> None: ...


class StudyProgress:
    """A tqdm bar over finished trials (complete + pruned), on stderr; without a terminal,
    lines. ``log``: the study's log file (a :class:`harness.base.study_log.StudyLog`)."""

    def __init__(
        self,
        total: int,
        done: int,
        metric: str,
        enabled: bool = True,
        desc: str = "trials",
        log: StudyLog | None = None,
    ) -> None:
        self.metric = metric
        self.best = ""
        self.current = ""
        self.log = log
        self.lines = enabled and not is_terminal(sys.stderr)  # one line per evaluation
        self.bar = tqdm(
            total=total,
            initial=min(done, total),
            desc=desc,
            unit="trial",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not enabled or self.lines,
            leave=True,
        )

    def trial_started(self, number: int) -> None:
        self.current = f"trial {number}"
        self._refresh()

    def evaluation(self, number: int, index: int, value: float | None) -> None:
        shown = "?" if value is None else f"{value:.4f}"
        self.current = f"trial {number} eval {index}: {self.metric} {shown}"
        self._refresh()
        if self.lines:  # the launcher's pipe may be gone: the trial goes on
            with contextlib.suppress(OSError):
                self.bar.write(self.current, file=sys.stderr)
        if self.log is not None:
            self.log.line(self.current)

    def trial_finished(self, counted: bool, best: tuple[int, float] | None) -> None:
        if best is not None:
            self.best = f"best {self.metric} {best[1]:.4f} (trial {best[0]})"
        self.current = ""
        if counted:
            self.bar.update(1)
        self._refresh()

    def set_finished(self, finished: int) -> None:
        """Catch up with trials other processes finished (they do not update this bar)."""
        if finished > self.bar.n:
            self.bar.update(min(finished, self.bar.total or finished) - self.bar.n)

    def write(self, line: str) -> None:
        if self.log is not None:
            self.log.line(line)
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()

    def _refresh(self) -> None:
        self.bar.set_postfix_str(" | ".join(p for p in (self.best, self.current) if p))


def log_level(cfg: DictConfig) -> str:
    """``display.log_level`` of a composed config (INFO where it cannot be read)."""
    try:
        return str(cfg.display.log_level)
    except Exception:  # a malformed config: its check names the field
        return "INFO"


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is a terminal (where a progress bar can redraw itself)."""
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a real stream
        return False


class TqdmLogHandler(logging.Handler):
    """Log lines that do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never break the study
            self.handleError(record)


def configure_logging(level: int | str = logging.INFO) -> None:
    """harness logs at ``level`` (INFO; ``display.log_level``) through tqdm; the libraries' own
    chatter and bars are silenced. An unknown level name is INFO (the config check names it).

    Done with environment variables where a library reads them at import, so that nothing
    heavy is imported before the config is validated.
    """

    quiet = {
        "TRANSFORMERS_VERBOSITY": "error",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' weight-loading bars
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "DATASETS_VERBOSITY": "error",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    }
    for key, value in quiet.items():
        os.environ.setdefault(key, value)
    handler = TqdmLogHandler()
    handler.setFormatter(logging.Formatter("[harness] %(message)s"))
    root = logging.getLogger("harness")
    root.handlers[:] = [handler]
    if isinstance(level, str):
        named = logging.getLevelName(level.upper())  # a level's number, for a known name
        level = named if isinstance(named, int) else logging.INFO
    root.setLevel(level)
    root.propagate = False
    for name in ("alembic", "mlflow", "datasets", "transformers", "peft", "evaluate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Optuna's own lines (trial finished / failed with its traceback) repeat the harness's
    # trial lines; a failed trial's traceback is in its MLflow run (traceback.txt). (Imported
    # here: a config error is reported before Optuna is needed, and faster without it.)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
