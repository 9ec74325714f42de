"""Use cases: one function per thing a user does, shared by the command line and the web page.

A service takes everything it needs as arguments (the workspace, what the user gave, who acts), applies every rule,
writes the audit and owns the transaction; it returns a result object or raises an :mod:`rtexport.errors` error
whose message both front ends show as it is. The CLI and the web handlers only parse, call and render.

- :mod:`~rtexport.services.site`: site check, whether export is available
- :mod:`~rtexport.services.users`: add users (a physicist's consent), authenticate
- :mod:`~rtexport.services.courses`: import a course
- :mod:`~rtexport.services.plans`: load, clone, list plans
- :mod:`~rtexport.services.dose`: compute dose
- :mod:`~rtexport.services.checks`: the independent MU check, dose warnings
- :mod:`~rtexport.services.approval`: authorize export, approve (acknowledging the MU check)
- :mod:`~rtexport.services.report`: make, keep and list plan reports (PDF)
- :mod:`~rtexport.services.views`: what the page and the report show (volume, bolus outlines, DVH)
- :mod:`~rtexport.services.export`: export to a folder or a DICOM server, C-ECHO
- :mod:`~rtexport.services.demo`: the built-in demo
"""
