"""OmegaConf resolvers used in conf/ (registered when ``harness`` is imported)."""

from __future__ import annotations

import importlib
import re

from omegaconf import OmegaConf

from harness.space import SearchSpace


def embedded_model(package: str) -> str:
    """Folder of the model shipped inside an installed package (``get_model_path()``)."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ValueError(
            f"the embedded model needs the package '{package}' (pip install "
            f"{package.replace('_', '-')}): {exc}"
        ) from exc
    return str(module.get_model_path())


def slug(value: str) -> str:
    """A short, path-safe name from a hub id or a path: ``org/bert-base`` -> ``bert-base``."""
    last = str(value).rstrip("/").split("/")[-1] or "unnamed"
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", last))  # no ".." in names


def grid(space: object, points: int = 3) -> object:
    """``${grid:${search_space},N}``: the search space as a GridSampler grid (N points a float)."""
    return OmegaConf.create(SearchSpace.from_config(space).grid(int(points)))


OmegaConf.register_new_resolver("embedded_model", embedded_model, replace=True)
OmegaConf.register_new_resolver("grid", grid, replace=True)
OmegaConf.register_new_resolver("slug", slug, replace=True)
