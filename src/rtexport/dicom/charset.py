"""Specific Character Set (0008,0005), PS3.3 C.12.1.1.2: the character set an object we build is written in.

The first single-byte set that holds all of the object's text, ISO_IR 100 (Latin-1) first, else UTF-8 (ISO_IR 192).
In a single-byte set a character is one byte, so a value within its VR's length in characters (as PS3.5 counts it,
:mod:`rtexport.model.text`) is within it in bytes too, as readers that count bytes (dciodvfy among them) expect.
Only sets without code extensions are used, each one pydicom and dicom3tools know.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

UTF8 = "ISO_IR 192"
SINGLE_BYTE = (
    "ISO_IR 100",  # Latin-1: Western Europe
    "ISO_IR 101",  # Latin-2: Central and Eastern Europe
    "ISO_IR 109",  # Latin-3
    "ISO_IR 110",  # Latin-4
    "ISO_IR 148",  # Latin-5: Turkish
    "ISO_IR 126",  # Greek
    "ISO_IR 144",  # Cyrillic
    "ISO_IR 127",  # Arabic
    "ISO_IR 138",  # Hebrew
    "ISO_IR 166",  # Thai
)
# Value Representations whose text the Specific Character Set applies to (PS3.5 6.1.2.3).
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "PN", "UC", "UT"})


def holds(term: str, text: str) -> bool:
    """Whether the character set ``term`` can write ``text``."""
    try:
        text.encode(python_encoding[term])
    except UnicodeEncodeError:
        return False
    return True


def character_set(texts: Iterable[str]) -> str:
    """The defined term of the first single-byte set that holds every text, else ISO_IR 192."""
    wanted = "".join(sorted(set("".join(texts))))
    return next((term for term in SINGLE_BYTE if holds(term, wanted)), UTF8)


def dataset_text(ds: Dataset) -> Iterator[str]:
    """Every text value of ``ds`` (nested sequences included), as decoded text."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from dataset_text(item)
        elif elem.VR in TEXT_VRS and elem.value is not None:
            values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
            yield from (str(v) for v in values)


def apply_character_set(ds: Dataset) -> str:
    """Declare the character set ``ds``'s text is written in (:func:`character_set`); returns its defined term."""
    term = character_set(dataset_text(ds))
    ds.SpecificCharacterSet = term
    return term
