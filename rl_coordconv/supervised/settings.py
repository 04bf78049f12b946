"""The checks every supervised experiment's config makes of its settings."""

from __future__ import annotations

from collections.abc import Iterable


def validate_settings(config, choices: dict[str, Iterable[str]], counts: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first bad setting of ``config`` and what is accepted: each
    field of ``choices`` must be one of its options, each of ``counts`` at least 1, and
    ``config.learning_rate`` above 0 (``None``, a count's or learning rate's default, passes) and
    ``config.seed`` at least 0."""
    for name, options in choices.items():
        if getattr(config, name) not in options:
            raise ValueError(f"unknown {name} {getattr(config, name)!r}; choose one of {tuple(options)}")
    for name in counts:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    if config.learning_rate is not None and not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate!r}")
    if config.seed < 0:
        raise ValueError(f"seed must be >= 0, got {config.seed!r}")
