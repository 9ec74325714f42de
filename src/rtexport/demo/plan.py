"""The demo plan: a chest-wall-like target 9-37 mm below the skin (the phantom's PTV) treated by two 16 MeV beams
aimed at its centroid with SSD setups (SSD 100 cm to the first surface on the central axis: the bolus for both,
since ANT_OBL's field crosses ANT's bolus too), 1 cm of bolus for the skin dose, cutouts 2 cm beyond the PTV for
the 90 % isodose's constriction at depth, a density override and a changed External. With the demo site's data the
PTV gets V90 100 %, V95 97 %, D95 96 % of the prescription and a maximum near 100 % (rtexport report shows it)."""

DEMO_PLAN_ID = "CW-E1"
DEMO_COURSE_ID = "C1"
DEMO_USERS = {"pat": ("planner", "planner-demo-1"), "phil": ("physicist", "physicist-demo-1")}

DEMO_PLAN = """\
format = 1
id = "CW-E1"
label = "Chestwall e-"
course = "C1"
machine = "DemoLinac"
ct_curve = "Default"
external = "OUTLINE2"
fractions = 25
prescription_gy = 50.0

[[override]]
structure = "Prosthesis"
material = "Water"

[[beam]]
name = "ANT"
energy_mev = 16
applicator = "15x15"
gantry_deg = 0
collimator_deg = 0
couch_deg = 0
target = "PTV"
ssd_mm = 1000
weight = 0.6
cutout_mm = [[-65, -50], [65, -50], [65, 40], [50, 50], [-65, 50]]
bolus = { thickness_mm = 10, margin_mm = 10, material = "Superflab" }

[[beam]]
name = "ANT_OBL"
energy_mev = 16
applicator = "15x15"
gantry_deg = 20
collimator_deg = 0
couch_deg = 0
target = "PTV"
ssd_mm = 1000
weight = 0.4
cutout_mm = [[-65, -50], [65, -50], [65, 50], [-65, 50]]
"""
