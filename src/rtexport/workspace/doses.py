"""Computed dose: per revision, the MU and normalization of each beam (in the database) and the dose arrays (in
the blob store, as ``.npy``). Arrays are opened lazily and memory-mapped: reading a plan's state reads none."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from rtexport.model.dose import DoseGrid, GridGeometry, PlanDose
from rtexport.model.state import StoredBeamDose, StoredDose, StoredGrid
from rtexport.workspace.db import Database
from rtexport.workspace.seals import Seals
from rtexport.workspace.store import BlobStore

_PUTS_AT_ONCE = 8


class DoseRepository:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self._db = db
        self._blobs = blobs
        self._seals = Seals(db)

    def _read(self, digest: str) -> npt.NDArray[np.float32]:
        """A stored dose array, memory-mapped read-only (verified against its hash)."""
        arr: npt.NDArray[np.float32] = np.load(self._blobs.verified_path(digest), mmap_mode="r", allow_pickle=False)
        return arr

    def _put(self, grid: DoseGrid) -> dict[str, Any]:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(grid.gy, dtype=np.float32), allow_pickle=False)
        digest, _ = self._blobs.put(buf.getvalue())  # written and fsynced before any row names it
        g = grid.geometry
        return {
            "sha256": digest,
            "origin_mm": g.origin_mm,
            "spacing_mm": g.spacing_mm,
            "shape": g.shape,
            "frame": grid.frame_of_reference_uid,
        }

    def store_arrays(self, dose: PlanDose, engine: str, inputs: dict[str, str] | None = None) -> dict[str, Any]:
        """Put the dose arrays in the blob store (outside any transaction: blobs are content-addressed, so one that
        no row references is harmless) and return the record :meth:`save` stores. The arrays are written at once, so
        their fsyncs wait together rather than one after another."""
        grids = [dose.plan, *(b.dose for b in dose.beams)]
        with ThreadPoolExecutor(min(len(grids), _PUTS_AT_ONCE), thread_name_prefix="dose-put") as pool:
            plan, *beams = pool.map(self._put, grids)
        return {
            "engine": engine,
            "inputs": {"parts": inputs, "accepted": []},
            "plan": plan,
            "beams": [
                {
                    "name": b.beam_name,
                    "mu_per_fraction": b.mu_per_fraction,
                    "dose_per_fraction_gy": b.dose_per_fraction_gy,
                    "normalization_point_mm": b.normalization_point_mm,
                    "ssd_mm": b.ssd_mm,
                    "surface_entry_mm": b.surface_entry_mm,
                    "normalization_depth_mm": b.normalization_depth_mm,
                    "grid": grid,
                }
                for b, grid in zip(dose.beams, beams, strict=True)
            ],
        }

    def save(self, plan_id: str, revision: int, record: dict[str, Any], computed_at: str) -> None:
        """Store (or replace) the dose of a revision; the caller checks, in the same transaction, that the revision
        may still change."""
        self._db.execute("DELETE FROM doses WHERE plan_id = ? AND revision = ?", (plan_id, revision))
        self._db.execute("INSERT INTO doses VALUES (?,?,?,?)", (plan_id, revision, json.dumps(record), computed_at))
        self._seals.seal("doses", plan_id, revision)

    def accept_inputs(
        self, plan_id: str, revision: int, inputs: dict[str, str], by: str, at: str, changes: list[str]
    ) -> None:
        """Record that ``by`` accepted the dose with the site's current beam data (``inputs``), and what changed."""
        row = self._db.one("SELECT data FROM doses WHERE plan_id = ? AND revision = ?", (plan_id, revision))
        if row is None:
            return
        record = json.loads(row["data"])
        accepted = [*record.get("inputs", {}).get("accepted", []), {"by": by, "at": at, "changes": changes}]
        record["inputs"] = {"parts": inputs, "accepted": accepted}
        self._db.execute(
            "UPDATE doses SET data = ? WHERE plan_id = ? AND revision = ?", (json.dumps(record), plan_id, revision)
        )
        self._seals.seal("doses", plan_id, revision)

    def _grid(self, g: dict[str, Any]) -> StoredGrid:
        geometry = GridGeometry(tuple(g["origin_mm"]), tuple(g["spacing_mm"]), tuple(g["shape"]))
        return StoredGrid(g["sha256"], geometry, g["frame"], self._read)

    def blob_references(self) -> list[tuple[str, str]]:
        """(sha256, what references it) for every stored dose array."""
        refs: list[tuple[str, str]] = []
        for row in self._db.all("SELECT plan_id, revision, data FROM doses ORDER BY plan_id, revision"):
            d = json.loads(row["data"])
            where = f"plan {row['plan_id']} revision {row['revision']}"
            refs.append((d["plan"]["sha256"], f"{where}: plan dose array"))
            refs += [(b["grid"]["sha256"], f"{where}: dose array of beam {b['name']}") for b in d["beams"]]
        return refs

    def get(self, plan_id: str, revision: int) -> StoredDose | None:
        row = self._db.one("SELECT * FROM doses WHERE plan_id = ? AND revision = ?", (plan_id, revision))
        if row is None:
            return None
        d = json.loads(row["data"])
        beams = tuple(
            StoredBeamDose(
                beam_name=b["name"],
                mu_per_fraction=b["mu_per_fraction"],
                dose_per_fraction_gy=b["dose_per_fraction_gy"],
                normalization_point_mm=tuple(b["normalization_point_mm"]),
                grid=self._grid(b["grid"]),
                ssd_mm=b.get("ssd_mm"),
                surface_entry_mm=None if b.get("surface_entry_mm") is None else tuple(b["surface_entry_mm"]),
                normalization_depth_mm=b.get("normalization_depth_mm"),
            )
            for b in d["beams"]
        )
        parts = (d.get("inputs") or {}).get("parts")
        return StoredDose(
            revision,
            datetime.fromisoformat(row["computed_at"]),
            d["engine"],
            beams,
            self._grid(d["plan"]),
            None if parts is None else dict(parts),
        )
