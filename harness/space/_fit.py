"""Parameter sets to queue (``study.enqueue``, a warm start): checked against the study's space.

A set names params as the trials record them; :func:`fit_params` returns it as Optuna's
``enqueue_trial`` wants it (a categorical value as its choice's label) or raises a
:class:`ConfigError` whose field is the param at fault. A set may leave params out (the sampler
chooses them). A fixed entry's value is dropped when it matches (nothing to queue), refused when
it differs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from harness.base.errors import ConfigError
from harness.space._methods import MethodSpace
from harness.space._params import Param, SearchSpace, _choice_label

if TYPE_CHECKING:
    from optuna.distributions import CategoricalChoiceType

# A queued set: param name -> value, as Optuna's enqueue_trial takes it
Fitted = dict[str, "CategoricalChoiceType"]


def fit_params(space: SearchSpace | MethodSpace, params: Mapping[str, object]) -> Fitted:
    """``params`` checked against ``space`` (see the module)."""
    if not isinstance(params, Mapping):
        raise ConfigError("params", f"must map param names to values, got {params!r}")
    if isinstance(space, MethodSpace):
        return _fit_methods(space, dict(params))
    return _fit(dict(params), {p.path: p for p in space})


def _fit_methods(space: MethodSpace, params: dict[str, object]) -> Fitted:
    """A methods study: ``method`` and ``<method>/<path>`` (``<path>`` alone is read as the
    chosen method's); the method follows from the prefixes when it is not given."""
    method = params.pop(MethodSpace.PARAM, None)
    prefixes = {str(name).split("/", 1)[0] for name in params if "/" in str(name)}
    if method is None and len(prefixes) == 1:
        method = next(iter(prefixes))
    if method is not None and method not in space.per_method:
        raise ConfigError(
            MethodSpace.PARAM,
            f"{method!r} is not a method of this study (methods: {', '.join(space.per_method)})",
        )
    known = {p.path: p for p in (space.shared or [])}
    if method is not None:
        own = {f"{method}/{p.path}": p for p in space.per_method[method]}
        params = {
            name
            if name in known or name in own or f"{method}/{name}" not in own
            else f"{method}/{name}": value
            for name, value in params.items()
        }
        known.update(own)
    fitted = _fit(params, known)
    return fitted if method is None else {MethodSpace.PARAM: method, **fitted}


def _fit(params: dict[str, object], known: dict[str, Param]) -> Fitted:
    out: Fitted = {}
    for name, value in params.items():
        param = known.get(str(name))
        if param is None:
            raise ConfigError(
                str(name),
                "is not a param of this study's search space "
                f"(its params: {', '.join(known) or 'none'})",
            )
        if not param.searched:
            if value != param.value:
                raise ConfigError(
                    str(name),
                    f"is fixed at {param.value!r} in this study (search_space), got {value!r}",
                )
            continue
        out[str(name)] = _check(param, value, str(name))
    return out


def _check(param: Param, value: object, name: str) -> CategoricalChoiceType:
    if param.kind == "categorical":
        labels = [_choice_label(c) for c in param.choices]
        label = _choice_label(value)
        if label not in labels:
            raise ConfigError(name, f"{value!r} is not one of its choices {list(param.choices)}")
        return labels[labels.index(label)]
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(name, f"must be a number, got {value!r}")
    low, high = param.bounds()
    if not low <= value <= high:
        raise ConfigError(name, f"{value!r} is outside its range [{param.low}, {param.high}]")
    if param.kind == "float":
        if (
            param.step is not None and abs((k := (value - low) / param.step) - round(k)) >= 1e-8
        ):  # Optuna's own test: it would warn and run the trial off the grid
            raise ConfigError(
                name,
                f"{value!r} is not one of its values ({param.low} to "
                f"{param.high}, step {param.step})",
            )
        return float(value)
    if not float(value).is_integer() or (value - low) % (param.step or 1):
        raise ConfigError(
            name,
            f"{value!r} is not one of its values ({param.low} to "
            f"{param.high}, step {param.step or 1})",
        )
    return int(value)
