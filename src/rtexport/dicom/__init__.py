"""DICOM builders: RT Structure Set, RT Plan and RT Dose from the domain model (PS3.3 A.19, A.20, A.18).

Builders are pure: model and an explicit :class:`~rtexport.dicom.common.BuildContext` (clock, UIDs) in, a
pydicom ``Dataset`` out. The same context gives byte-identical files.
"""
