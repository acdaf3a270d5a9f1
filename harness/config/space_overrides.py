"""Search-space entries from the command line: an entry given with a ``type`` replaces the entry.

The keys of ``search_space`` (and of each method's space under ``method_space``) hold dots, so
the command line changes them with a dict literal::

    search_space={train.learning_rate: {high: 1e-2}}                     # merged into the entry
    search_space={train.learning_rate: {type: categorical, choices: [1e-4, 3e-4]}}   # replaced
    search_space={train.seed: {type: fixed, value: 7}}                   # fixed for the study

Hydra merges a dict into the config and its config is closed (struct), so a replaced entry's new
keys (``choices`` above) would be refused and its old ones (``low``, ``high``) kept. Two steps
make it work, the same for ``search_space=``, ``+search_space=`` and ``++search_space=``:

- :func:`prepare`, before Hydra composes: such an override is made a ``++`` one (merged, new keys
  allowed);
- :func:`replace_entries`, on the composed config: every entry the command line gave with a
  ``type`` is set to exactly what was given.

The composed config is then the one the study records (its fingerprint): a changed entry is a
changed study.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

# search_space=…, method_space=…, method_space.<method>=… (with or without + / ++)
_SPACE_OVERRIDE = re.compile(r"^\+{0,2}(search_space|method_space(\.[A-Za-z0-9_-]+)?)=")


def prepare(args: Iterable[str]) -> list[str]:
    """Command-line arguments with every search-space override made a ``++`` (merging) one."""
    out = []
    for arg in args:
        found = _SPACE_OVERRIDE.match(arg)
        out.append("++" + arg.lstrip("+") if found else arg)
    return out


def replace_entries(cfg: DictConfig, overrides: Iterable[str]) -> None:
    """Set each search-space entry an override gave with a ``type`` to exactly that entry (the
    composed config merged it with the entry of the sweep's YAML)."""
    for key, value in _space_overrides(overrides):
        if key == "method_space":
            for method, space in value.items():
                _replace(cfg, f"method_space.{method}", space)
        else:
            _replace(cfg, key, value)


def _space_overrides(overrides: Iterable[str]) -> list[tuple[str, Mapping[str, Any]]]:
    wanted = [o for o in overrides if _SPACE_OVERRIDE.match(o)]
    if not wanted:
        return []
    parsed = OverridesParser.create().parse_overrides(wanted)
    found: list[tuple[str, Mapping[str, Any]]] = []
    for o in parsed:
        if o.is_delete() or o.is_sweep_override():
            continue
        value = o.value()
        if isinstance(value, dict):
            found.append((o.key_or_group, value))
    return found


def _replace(cfg: DictConfig, key: str, space: Mapping[str, Any]) -> None:
    node = OmegaConf.select(cfg, key)
    if not isinstance(node, DictConfig) or not isinstance(space, Mapping):
        return  # left to the space's own checks (they name the entry)
    with open_dict(node):
        for path, entry in space.items():
            if isinstance(entry, Mapping) and "type" in entry:
                node[path] = dict(entry)
