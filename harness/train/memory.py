"""A trial's memory: the figures recorded on its run, and what is freed between trials."""

from __future__ import annotations

import contextlib
import gc
import resource
from collections.abc import Iterator


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory_figures() -> dict[str, float]:
    """Memory metrics of a trial: the GPU's peak during it, the process's resident memory at
    its end (growth over trials would be a leak) and the process's peak so far."""

    import torch

    out = {"process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    out["process_rss_mb"] = int(line.split()[1]) / 1024
    except OSError:  # not Linux
        pass
    if torch.cuda.is_available():
        out["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


@contextlib.contextmanager
def study_objects_frozen() -> Iterator[None]:
    """What exists when a study starts (the libraries, the base model, the data) lives as long
    as the study: set apart from the garbage collector (``gc.freeze``) while it runs, so that
    the collection between trials (:func:`release_memory`) scans only what the trials made.
    With transformers imported, a full collection over everything took ~0.5 s a trial.

    The young generations are collected first (the set-up's garbage; a millisecond), not the
    oldest (a quarter of a second, every study): what garbage it holds stays until the study
    ends."""
    gc.collect(1)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def release_memory() -> None:
    """Between trials: free what the trial held (CUDA caches too, after an out-of-memory)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort
        pass
