"""Command-line overrides for configuration dataclasses, and step counts such as ``10M``."""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any, get_type_hints

_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_steps(text: str | int) -> int:
    """``"10M" -> 10_000_000``, ``"250k" -> 250_000``, ``"1e6" -> 1_000_000``, ``"5000" -> 5000``."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmg]?)\s*", str(text).lower())
    if match is None:
        raise ValueError(f"cannot read a step count from {text!r}; use e.g. 5000, 250k, 10M or 1e7")
    value = float(match.group(1)) * _SUFFIXES[match.group(2)]
    if value != int(value) or value < 0:
        raise ValueError(f"a step count must be a whole non-negative number, got {text!r}")
    return int(value)


def apply_overrides(config: Any, overrides: list[str]) -> None:
    """Apply ``key=value`` strings to a (nested) dataclass in place: ``a2c.n_envs=8``.

    Values are converted to the field's declared type; unknown keys raise ``ValueError`` listing
    the accepted ones. A key a config renamed (its ``RENAMED``, old name -> new) still works,
    with a ``FutureWarning`` naming the new key.
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"an override must look like key=value, got {item!r}")
        key, value = item.split("=", 1)
        *parents, name = key.strip().split(".")
        target = config
        for parent in parents:
            target = getattr(target, parent, None)
            if not dataclasses.is_dataclass(target):
                raise ValueError(f"unknown setting {key!r}; settings are: {', '.join(setting_names(config))}")
        hints = get_type_hints(type(target))
        renamed = getattr(target, "RENAMED", {}).get(name)
        if renamed is not None:
            new_key = ".".join([*parents, renamed])
            warnings.warn(
                f"the setting {key.strip()!r} is now {new_key!r}; the old name will go in a later version",
                FutureWarning,
                stacklevel=2,
            )
            name = renamed
        if name not in {field.name for field in dataclasses.fields(target)} or dataclasses.is_dataclass(getattr(target, name)):
            raise ValueError(f"unknown setting {key!r}; settings are: {', '.join(setting_names(config))}")
        setattr(target, name, _convert(value.strip(), hints[name], key))


def with_current_names(config_class: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a saved config's fields) with the keys ``config_class`` renamed under their new names."""
    renamed = getattr(config_class, "RENAMED", {})
    return {renamed.get(key, key): value for key, value in values.items()}


def setting_names(config: Any, prefix: str = "") -> list[str]:
    """Every overridable dotted key of a (nested) dataclass."""
    names = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            names += setting_names(value, f"{prefix}{field.name}.")
        else:
            names.append(prefix + field.name)
    return names


def _convert(value: str, type_hint: Any, key: str) -> Any:
    try:
        if type_hint is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if type_hint is int:
            # The sign is read here and judged by the setting's range, whose error says what is accepted.
            return -parse_steps(value[1:]) if value.startswith("-") else parse_steps(value)
        if type_hint is float:
            return float(value)
        return value
    except ValueError:
        raise ValueError(f"{key}={value!r} is not a valid {getattr(type_hint, '__name__', type_hint)}") from None


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting accepts: ``[low, high]``, either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):  # nan compares false with every bound
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        low = "-inf" if self.low is None else _bound(self.low)
        high = "inf" if self.high is None else _bound(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_ONE = Range(1)
PROBABILITY = Range(0, 1)
DISCOUNT = Range(0, 1, low_open=True)
# The seeds derived from a run's (seed + env, seed + 10,000 for evaluation, seed * 1000 + actor on
# Ray) stay below 2**32, the most numpy's and gymnasium's seeding accept.
SEED = Range(0, 1_000_000)


def check_ranges(config: Any, ranges: dict[str, Range], prefix: str) -> None:
    """Raise ``ValueError`` naming the first setting of ``config`` outside its range, e.g.
    ``apex.alpha must be in [0, 1], got 2.0``; every numeric field must have a range."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if field.name not in ranges:
            raise TypeError(f"{type(config).__name__}.{field.name} has no range in its RANGES")
        if value not in ranges[field.name]:
            raise ValueError(f"{prefix}.{field.name} must be in {ranges[field.name]}, got {value}")


def check_env_copies(env: Any, config: Any, prefix: str) -> None:
    """Refuse an env whose number of copies is not the agent settings' ``n_envs``."""
    if env.num_envs != config.n_envs:
        raise ValueError(f"the env has {env.num_envs} copies but {prefix}.n_envs is {config.n_envs}")
