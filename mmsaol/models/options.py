"""Unknown config options named as a sentence, with the closest match.

A misspelt key in a config dict (``self_supervison=...``) otherwise reaches
the component's ``__init__`` as a Python ``TypeError`` ("unexpected keyword
argument") with no hint of the options that exist.
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Callable, List, Tuple, TypeVar

F = TypeVar('F', bound=Callable)

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
          inspect.Parameter.KEYWORD_ONLY)


def _accepted(cls: type) -> Tuple[List[str], bool]:
    """The keyword options ``cls(...)`` accepts, following ``**kwargs`` up
    the base classes; and whether some ``__init__`` takes any keyword."""
    names: List[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        init = inspect.unwrap(init)
        if klass is object:
            return names, False
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params
                  if p.kind in _NAMED and p.name != 'self'
                  and p.name not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def _closest(key: str, names: List[str]) -> List[str]:
    """The option ``key`` most likely meant: the same words in another
    order (``topk_maps`` -> ``maps_topk``), else the closest spelling."""
    words = sorted(key.split('_'))
    same = [n for n in names if sorted(n.split('_')) == words]
    return same or difflib.get_close_matches(key, names, n=1)


def check_options(init: F) -> F:
    """Decorate a component's ``__init__`` so that an unknown keyword raises
    ``ValueError`` naming it, the closest valid option and all options."""

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        names, open_ended = _accepted(type(self))
        unknown = [k for k in kwargs if k not in names]
        if unknown and not open_ended:
            hints = []
            for key in unknown:
                close = _closest(key, names)
                hints.append(f'{key!r}' + (f' (did you mean {close[0]!r}?)'
                                           if close else ''))
            raise ValueError(
                f'{type(self).__name__} has no option '
                f'{", ".join(hints)}. Its options are: '
                f'{", ".join(sorted(names))}.')
        return init(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
