"""The [dicom] settings of site.toml for the network: servers of both kinds, the receiver, the send deadline;
every problem named with its key."""

from __future__ import annotations

from typing import Any

import pytest

from rtexport.demo.beamdata import demo_site
from rtexport.model.site import site_problems


def _problems(change: dict[str, Any]) -> list[str]:
    site = demo_site()
    site["dicom"].update(change)
    _, problems = site_problems(site)
    return problems


def test_defaults_and_a_complete_network_configuration_are_accepted() -> None:
    site = demo_site()
    site["dicom"].update(
        servers=[
            {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104,
             "tls": {"ca_file": "ca.pem", "cert_file": "me.pem", "key_file": "me.key"}},
            {"name": "web", "kind": "dicomweb", "url": "https://pacs/dicom-web", "user": "u", "password_env": "PW"},
        ],
        receiver={"ae_title": "RTX", "port": 11112, "bind": "0.0.0.0", "allowed_ae_titles": ["CT1"],
                  "allowed_hosts": ["10.0.0.0/24"]},
        send_idle_s=120, send_deadline_s=1800, send_associations=2,
    )  # fmt: skip
    parsed, problems = site_problems(site)
    assert problems == [] and parsed is not None
    assert parsed.dicom.send_associations == 2
    assert parsed.dicom.receiver is not None and parsed.dicom.receiver.max_associations == 8
    assert parsed.dicom.send_idle_s == 120 and demo_site()["dicom"].get("send_idle_s") is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"servers": [{"name": "a", "host": "h", "port": 104}]}, "dicom.servers[0]: a DICOM server needs ae_title"),
        ({"servers": [{"name": "w", "kind": "dicomweb", "url": "pacs/dicom-web"}]},
         "dicom.servers[0]: a DICOMweb server needs url = 'http(s)://host:port/path'"),
        ({"servers": [{"name": "w", "kind": "dicomweb", "url": "http://p/dicom-web", "port": 80}]},
         "dicom.servers[0]: ae_title, port and tls are for kind = 'dimse'"),
        ({"servers": [{"name": "w", "kind": "dicomweb", "url": "http://p", "password_env": "A B"}]},
         "dicom.servers[0]: password_env 'A B' is not an environment variable name"),
        ({"receiver": {"ae_title": "R", "bind": "everywhere"}}, "dicom.receiver.bind: 'everywhere' is not an IP"),
        ({"receiver": {"allowed_hosts": ["10.0.0.0/33"]}}, "dicom.receiver.allowed_hosts: '10.0.0.0/33' is not an"),
        ({"receiver": {"allowed_ae_titles": ["WAY_TOO_LONG_AE_TITLE"]}}, "dicom.receiver.allowed_ae_titles: AE title"),
        ({"receiver": {"tls": {"ca_file": "ca.pem"}}}, "dicom.receiver.tls.cert_file: Field required"),
        ({"receiver": {"tls": {"cert_file": "r.pem", "key_file": "r.key", "server_hostname": "pacs"}}},
         "dicom.receiver.tls.server_hostname: Extra inputs are not permitted"),
        ({"receiver": {"port": 0}}, "dicom.receiver.port: Input should be greater than or equal to 1"),
        ({"send_idle_s": 0}, "dicom.send_idle_s: Input should be greater than 0"),
        ({"send_deadline_s": "long"}, "dicom.send_deadline_s: Input should be a valid number"),
        ({"send_associations": 0}, "dicom.send_associations: Input should be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_each_problem_is_named_with_its_key(change: dict[str, Any], expected: str) -> None:
    problems = _problems(change)
    assert any(p.startswith(expected) for p in problems), problems
