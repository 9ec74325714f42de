"""Pictures of a plan, shared by the web page and the plan report: CT slices with structure outlines, isodose
lines and a dose wash (PNG), the cumulative DVH and each cutout in beam's-eye view (SVG)."""
