"""Does a config value (what YAML reads: None, bool, int, float, str, list, dict) have a parameter's annotated
type?  Understands the annotations factories use: the scalars, ``X | Y`` / ``Optional``, ``Literal``, and
sequences (``Sequence[T]``, ``list[T]``, ``tuple[T, ...]``, ``tuple[A, B]``), a string being no sequence here.
Anything else (a class, ``Any``, an unresolved string) is not judged: ``conforms`` answers None."""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any

SEQUENCES = (list, tuple, collections.abc.Sequence)
SCALARS = {bool: "true/false", int: "int", float: "float", str: "str", type(None): "null"}


def conforms(value: Any, annotation: Any) -> bool | None:
    """True or False where the annotation is understood, else None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in SCALARS:
        if annotation is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if annotation is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, annotation)
    if origin in (typing.Union, types.UnionType):
        answers = [conforms(value, a) for a in args]
        return True if True in answers else None if None in answers else False
    if origin is typing.Literal:
        return value in args
    if origin in SEQUENCES or annotation in SEQUENCES:
        if not isinstance(value, (list, tuple)):
            return False
        if not args or args == (Ellipsis,):
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                return False
            answers = [conforms(v, a) for v, a in zip(value, args)]
        else:
            answers = [conforms(v, args[0]) for v in value]
        return False if False in answers else None if None in answers else True
    if annotation is dict or origin is dict:
        return isinstance(value, dict)
    return None


def describe(annotation: Any) -> str:
    """The annotation as a user reads it: ``str or list of str``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in SCALARS:
        return SCALARS[annotation]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in SEQUENCES:
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)}: [{', '.join(describe(a) for a in args)}]"
        return f"list of {describe(args[0])}" if args else "list"
    if annotation in SEQUENCES:
        return "list"
    return getattr(annotation, "__name__", str(annotation))
