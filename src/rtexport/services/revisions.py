"""What changed between two revisions of a plan, in the plan file's own keys (``beam[1].gantry_deg: 0 → 20``):
the audit keeps it with every new revision, whether it came from ``plan load`` or from the page."""

from __future__ import annotations

from typing import Any

from rtexport.model.plan import Plan


def _flatten(value: Any, key: str, out: dict[str, Any]) -> None:
    if isinstance(value, list) and not value:
        return  # an empty list says what an absent key says
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{key}.{k}" if key else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{key}[{i}]", out)
    else:
        out[key] = value


def _keys(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # a revision stored before a stricter rule is read unvalidated: its raw values, without serializer warnings
    _flatten(plan.model_dump(by_alias=True, exclude_none=True, mode="json", warnings=False), "", out)
    return out


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} points"
    return str(value)


def plan_changes(old: Plan, new: Plan) -> list[str]:
    """Each key whose value differs between ``old`` and ``new`` (added, removed or changed), in the new file's
    order, then the removed ones."""
    before, after = _keys(old), _keys(new)
    changes: list[str] = []
    for key, value in after.items():
        if key not in before:
            changes.append(f"{key}: (none) → {_shown(value)}")
        elif before[key] != value:
            changes.append(f"{key}: {_shown(before[key])} → {_shown(value)}")
    changes += [f"{key}: {_shown(value)} → (none)" for key, value in before.items() if key not in after]
    return changes
