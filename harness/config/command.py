"""Hydra entry points of the harness (sweep, report, export): Hydra's own errors as one line.

Hydra prints a composition error (unknown key, unparsable override, missing config, malformed
YAML) as several lines plus a hint; with ``HYDRA_FULL_ERROR=1`` it raises them instead, so they
are caught here and printed as one ``error:`` line with exit status 2. Set ``HYDRA_FULL_ERROR=1``
yourself for the traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import yaml
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException, ValidationError

from harness.base.errors import ConfigError
from harness.base.progress import configure_logging, log_level
from harness.base.secrets import config_urls, mask, masked_output, register
from harness.config.access import as_config_error, must_be
from harness.config.space_overrides import prepare


def config_dir() -> str:
    """The folder of the harness's configs: ``conf/`` beside the package in a checkout (the
    folder users edit), else the copy the wheel ships inside the package (``harness/_conf``).

    An absolute path: the same whether an entry point runs as `python -m harness.X`, as a
    script or from another module (a relative one would be read as a package).
    """
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return str(checkout / "conf")
    return str(package / "_conf")


CONF = config_dir()
RUN_MODE = "hydra.mode=RUN"  # what Hydra adds to a command line that runs one job


def run_hydra(main: Callable[[], None]) -> None:
    """Call a ``@hydra.main`` function; composition errors become one ``error:`` line."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    register(sys.argv[1:])  # passwords typed on the command line, even under a mistyped key
    sys.argv[1:] = prepare(sys.argv[1:])  # search-space entries replaced, not refused
    try:
        with faster_hydra():
            main()
    except Exception as exc:
        line = composition_error(exc)
        if line is None:  # not bad input: the traceback, with every password masked
            print(mask(traceback.format_exc()), file=sys.stderr, end="")
            sys.exit(1)
        print(f"error: {mask(line)}", file=sys.stderr)
        sys.exit(2)
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


