"""Deterministic UIDs from the site's UID root or the ``2.25.`` UUID form (PS3.5 §9, B.2).

Never pydicom's root, never a suffix on another system's UID: a UID is a hash of (root, key, parts), so the
same plan revision re-exports the same UIDs and any change of key gives new ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence

from rtexport.errors import BuildError

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# Fixed namespace of rtexport's 2.25 UIDs; changing it would change every exported UID.
_NAMESPACE = uuid.UUID("0f3b6c1e-8d2a-5b47-9c1e-2a7d4e6f8b90")
MAX_UID_LENGTH = 64


def is_valid_uid(uid: str) -> bool:
    """Digits and dots, no leading zeros in a component, at most 64 characters."""
    return len(uid) <= MAX_UID_LENGTH and _UID.fullmatch(uid) is not None


def uid_problem(uid: str) -> str | None:
    """Why ``uid`` is not a UID by the PS3.5 §9.1 grammar (components of digits separated by single dots, no
    leading zero in a component other than "0", at most 64 characters), or None when it is one."""
    if not uid:
        return "it is empty"
    if len(uid) > MAX_UID_LENGTH:
        return f"it has {len(uid)} characters (at most {MAX_UID_LENGTH})"
    bad = sorted({c for c in uid if c not in "0123456789."})
    if bad:
        return f"it holds {', '.join(repr(c) for c in bad[:5])} (only digits and dots are allowed)"
    for component in uid.split("."):
        if not component:
            return "it has an empty component (a leading, trailing or doubled dot)"
        if len(component) > 1 and component[0] == "0":
            return f"its component {component!r} has a leading zero"
    return None


class UIDFactory:
    """Makes the UIDs of one export state, named by ``key`` (e.g. ``[plan id, revision token, state]``)."""

    def __init__(self, root: str | None, key: Sequence[str]) -> None:
        if root is not None and (not is_valid_uid(root) or len(root) > 40):
            raise BuildError(
                f"UID root {root!r} is not usable: it must be dotted digits without leading zeros, "
                "at most 40 characters; fix uid_root in site.toml or remove it to use 2.25 UIDs"
            )
        if not key:
            raise BuildError("a UID factory needs a non-empty key (e.g. plan id and revision)")
        self.root = root
        self.key = tuple(str(k) for k in key)

    def _digest(self, parts: tuple[str | int, ...]) -> bytes:
        # JSON keeps the parts apart (["ab","c"] != ["a","bc"]) and 1 apart from "1".
        text = json.dumps({"key": list(self.key), "parts": list(parts)}, ensure_ascii=False)
        return text.encode("utf-8")

    def uid(self, *parts: str | int) -> str:
        """The UID for ``parts`` (e.g. ``"rtplan"``, ``"series"``) in this factory's state."""
        data = self._digest(parts)
        if self.root is None:
            return f"2.25.{uuid.uuid5(_NAMESPACE, data.decode('utf-8')).int}"
        digits = MAX_UID_LENGTH - len(self.root) - 1
        # Exactly `digits` digits with a non-zero first digit: as long as the root allows, no leading zero.
        value = int.from_bytes(hashlib.sha256(data).digest(), "big")
        low = 10 ** (digits - 1)
        return f"{self.root}.{low + value % (9 * low)}"
