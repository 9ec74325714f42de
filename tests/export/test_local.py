"""Folder writes: atomic, never overwriting, exact report on failure (real full disk and read-only mounts)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtexport.errors import WriteError
from rtexport.export.local import write_folder
from rtexport.export.objects import ExportObject, ObjectKind


def objs(n: int, size: int = 4096) -> list[ExportObject]:
    return [
        ExportObject.from_bytes(ObjectKind.RTDOSE, bytes([k % 251]) * size, "1.2.3", f"2.25.{k + 1}") for k in range(n)
    ]


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs (the tests run as root, as CI does); unmounted afterwards."""
    point = tmp_path / "mnt"
    point.mkdir()
    yield point
    subprocess.run(["umount", str(point)], check=False, capture_output=True)


def do_mount(point: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)


def test_writes_named_files_and_skips_identical(tmp_path: Path) -> None:
    items = objs(3)
    report = write_folder(items, tmp_path / "out")
    assert sorted(p.name for p in report.written) == sorted(f"RD.2.25.{k}.dcm" for k in (1, 2, 3))
    again = write_folder(items, tmp_path / "out")
    assert again.written == [] and len(again.identical) == 3
    assert not list((tmp_path / "out").glob(".rtexport-*"))


def test_never_overwrites_other_content(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "RD.2.25.2.dcm").write_bytes(b"someone else's file")
    with pytest.raises(WriteError, match=r"1 file\(s\) in .* same name but other content.*Nothing was written"):
        write_folder(objs(3), out)
    assert sorted(p.name for p in out.iterdir()) == ["RD.2.25.2.dcm"]
    assert (out / "RD.2.25.2.dcm").read_bytes() == b"someone else's file"


def test_not_enough_space_refused_before_writing(mount: Path) -> None:
    do_mount(mount, "size=64k")
    with pytest.raises(WriteError, match=r"not enough space .*nothing was written"):
        write_folder(objs(40), mount)
    assert list(mount.iterdir()) == []


def test_disk_full_midway_leaves_the_folder_as_it_was(mount: Path) -> None:
    # Enough bytes but only a few inodes: the disk fills up after some files, as a real full disk does.
    do_mount(mount, "size=4m,nr_inodes=8")  # tmpfs counts hard links too
    (mount / "notes.txt").write_text("kept")
    with pytest.raises(WriteError, match=r"the disk is full\. Nothing was written: the 10 file\(s\)") as info:
        write_folder(objs(10), mount)
    assert info.value.written == []
    assert [p.name for p in mount.iterdir()] == ["notes.txt"]  # no export file, no temporary file
    again = write_folder(objs(3), mount)  # room for three: the same export, smaller, goes through
    assert len(again.written) == 3


def test_files_are_put_in_place_only_once_all_are_on_disk(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    write_folder(objs(4), tmp_path, progress=lambda o: seen.append(sorted(p.name for p in tmp_path.glob("*.dcm"))))
    assert seen == [[], [], [], []]  # progress counts files made durable; none is visible before all are
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(o.filename for o in objs(4))


def test_read_only_folder_says_so_and_writes_nothing(mount: Path) -> None:
    do_mount(mount, "size=1m,ro")
    with pytest.raises(WriteError, match=r"permission denied"):
        write_folder(objs(2), mount / "sub")
    assert list(mount.iterdir()) == []
