"""A folder never shows half an export: a new folder appears with every file at once, even when the export is
killed (kill -9) in any phase of it (staging, making the files durable, the rename); exports of one plan into one
folder at the same time all succeed; only the last folder of the path is created; a symbolic link planted in the
folder is never followed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rtexport.errors import WriteError
from rtexport.export.local import staging, write, write_folder
from rtexport.export.objects import ExportObject, ObjectKind

# The export children are forked from the test process; from Python 3.12 a fork while other threads exist (pytest-xdist
# keeps some) warns, and the child here only writes files and leaves with os._exit, taking no lock those threads hold.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def stored(store: Path, n: int, size: int) -> list[ExportObject]:
    """``n`` stored files of ``size`` bytes (CT first, then a plan and a dose), as the blob store keeps them."""
    store.mkdir()
    rng = random.Random(n)
    out = []
    for k in range(n):
        data = rng.randbytes(size)
        (store / f"blob{k}").write_bytes(data)
        kind = ObjectKind.CT if k < n - 2 else (ObjectKind.RTPLAN if k == n - 2 else ObjectKind.RTDOSE)
        out.append(
            ExportObject(
                kind, "1.2.3", f"2.25.{k + 1}", size, path=store / f"blob{k}", sha256=hashlib.sha256(data).hexdigest()
            )
        )
    return out


@dataclass
class Child:
    """An export in a process of its own (a fork of this one): its process id and the pipe it reports on."""

    pid: int
    pipe: int

    def communicate(self) -> tuple[int, str]:
        """Its exit code (minus the signal that ended it) and what it reported: a JSON line per folder, or why
        it failed."""
        with os.fdopen(self.pipe, "rb") as f:
            said = f.read().decode()
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1]), said


def _kill_before(kill: str) -> None:
    """'NAME:K': this process kills itself (SIGKILL, as kill -9 would) just before the K-th call of NAME."""
    name, k = kill.split(":")
    owner: Any = {"copy_into": staging, "make_durable": staging, "rename_noreplace": write}.get(name, os)
    real, calls = getattr(owner, name), [0]

    def hooked(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == int(k):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(owner, name, hooked)


def child(items: list[ExportObject], *out: Path, kill: str = "-") -> Child:
    """A process exporting into each of ``out`` in turn; ``kill`` 'NAME:K' kills it (SIGKILL) just before the K-th
    call of NAME: copy_into (staging a file), make_durable (syncing one), fsync, link (putting a
    file into an existing folder), rename_noreplace (renaming a new folder into place)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return Child(pid, r)
    code = 1  # the child: never returns into the test, leaves without the test process's clean-up
    try:
        os.close(r)
        if kill != "-":
            _kill_before(kill)
        for folder in out:
            report = write_folder(items, folder)
            said = {"written": len(report.written), "identical": len(report.identical)}
            os.write(w, (json.dumps(said) + "\n").encode())
        code = 0
    except BaseException:
        os.write(w, traceback.format_exc().encode())
    finally:
        os._exit(code)


def killed(items: list[ExportObject], out: Path, kill: str) -> None:
    rc, said = child(items, out, kill=kill).communicate()
    assert rc == -signal.SIGKILL, f"{kill}: not killed ({rc}): {said}"


def rerun(items: list[ExportObject], *out: Path) -> None:
    rc, said = child(items, *out).communicate()
    assert rc == 0, said


def complete(out: Path, items: list[ExportObject]) -> bool:
    """Whether ``out`` holds exactly the export's files, each with its bytes (hidden staging aside)."""
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if names != sorted(o.filename for o in items):
        return False
    return all(hashlib.sha256((out / o.filename).read_bytes()).hexdigest() == o.sha256 for o in items)


N = 12  # files per export: 10 CT, a plan, a dose
# Kill moments of an export into a new folder, one in each of its phases, and what the folder then shows:
# staging (copying and hashing each file, then syncing each), syncing the staging folder, the rename, syncing
# the parent.
NEW_FOLDER_KILLS = {
    "copy_into:1": "nothing",  # staging folder made, nothing copied
    f"copy_into:{N // 2}": "nothing",  # half the files staged
    "make_durable:1": "nothing",  # every file copied and proven, none durable
    f"fsync:{N // 2}": "nothing",  # half the files durable
    f"fsync:{N + 1}": "nothing",  # the staging folder being made durable
    "rename_noreplace:1": "nothing",  # everything durable, not yet renamed into place
    f"fsync:{N + 2}": "whole",  # renamed into place, the parent not yet synced
}


