"""A folder never shows half an export: a new folder appears with every file at once, even when the export is
killed (kill -9) at any moment; exports of one plan into one folder at the same time all succeed; only the last
folder of the path is created; a symbolic link planted in the folder is never followed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtexport.errors import WriteError
from rtexport.export.local import write_folder
from rtexport.export.objects import ExportObject, ObjectKind

CHILD = """
import json, sys
from pathlib import Path
from rtexport.export.local import write_folder
from rtexport.export.objects import ExportObject, ObjectKind
items = [
    ExportObject(ObjectKind(k), "1.2.3", uid, size, path=Path(p), sha256=h)
    for k, uid, size, p, h in json.loads(Path(sys.argv[1]).read_text())
]
print("ready", flush=True)
report = write_folder(items, Path(sys.argv[2]))
print(json.dumps({"written": len(report.written), "identical": len(report.identical)}))
"""


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


def manifest(tmp_path: Path, items: list[ExportObject]) -> Path:
    path = tmp_path / "items.json"
    path.write_text(json.dumps([[o.kind.value, o.sop_instance_uid, o.size, str(o.path), o.sha256] for o in items]))
    return path


def child(listing: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(listing), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def duration(listing: Path, out: Path) -> float:
    """How long an export takes here and now (the machine may be busy): the span random kills are spread over."""
    p = child(listing, out)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    t0 = time.perf_counter()
    err = p.communicate()[1]
    assert p.returncode == 0, err
    return time.perf_counter() - t0


def kill_at_random(p: subprocess.Popen[str], rng: random.Random, span: float) -> None:
    """Kill the child (SIGKILL) at a random moment of its export: before, during or after it."""
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0.0, 0.5 * span))
    p.send_signal(signal.SIGKILL)
    p.communicate()


def complete(out: Path, items: list[ExportObject]) -> bool:
    """Whether ``out`` holds exactly the export's files, each with its bytes (hidden staging aside)."""
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if names != sorted(o.filename for o in items):
        return False
    return all(hashlib.sha256((out / o.filename).read_bytes()).hexdigest() == o.sha256 for o in items)


def test_a_new_folder_shows_nothing_or_the_whole_export_when_killed_at_any_moment(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", 30, 200_000)
    listing = manifest(tmp_path, items)
    exports = tmp_path / "exports"
    exports.mkdir()
    rng = random.Random(21)
    span = duration(listing, tmp_path / "timing")
    seen = {"nothing": 0, "whole": 0}
    names = [f"out{k}" for k in range(12)]
    for name in names:
        kill_at_random(child(listing, exports / name), rng, span)
        if (exports / name).exists():
            assert complete(exports / name, items), f"{name}: {sorted(q.name for q in (exports / name).iterdir())}"
            seen["whole"] += 1
        else:
            seen["nothing"] += 1
    for name in names:  # a rerun completes and removes what killed exports left
        r = child(listing, exports / name)
        err = r.communicate()[1]
        assert r.returncode == 0, err
        assert complete(exports / name, items)
    assert sorted(q.name for q in exports.iterdir()) == sorted(names)


def test_an_existing_folder_killed_midway_is_completed_by_the_rerun(tmp_path: Path) -> None:
    items = stored(tmp_path / "store", 30, 200_000)
    listing = manifest(tmp_path, items)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    rng = random.Random(4)
    span = duration(listing, tmp_path / "timing")
    for _ in range(4):
        kill_at_random(child(listing, out), rng, span)
        names = [q.name for q in out.iterdir() if not q.name.startswith(".")]
        # what is there is whole (every file is put in place whole) and in order: CT before the plan and dose
        assert all(
            hashlib.sha256((out / o.filename).read_bytes()).hexdigest() == o.sha256
            for o in items
            if o.filename in names
        )
        if any(n.startswith(("RP.", "RD.")) for n in names):
            assert all(o.filename in names for o in items if o.kind is ObjectKind.CT)
    r = child(listing, out)
    err = r.communicate()[1]
    assert r.returncode == 0, err
    assert sorted(q.name for q in out.iterdir()) == sorted(["notes.txt", *(o.filename for o in items)])


@pytest.mark.parametrize("existing", [False, True])
def test_four_exports_into_one_folder_at_once_all_succeed(tmp_path: Path, existing: bool) -> None:
    items = stored(tmp_path / "store", 12, 100_000)
    listing = manifest(tmp_path, items)
    out = tmp_path / "exports" / "out"
    out.parent.mkdir()
    if existing:
        out.mkdir()
    for _ in range(3):
        runs = [child(listing, out) for _ in range(4)]
        outputs = [r.communicate() for r in runs]
        results = [(r.returncode, o, e) for r, (o, e) in zip(runs, outputs, strict=True)]
        assert [rc for rc, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
        counts = sorted((d["written"], d["identical"]) for d in (json.loads(o.splitlines()[-1]) for _, o, _ in results))
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
