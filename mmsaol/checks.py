"""Argument checks that fail with a sentence naming the config field, and
the error of a missing optional dependency.

The bottom of the package (no mmsaol imports): components in every part
use them, so an invalid choice reads the same everywhere, and the tools'
error wrapper knows :class:`MissingDeployDependency` without importing the
deploy part.
"""
from __future__ import annotations

from typing import Any, Iterable


class MissingDeployDependency(ImportError):
    """An optional package of the deploy extra is not installed."""


def check_choice(value: Any, choices: Iterable[Any], field: str) -> None:
    """Raise ``ValueError`` ("``field`` must be one of ..., got ...") when
    ``value`` is not one of ``choices``.

    Args:
        value (Any): the value given.
        choices (Iterable): the values accepted.
        field (str): how the user spells the option, e.g.
            ``'head.fusion_order'`` or ``'WSOLMetric.map'``.
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f'{field} must be one of {choices}, got {value!r}.')


def check_positive_int(value: Any, field: str) -> None:
    """Raise ``ValueError`` when ``value`` is not an int >= 1 (a bool is
    not)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{field} must be a positive int, got {value!r}.')