def test_a_new_folder_shows_nothing_or_the_whole_export_when_killed_at_any_moment(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", N, 50_000)
    exports = tmp_path / "exports"
    exports.mkdir()
    names = [f"out{k}" for k in range(len(NEW_FOLDER_KILLS))]
    for name, (kill, shows) in zip(names, NEW_FOLDER_KILLS.items(), strict=True):
        killed(items, exports / name, kill)
        if (exports / name).exists():
            assert complete(exports / name, items), f"{kill}: {sorted(q.name for q in (exports / name).iterdir())}"
            seen = "whole"
        else:
            seen = "nothing"
        assert seen == shows, kill
    rerun(items, *(exports / name for name in names))  # a rerun completes and removes what killed exports left
    for name in names:
        assert complete(exports / name, items)
    assert sorted(q.name for q in exports.iterdir()) == sorted(names)


def test_an_existing_folder_killed_midway_is_completed_by_the_rerun(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", N, 50_000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    # while staging, while syncing, before the plan is linked in (CT all in place), between the plan and the dose
    kills = {"copy_into:6": 0, "fsync:6": 0, f"fsync:{N + 1}": 0, f"link:{N - 1}": N - 2, "link:2": N - 1}
    for kill, placed in kills.items():
        killed(items, out, kill)
        names = [q.name for q in out.iterdir() if not q.name.startswith(".")]
        # what is there is whole (every file is put in place whole) and in order: CT before the plan and dose
        assert all(
            hashlib.sha256((out / o.filename).read_bytes()).hexdigest() == o.sha256
            for o in items
            if o.filename in names
        )
        if any(n.startswith(("RP.", "RD.")) for n in names):
            assert all(o.filename in names for o in items if o.kind is ObjectKind.CT)
        assert sorted(names) == sorted(["notes.txt", *(o.filename for o in items[:placed])]), kill
    rerun(items, out)
    assert sorted(q.name for q in out.iterdir()) == sorted(["notes.txt", *(o.filename for o in items)])


@pytest.mark.parametrize("existing", [False, True])
def test_four_exports_into_one_folder_at_once_all_succeed(tmp_path: Path, existing: bool) -> None:
    items = stored(tmp_path / "store", 12, 100_000)
    out = tmp_path / "exports" / "out"
    out.parent.mkdir()
    if existing:
        out.mkdir()
    for _ in range(3):
        runs = [child(items, out) for _ in range(4)]
        results = [r.communicate() for r in runs]
        assert [rc for rc, _ in results] == [0, 0, 0, 0], [said for _, said in results]
        counts = sorted((d["written"], d["identical"]) for d in (json.loads(said) for _, said in results))
        assert sum(w for w, _ in counts) == len(items)  # every file written once, the others found it identical
        assert complete(out, items)
        assert sorted(q.name for q in out.parent.iterdir()) == ["out"]
        assert not [q for q in out.iterdir() if q.name.startswith(".")]
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
        if existing:
            out.mkdir()


def test_only_the_last_folder_is_created(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", 3, 1000)
    with pytest.raises(WriteError, match=r"parent folder .*nonexistent/dir does not exist.*Nothing was written"):
        write_folder(items, tmp_path / "nonexistent" / "dir" / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    report = write_folder(items, tmp_path / "x")
    assert report.created and complete(tmp_path / "x", items)


def test_a_new_folder_appears_only_when_every_file_is_in_it(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", 5, 1000)
    out = tmp_path / "out"
    seen: list[bool] = []
    write_folder(items, out, progress=lambda o: seen.append(out.exists()))
    assert seen == [False] * 5 and complete(out, items)


def test_a_symbolic_link_planted_in_the_folder_is_never_followed(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", 3, 1000)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / items[1].filename)
    with pytest.raises(WriteError, match=r"same name but other content.*Nothing was written"):
        write_folder(items, out)
    assert victim.read_text() == "precious" and (out / items[1].filename).is_symlink()
    assert sorted(p.name for p in out.iterdir()) == [items[1].filename]
