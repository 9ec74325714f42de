"""A plan file as stored in the workspace, read under today's rules.

A revision stored by an earlier version may break a rule made stricter since (a label now too long, a value now
out of range). It still opens, so that it can be looked at, listed and replaced: its problems come back as
findings, and the decisions (dose, approval, authorization, export) refuse it until a corrected plan file is loaded
as a new revision.
"""

from __future__ import annotations

import tomllib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from rtexport.errors import PlanError
from rtexport.model.plan import Plan, parse_plan


def _unchecked(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp`` without validation: nested models constructed, lists and tuples kept as such."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _unchecked(args[0], value)
    if origin in (Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return _unchecked(models[0], value) if models and isinstance(value, dict) else value
    if origin in (list, tuple) and isinstance(value, list):
        items = [_unchecked(args[0] if args else Any, v) for v in value]
        return tuple(items) if origin is tuple else items
    if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(value, dict):
        fields = {}
        for name, info in tp.model_fields.items():
            key = info.alias if info.alias in value else name
            if key in value:
                fields[name] = _unchecked(info.annotation, value[key])
        return tp.model_construct(**fields)
    return value


def parse_stored_plan(text: str, source: str) -> tuple[Plan, list[str]]:
    """The stored plan and what it breaks of today's rules (empty: it is valid). Raises :class:`PlanError` only
    when the text is not even TOML with the plan's required keys."""
    try:
        return parse_plan(text, source), []
    except PlanError as e:
        problems = e.problems or [str(e)]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            raise e from None
        plan = _unchecked(Plan, data)
        if not isinstance(plan, Plan) or not all(hasattr(plan, k) for k in ("id", "course", "beams")):
            raise
        return plan, [f"{source}: {p}" for p in problems]
