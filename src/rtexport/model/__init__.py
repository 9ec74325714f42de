"""The domain model: site configuration, course, plan and dose. Imports no pydicom."""