@contextlib.contextmanager
def faster_hydra() -> Iterator[None]:
    """Two costs of Hydra's own command-line flow, cut for one call without changing what it
    composes or prints (restored on the way out):

    - Every config is composed twice: ``Hydra.get_mode`` composes it to read ``hydra.mode``
      (swallowing any error) and the run composes it again. Here the first compose raises the
      error, and a command line with no sweep value (``a=1,2``) is composed once: for the run,
      the mode read from that config, which the run then takes (a MULTIRUN compose differs from
      a RUN one only where a value sweeps or a default is missing: such a command line is
      composed twice, as Hydra does). About a third of a config error's or a start's time.
    - ``--help`` lists the config groups with one deep copy of the config repository per group
      and option kind (about 90 copies, most of `--help`'s time). Here the listing makes that
      copy once per config loader (the listing passes no config name and no overrides, so every
      copy is the same).

    Both replace a method of Hydra's internals; where a Hydra release renames one, that part of
    Hydra's flow runs as it is (tests/config/test_command.py checks that both are found).
    """
    patches = _hydra_patches()
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _hydra_patches() -> list[tuple[type, str, Callable[..., Any]]]:
    """(class, method name, replacement) for each of :func:`faster_hydra`'s cuts that this
    Hydra release has the method for."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra
    from hydra.core.object_type import ObjectType
    from hydra.types import RunMode

    patches: list[tuple[type, str, Callable[..., Any]]] = []
    if "get_mode" in Hydra.__dict__ and hasattr(Hydra, "compose_config"):
        composed: dict[tuple[str | None, tuple[str, ...]], DictConfig] = {}

        def get_mode(self: Hydra, config_name: str | None, overrides: list[str]) -> Any:
            once = not _sweeps(overrides)
            cfg = self.compose_config(
                config_name=config_name,
                overrides=overrides,
                with_log_configuration=False,
                run_mode=RunMode.RUN if once else RunMode.MULTIRUN,
                validate_sweep_overrides=False,
            )
            if once and cfg.hydra.mode in (None, RunMode.RUN):
                composed[(config_name, tuple(overrides))] = cfg  # the run's, composed
            return cfg.hydra.mode

        def load_configuration(
            self: ConfigLoaderImpl,
            config_name: str | None,
            overrides: list[str],
            run_mode: RunMode,
            from_shell: bool = True,
            validate_sweep_overrides: bool = True,
        ) -> DictConfig:
            # the run composes the same command line, plus hydra.mode=RUN where the config
            # left the mode unset (Hydra's _run_app adds it)
            plain, added = list(overrides), []
            if plain[-1:] == [RUN_MODE]:
                plain, added = plain[:-1], [RUN_MODE]
            cfg = composed.pop((config_name, tuple(plain)), None)
            if cfg is not None and run_mode == RunMode.RUN:
                if added:
                    cfg.hydra.mode = RunMode.RUN
                    cfg.hydra.overrides.hydra.append(RUN_MODE)
                return cfg
            loaded: DictConfig = original_load(
                self, config_name, overrides, run_mode, from_shell, validate_sweep_overrides
            )
            return loaded

        original_load = ConfigLoaderImpl.__dict__["load_configuration"]
        patches.append((Hydra, "get_mode", get_mode))
        patches.append((ConfigLoaderImpl, "load_configuration", load_configuration))
    original_options = ConfigLoaderImpl.__dict__.get("get_group_options")
    if original_options is not None and hasattr(
        ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo"
    ):

        def get_group_options(
            self: ConfigLoaderImpl,
            group_name: str,
            results_filter: ObjectType | None = ObjectType.CONFIG,
            config_name: str | None = None,
            overrides: list[str] | None = None,
        ) -> list[str]:
            if config_name is not None or overrides:
                options = original_options(self, group_name, results_filter, config_name, overrides)
                return list(options)
            repo = self.__dict__.get("_harness_listing_repo")
            if repo is None:
                _, repo = self._parse_overrides_and_create_caching_repo(None, [])
                self.__dict__["_harness_listing_repo"] = repo
            return repo.get_group_options(group_name, results_filter)

        patches.append((ConfigLoaderImpl, "get_group_options", get_group_options))
    return patches


def _sweeps(overrides: list[str]) -> bool:
    """Whether a command line sweeps a value (``a=1,2``, ``a=range(3)``): unparsable counts as
    sweeping (its error is Hydra's to word)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return True
    return any(override.is_sweep_override() for override in parsed)


class Formatted(Protocol):
    """What a read-only command returns: something that says itself in a few lines."""

    def format(self) -> str: ...


def run_command(cfg: DictConfig, action: Callable[[DictConfig], Formatted]) -> None:
    """The body of a read-only command (report, export): ``action(cfg).format()`` printed with
    passwords masked; bad input (a ConfigError) is one ``error:`` line and exit status 2."""
    configure_logging(log_level(cfg))
    with masked_output(config_urls(cfg)):
        try:
            result = action(cfg)
        except ConfigError as exc:
            print(f"error: {mask(str(exc))}", file=sys.stderr)
            sys.exit(2)
        print(result.format())


def composition_error(exc: BaseException) -> str | None:
    """One line for an error Hydra / OmegaConf / YAML raised while composing the config; None
    for anything else."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in chain:
        if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
            mark = error.problem_mark
            context = f" ({error.context})" if error.context else ""
            return (
                f"{mark.name}: line {mark.line + 1}, column {mark.column + 1}: "
                f"{error.problem}{context}"
            )
    if not isinstance(exc, HydraException | OmegaConfBaseException):
        return None
    for error in chain:  # a value of the wrong type for a typed setting
        if isinstance(error, ValidationError) and must_be(str(error.full_key or "")):
            return str(as_config_error(error))
    text = str(exc).strip()
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the override {exc.override!r}: {text.splitlines()[0]}"
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)'", text)
        missing = found.group(1) if found else (exc.missing_cfg_file or "config")
        group, _, name = missing.rpartition("/")
        options = f" (available: {', '.join(exc.options)})" if exc.options else ""
        return f"{group or 'config'}: no config named '{name}'{options}"
    found = re.search(r"Could not (?:override|append to|delete from) '([^']+)'", text)
    if found:
        key = found.group(1).lstrip("+~")
        hint = text.splitlines()[1].strip() if len(text.splitlines()) > 1 else ""
        cause = exc.__cause__
        reason = str(cause).splitlines()[0] if cause else text.splitlines()[0]
        if "not in struct" in reason or re.match(r"Key '[^']+' not in '\w+'", reason):
            reason = "no such setting"
            space_hint = _space_hint(key)
            key, hint = (key, space_hint) if space_hint else (_refused_key(chain) or key, hint)
        return f"{key}: {reason}" + (f" ({hint[0].lower() + hint[1:]})" if hint else "")
    found = re.match(r"Error merging override \+*([\w.]+)=(.*)", text)
    if found and must_be(found.group(1)):  # e.g. a list of mappings given a list of numbers
        return f"{found.group(1)}: must be {must_be(found.group(1))}, got {found.group(2)}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _refused_key(chain: list[BaseException]) -> str | None:
    """The full key a closed config refused (``study.n_trail`` in ``study={n_trail: 5}``)."""
    for error in chain:
        if isinstance(error, OmegaConfBaseException) and re.match(
            r"Key '[^']+' (is )?not in", str(error)
        ):
            return str(getattr(error, "full_key", "") or "") or None
    return None


def _space_hint(key: str) -> str | None:
    """A dotted path under a search space: its keys hold dots, so the entry goes in a dict."""
    found = re.match(r"(search_space|method_space\.[\w-]+)\.", key)
    if not found:
        return None
    root = found.group(1)
    return (
        f"the keys of {root} hold dots: change an entry with a dict, e.g. "
        f"{root}={{train.learning_rate: {{high: 1e-2}}}}, or replace it with one that has "
        "a type"
    )
