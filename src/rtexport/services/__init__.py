"""Use cases: one function per thing a user does, shared by the command line and the web page.

A service takes everything it needs as arguments (the workspace, what the user gave, who acts), applies every rule,
writes the audit and owns the transaction; it returns a result object or raises an :mod:`rtexport.errors` error
whose message both front ends show as it is. The CLI and the web handlers only parse, call and render; they import
nothing but :mod:`rtexport.services`, :mod:`rtexport.model` and :mod:`rtexport.errors` (import-linter contracts in
``pyproject.toml``, run by ``./check``).

- :mod:`~rtexport.services.workspaces`: open or create a workspace (the handle every service takes)
- :mod:`~rtexport.services.site`: the site read once per use case, its problems, whether export is available
- :mod:`~rtexport.services.users`: add users (a physicist's consent), change roles, authenticate, log in
- :mod:`~rtexport.services.access`: the password throttle shared by every password check
- :mod:`~rtexport.services.courses`: import a course
- :mod:`~rtexport.services.plans`: load, clone, list plans; :mod:`~rtexport.services.revisions`: what a revision
  changed (kept in the audit)
- :mod:`~rtexport.services.editing`: a plan made and changed on the page, through the door of ``plan load``;
  :mod:`~rtexport.services.beamtools`: a beam's setup while edited, a cutout from a target, the energy to use
- :mod:`~rtexport.services.importing`: the import roots' folders, listed and imported from the page
- :mod:`~rtexport.services.dose`: compute dose
- :mod:`~rtexport.services.checks`: the independent MU check, dose warnings
- :mod:`~rtexport.services.approval`: authorize export, approve (acknowledging the MU check)
- :mod:`~rtexport.services.report`: make, keep and list plan reports (PDF)
- :mod:`~rtexport.services.planview`: the one view of a plan the CLI, the page and the report show
- :mod:`~rtexport.services.views`, :mod:`~rtexport.services.pictures`: volume, bolus outlines, slices, DVH
- :mod:`~rtexport.services.building`: the export objects of a plan state (built once, kept)
- :mod:`~rtexport.services.export`: gate, write or send; :mod:`~rtexport.services.targets`: from what the user
  typed, every refusal audited; C-ECHO
- :mod:`~rtexport.services.records`: the audit log and its proof
- :mod:`~rtexport.services.demo`: the built-in demo
"""
