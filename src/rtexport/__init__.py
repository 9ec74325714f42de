"""rtexport: DICOM export for electron radiotherapy planning."""

__version__ = "0.1.0"
