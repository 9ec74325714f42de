"""The site's optional [checks] table: defaults when absent, each value checked when given."""

from __future__ import annotations

from rtexport.demo.beamdata import demo_site
from rtexport.model.site import Site, site_problems


def test_checks_default_when_the_site_does_not_set_them() -> None:
    checks = Site.model_validate(demo_site()).checks
    assert checks.mu_check_action_level_pct == 5.0
    assert checks.max_dose_warning_pct == 10.0
    assert checks.mu_per_fraction_min < checks.mu_per_fraction_max


def test_bad_checks_are_named_by_their_key() -> None:
    data = demo_site()
    data["checks"] = {"mu_check_action_level_pct": 0, "mu_per_fraction_min": 900.0, "mu_per_fraction_max": 100.0}
    _, problems = site_problems(data)
    assert "checks.mu_check_action_level_pct: Input should be greater than 0" in problems
    data["checks"] = {"mu_per_fraction_min": 900.0, "mu_per_fraction_max": 100.0}
    _, problems = site_problems(data)
    assert problems == ["checks: mu_per_fraction_min must be less than mu_per_fraction_max"]
