"""The study's output in a file (``display.log_file``, by default ``<study.output_dir>/sweep.log``):
one timestamped line per evaluation, per trial and per harness message, appended by every run
(a resume adds to it; each worker's lines carry its index), passwords masked, no redraws."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from harness.base.secrets import mask


class StudyLog:
    """An open log file; the ``harness`` logger's messages go to it too until :meth:`close`."""

    def __init__(self, path: Path, prefix: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.prefix = prefix
        self._file = path.open("a", encoding="utf-8", buffering=1)  # a line at a time
        logger = logging.getLogger("harness")
        for stale in [h for h in logger.handlers if isinstance(h, _Handler)]:
            stale.log.close()  # an earlier study of this process that ended without closing
        self._handler = _Handler(self)
        self._handler.setFormatter(logging.Formatter("[harness] %(message)s"))
        logger.addHandler(self._handler)

    def line(self, text: str) -> None:
        """Append ``text`` (each of its lines, timestamped)."""
        if self._file.closed:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            for part in str(text).splitlines() or [""]:
                self._file.write(f"{stamp} {self.prefix}{mask(part.rstrip())}\n")
        except (OSError, ValueError):  # a full disk, a closed file: never a failed study
            pass

    def close(self) -> None:
        logging.getLogger("harness").removeHandler(self._handler)
        if not self._file.closed:
            self._file.close()


class _Handler(logging.Handler):
    def __init__(self, log: StudyLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.line(self.format(record))
        except Exception:  # the log file must never break the study
            self.handleError(record)
