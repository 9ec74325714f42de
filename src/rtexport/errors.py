"""The exception hierarchy.

::

    RTExportError                 every error rtexport raises on purpose
    ├── ConfigError               site.toml or the workspace is wrong
    ├── InputError                what the user gave (a destination, items, a name) cannot be used
    │   └── NotAllowedError       ... nor is it the user's to give (outside the export roots, a custom server)
    ├── CourseImportError         a CT series / RT Structure Set cannot be imported
    ├── PlanError                 a plan file is invalid or cannot be applied
    ├── AuthError                 unknown user, wrong password, missing role
    │   ├── PasswordError         unknown user or wrong password (what throttling counts)
    │   └── ThrottledError        too many failed passwords: refused without checking it
    ├── DoseError                 dose cannot be computed
    ├── GateError                 export refused; carries every finding
    ├── BuildError                a DICOM object cannot be built from the model
    ├── WriteError                files could not be written; says which were
    ├── SendError                 C-STORE / C-ECHO failed
    ├── BusyError                 the workspace database stayed locked by another command
    └── StoreError                a stored file is missing or no longer has the bytes it was stored with
        └── IntegrityError        a stored row no longer matches the seal rtexport wrote for it

Messages say what was wrong, where, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence


class RTExportError(Exception):
    """Base of every error rtexport raises on purpose."""


class ConfigError(RTExportError):
    """The site configuration or the workspace is unusable."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class InputError(RTExportError):
    """What the user gave on the command line or in a form cannot be used; nothing was done."""


class NotAllowedError(InputError):
    """What the user gave is not theirs to give here: a folder outside the site's export roots, a custom server
    for a user the site does not let choose one."""


class CourseImportError(RTExportError):
    """A course could not be imported; nothing was stored."""


class PlanError(RTExportError):
    """A plan file is invalid, or does not fit the site or course."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class AuthError(RTExportError):
    """Unknown user, wrong password or insufficient role."""


class PasswordError(AuthError):
    """Unknown user or wrong password: the refusals that password throttling counts."""


class ThrottledError(AuthError):
    """Too many failed passwords for the user or from the client: the attempt was refused unchecked."""


class DoseError(RTExportError):
    """Dose could not be computed."""


class GateError(RTExportError):
    """Export refused; ``findings`` lists every reason at once."""

    def __init__(self, findings: Sequence[str]) -> None:
        self.findings = list(findings)
        super().__init__("export refused:\n" + "\n".join(f"  - {f}" for f in self.findings))


class BuildError(RTExportError):
    """A DICOM object could not be built from the model."""


class WriteError(RTExportError):
    """Writing to a folder failed; ``written`` lists the files completed before the failure."""

    def __init__(self, message: str, written: Sequence[str] = ()) -> None:
        self.written = list(written)
        super().__init__(message)


class SendError(RTExportError):
    """A DICOM network operation failed."""


class BusyError(RTExportError):
    """The workspace database stayed locked by another command longer than the bounded wait; nothing changed."""


class StoreError(RTExportError):
    """A stored file is missing or damaged (its bytes no longer hash to its name)."""


class IntegrityError(StoreError):
    """A row a decision rests on (plan file, dose, user, approval, authorization) was changed behind rtexport's
    back: it no longer matches the seal rtexport wrote into the audit log. ``findings`` names each row."""

    def __init__(self, message: str, findings: Sequence[str]) -> None:
        self.findings = list(findings)
        super().__init__(message + "\n" + "\n".join(f"  - {f}" for f in self.findings))
