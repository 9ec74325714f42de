"""UIDs: deterministic, valid, from the site root or 2.25, distinct for distinct keys."""

from __future__ import annotations

import pytest

from rtexport.dicom.uids import UIDFactory, is_valid_uid
from rtexport.errors import BuildError


def test_same_key_and_parts_give_the_same_uid() -> None:
    assert UIDFactory(None, ["P1", "r1"]).uid("RTPLAN") == UIDFactory(None, ["P1", "r1"]).uid("RTPLAN")


def test_key_parts_are_kept_apart() -> None:
    assert UIDFactory(None, ["ab", "c"]).uid("x") != UIDFactory(None, ["a", "bc"]).uid("x")
    assert UIDFactory(None, ["a"]).uid("b", "c") != UIDFactory(None, ["a", "b"]).uid("c")
    assert UIDFactory(None, ["a"]).uid(1) != UIDFactory(None, ["a"]).uid("1")


@pytest.mark.parametrize("root", [None, "1.2.826.0.1.3680043.10.999", "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.160"])
def test_uids_are_valid_and_use_the_root(root: str | None) -> None:
    factory = UIDFactory(root, ["P1", "rev", "APPROVED"])
    uids = {factory.uid(kind, n) for kind in ("RTSTRUCT", "RTPLAN", "RTDOSE") for n in range(200)}
    assert len(uids) == 600
    assert all(is_valid_uid(u) for u in uids)
    assert all(u.startswith((root or "2.25") + ".") for u in uids)
    assert not any(u.startswith("1.2.826.0.1.3680043.8.498") for u in uids)  # pydicom's root


def test_a_different_key_gives_different_uids() -> None:
    a, b = UIDFactory(None, ["P1", "rev1"]), UIDFactory(None, ["P1", "rev2"])
    assert {a.uid("RTPLAN"), a.uid("RTPLAN", "series")}.isdisjoint({b.uid("RTPLAN"), b.uid("RTPLAN", "series")})


@pytest.mark.parametrize("uid", ["1.02.3", "1..2", "1.2.", "a.b", "1." + "1" * 63])
def test_invalid_uids_are_recognized(uid: str) -> None:
    assert not is_valid_uid(uid)


def test_a_bad_root_is_refused() -> None:
    with pytest.raises(BuildError, match=r"UID root '1\.02'"):
        UIDFactory("1.02", ["P1"])
