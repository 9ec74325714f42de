"""Real receivers for the export service's network tests (the same fixtures the network tests use)."""

from tests.net.conftest import orthanc, storescp

__all__ = ["orthanc", "storescp"]
