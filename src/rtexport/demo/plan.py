"""The demo plan: two electron beams aimed at the phantom's anterior PTV with SSD setups (SSD 100 cm to the first
surface on the central axis: the bolus for both, since ANT_OBL's field crosses ANT's bolus too), with a cutout, a
bolus, a density override and a changed External."""

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
energy_mev = 9
applicator = "10x10"
gantry_deg = 0
collimator_deg = 0
couch_deg = 0
target = "PTV"
ssd_mm = 1000
weight = 0.6
cutout_mm = [[-45, -35], [45, -35], [45, 25], [30, 35], [-45, 35]]
bolus = { thickness_mm = 10, margin_mm = 10, material = "Superflab" }

[[beam]]
name = "ANT_OBL"
energy_mev = 12
applicator = "15x15"
gantry_deg = 20
collimator_deg = 0
couch_deg = 0
target = "PTV"
ssd_mm = 1000
weight = 0.4
cutout_mm = [[-50, -40], [50, -40], [50, 40], [-50, 40]]
"""
