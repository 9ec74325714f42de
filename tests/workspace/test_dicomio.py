"""Reading stored CT images back: the pixel values are pydicom's, however they were stored."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from rtexport.workspace.dicomio import stored_pixels


def _stored(values: np.ndarray, *, signed: bool, bits_stored: int | None = None, syntax: str = "") -> Dataset:
    """CT_small.dcm with ``values`` as its pixels, written and read back as the workspace reads a stored file."""
    ds = examples.ct
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = values.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = values.astype(values.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    if syntax == "rle":
        ds.compress(RLELossless, values)
    else:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if syntax == "implicit" else ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=syntax == "implicit")
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


rng = np.random.default_rng(20)


@pytest.mark.parametrize(
    ("values", "signed", "bits_stored", "syntax"),
    [
        (rng.integers(-1024, 3000, (7, 5)).astype(np.int16), True, None, ""),
        (rng.integers(-1024, 3000, (7, 5)).astype(np.int16), True, None, "implicit"),
        (rng.integers(0, 65535, (6, 9)).astype(np.uint16), False, None, ""),
        (rng.integers(0, 255, (4, 4)).astype(np.uint8), False, None, ""),
        (rng.integers(-(2**31), 2**31 - 1, (3, 5)).astype(np.int32), True, None, ""),
        (rng.integers(-2048, 2047, (7, 5)).astype(np.int16), True, 12, ""),  # 12 of 16 bits: through pydicom
        (rng.integers(0, 4095, (8, 6)).astype(np.uint16), False, 12, ""),
        (rng.integers(-1024, 3000, (7, 5)).astype(np.int16), True, None, "rle"),  # compressed: through pydicom
    ],
)
def test_stored_pixels_are_pydicoms_pixel_array(
    values: np.ndarray, signed: bool, bits_stored: int | None, syntax: str
) -> None:
    ds = _stored(values, signed=signed, bits_stored=bits_stored, syntax=syntax)
    got, expected = stored_pixels(ds), ds.pixel_array
    assert got.shape == expected.shape == values.shape
    assert got.dtype.kind == expected.dtype.kind and got.dtype.itemsize == expected.dtype.itemsize
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, values)
