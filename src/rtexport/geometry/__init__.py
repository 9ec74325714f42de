"""Geometry, computed in one place: IEC 61217 beam frames for every patient position, polygons, structures as
volumes, sampling on axes, axial CT orientations, bolus on the skin, and the setup of every beam of a plan.

Modules import the model (``rtexport.model``) and numpy/scipy, nothing above; the model imports only
:mod:`rtexport.geometry.polygon`. This package file imports no submodule, so that import stays free of cycles.
"""
