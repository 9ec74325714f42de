"""Names and times as people read them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rtexport.model.display import local_time, person


@pytest.mark.parametrize(
    ("pn", "shown"),
    [
        ("Curie^Marie", "Marie Curie"),
        ("Physicist^Phil", "Phil Physicist"),
        ("van Gogh^Vincent^Willem", "Vincent Willem van Gogh"),
        ("Doe^John^^Dr.^Jr.", "Dr. John Doe, Jr."),
        ("Yamada^Tarou=山田^太郎", "Tarou Yamada"),
        ("Phantom", "Phantom"),
        ("phil", "phil"),
    ],
)
def test_person_names_are_written_as_people_write_them(pn: str, shown: str) -> None:
    assert person(pn) == shown


def test_times_are_shown_in_local_time_with_the_zone() -> None:  # TZ=Europe/Berlin (conftest)
    assert local_time(datetime(2026, 3, 1, 9, 0, tzinfo=UTC)) == "2026-03-01 10:00 CET"
    assert local_time(datetime(2026, 7, 1, 9, 0, tzinfo=UTC)) == "2026-07-01 11:00 CEST"
