"""Folder writes: atomic, never overwriting, exact report on failure (real full disk and read-only mounts)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rtexport.errors import StoreError, WriteError
from rtexport.export.local import ExportFolder, write_folder
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
    again = write_folder(objs(2), mount)  # room for two (and the staging folder): a smaller export goes through
    assert len(again.written) == 2 and [p.name for p in mount.iterdir() if p.name.startswith(".")] == []


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


# -- verified copies -------------------------------------------------------------------------------------------


def stored_objs(store: Path, n: int, size: int = 300_000) -> list[ExportObject]:
    """``n`` objects kept as files under ``store`` (as the blob store keeps them), each with its stored hash."""
    store.mkdir(exist_ok=True)
    out = []
    for k in range(n):
        data = bytes([k % 251, 7]) * (size // 2)
        path = store / f"blob{k}"
        path.write_bytes(data)
        out.append(
            ExportObject(
                ObjectKind.CT,
                "1.2.3",
                f"2.25.{k + 1}",
                len(data),
                path=path,
                sha256=hashlib.sha256(data).hexdigest(),
                description=f"CT z={k}",
            )
        )
    return out


def test_a_damaged_stored_file_refuses_the_whole_export(tmp_path: Path) -> None:
    items = stored_objs(tmp_path / "store", 5)
    damaged = items[3].path
    assert damaged is not None
    data = bytearray(damaged.read_bytes())
    data[150_000:150_008] = b"\x00" * 8  # 8 bytes changed, the size unchanged
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(StoreError, match=rf"CT\.2\.25\.4\.dcm \(CT z=3\).*{damaged}.*damaged.*Nothing was written"):
        write_folder(items, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no folder, no file, no staging folder


def test_a_missing_stored_file_refuses_the_whole_export(tmp_path: Path) -> None:
    items = stored_objs(tmp_path / "store", 3)
    assert items[0].path is not None
    items[0].path.unlink()
    with pytest.raises(StoreError, match=r"CT\.2\.25\.1\.dcm .*missing"):
        write_folder(items, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_damaged_stored_file_is_not_taken_for_a_conflict_with_an_identical_exported_one(tmp_path: Path) -> None:
    items = stored_objs(tmp_path / "store", 2)
    write_folder(items, tmp_path / "out")
    assert items[1].path is not None
    items[1].path.write_bytes(b"\xff" + items[1].path.read_bytes()[1:])
    with pytest.raises(StoreError, match=r"CT\.2\.25\.2\.dcm .*damaged"):
        write_folder(items, tmp_path / "out")


def test_objects_in_memory_are_checked_against_their_hash_too(tmp_path: Path) -> None:
    good = ExportObject.from_bytes(ObjectKind.RTDOSE, b"x" * 100, "1.2.3", "2.25.9")
    wrong = ExportObject(ObjectKind.RTDOSE, "1.2.3", "2.25.9", 100, data=b"x" * 100, sha256="0" * 64)
    assert write_folder([good], tmp_path / "a").written
    with pytest.raises(StoreError, match=r"RD\.2\.25\.9\.dcm"):
        write_folder([wrong], tmp_path / "b")


# -- modes, stale files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_exported_files_get_the_umasks_mode(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        report = write_folder(stored_objs(tmp_path / "store", 2) + objs(1), tmp_path / "out")
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in report.written} == {mode}


def test_stale_part_files_of_a_killed_export_are_removed_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".rtexport-k1ll3d.part", out / ".rtexport-abc_DEF-9.part"]
    others = [out / "notes.part", out / ".rtexport-settings", out / "rtexport-x.part", out / ".other-1.part"]
    for p in stale + others:
        p.write_bytes(b"half a file")
    report = write_folder(objs(2), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in others), *(o.filename for o in objs(2))])
    assert sorted(report.removed_stale) == sorted(p.name for p in stale)


@contextmanager
def running_export(staging: Path) -> Iterator[None]:
    """A staging folder held as a running export holds its own, while the block runs."""
    staging.mkdir()
    (staging / "RD.2.25.1.dcm").write_bytes(b"being written")
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize("new", [False, True])
def test_staging_of_an_export_still_running_is_left_alone_and_that_of_a_killed_one_removed(
    tmp_path: Path, new: bool
) -> None:
    out = tmp_path / "out"
    where = tmp_path if new else out  # a new folder is staged beside it, an existing one inside it
    if not new:
        out.mkdir()
    running = where / (".out.part-0123456789abcdef" if new else ".rtexport-running.part")
    killed = where / (".out.part-fedcba9876543210" if new else ".rtexport-killed.part")
    killed.mkdir()
    (killed / "CT.2.25.7.dcm").write_bytes(b"half a file")
    with running_export(running):
        report = write_folder(objs(2), out)
    assert report.removed_stale == [killed.name] and not killed.exists()
    assert (running / "RD.2.25.1.dcm").read_bytes() == b"being written"
    assert sorted(p.name for p in out.iterdir() if p != running) == sorted(o.filename for o in objs(2))


# -- file systems without hard links -------------------------------------------------------------------------


def no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    def link(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", link)


def test_without_hard_links_files_are_renamed_into_place_all_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_hard_links(monkeypatch)
    seen: list[list[str]] = []
    out = tmp_path / "out"
    report = write_folder(objs(4), out, progress=lambda o: seen.append(sorted(p.name for p in out.glob("*.dcm"))))
    assert seen == [[], [], [], []]
    assert sorted(p.name for p in out.iterdir()) == sorted(o.filename for o in objs(4))
    assert len(report.written) == 4


def test_without_hard_links_an_existing_name_is_still_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_hard_links(monkeypatch)
    out = tmp_path / "out"
    first = write_folder(objs(2), out)
    assert len(first.written) == 2
    (out / "RD.2.25.3.dcm").write_bytes(b"someone else's file")
    with pytest.raises(WriteError, match=r"same name but other content"):
        write_folder(objs(3), out)
    assert (out / "RD.2.25.3.dcm").read_bytes() == b"someone else's file"


@pytest.fixture
def exfat(tmp_path: Path) -> Iterator[Path]:
    """A real exFAT file system (no hard links), mounted through FUSE on a loop device; unmounted afterwards."""
    for program in ("mkfs.exfat", "mount.exfat-fuse"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: apt-get install exfat-fuse exfatprogs (see .ci/run)")
    image = tmp_path / "exfat.img"
    with image.open("wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.exfat", str(image)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True)
    device = loop.stdout.strip()
    point = tmp_path / "exfat"
    point.mkdir()
    try:
        subprocess.run(["mount.exfat-fuse", device, str(point)], check=True, capture_output=True)
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)


@pytest.mark.integration
def test_an_export_to_exfat_writes_every_file(exfat: Path, tmp_path: Path) -> None:
    with pytest.raises(OSError):  # the reason for the fallback: exFAT has no hard links
        (exfat / "a").write_bytes(b"a")
        os.link(exfat / "a", exfat / "b")
    (exfat / "a").unlink()
    items = stored_objs(tmp_path / "store", 3) + objs(2)
    report = write_folder(items, exfat / "export")
    assert sorted(p.name for p in (exfat / "export").iterdir()) == sorted(o.filename for o in items)
    for o in items:
        assert (exfat / "export" / o.filename).read_bytes() == (o.path.read_bytes() if o.path else o.data)
    assert len(report.written) == 5
    again = write_folder(items, exfat / "export")
    assert again.written == [] and len(again.identical) == 5


# -- a folder opened once ------------------------------------------------------------------------------------


def test_a_folder_opened_once_is_written_even_if_a_symlink_replaces_it_later(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "today").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = ExportFolder.within(root, Path("today/sub"))  # checked and opened now
    os.rename(root / "today", root / "today-moved")  # then swapped before the export writes
    os.symlink(outside, root / "today")
    with folder:
        write_folder(objs(2), folder)
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (root / "today-moved" / "sub").iterdir()) == sorted(o.filename for o in objs(2))


@pytest.mark.parametrize("typed", ["../outside", "link/sub", "link", "a/../../outside", "/etc"])
def test_a_folder_below_a_root_never_leaves_it(tmp_path: Path, typed: str) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    with pytest.raises(WriteError, match=r"outside|symbolic link"):
        ExportFolder.within(root, Path(typed))


def test_a_symlink_planted_where_the_export_creates_a_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    folder = ExportFolder.within(root, Path("new"))  # does not exist yet: created when writing
    os.symlink(tmp_path / "outside", root / "new")
    with folder, pytest.raises(WriteError, match=r"symbolic link"):
        write_folder(objs(1), folder)
    assert list((tmp_path / "outside").iterdir()) == []
    assert [p.name for p in root.iterdir()] == ["new"]  # no staging folder left either


# -- names built only from valid UIDs ------------------------------------------------------------------------


def everything_under(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


@pytest.mark.parametrize("uid", ["1.2.3/../../../outside/pwned", "1.2.3/../../outside/pwned", "..", "1.2.3\0", ""])
def test_a_hostile_uid_that_reached_the_store_is_refused_before_anything_is_written(tmp_path: Path, uid: str) -> None:
    (tmp_path / "outside").mkdir()
    out = tmp_path / "exports" / "out"
    (out / "CT.1.2.3").mkdir(parents=True)  # as in the report: the folder holds a sub-folder the name climbs from
    items = [*stored_objs(tmp_path / "store", 2), *objs(1)]
    before = everything_under(tmp_path)
    bad = ExportObject(ObjectKind.CT, "1.2.840.10008.5.1.4.1.1.2", uid, 5, data=b"pwned", description="CT z=7")
    with pytest.raises(
        WriteError, match=r"SOP Instance UID .* \(CT z=7\) is not a valid DICOM UID.*nothing was written"
    ):
        write_folder([*items, bad], out)
    assert everything_under(tmp_path) == before  # nothing in the folder, its parents or anywhere else under them
