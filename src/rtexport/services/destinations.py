"""Where an export goes: a folder (the site's default, or one the user names; on the web page only below the
site's export roots, opened once without following links), a configured server by name (DICOM or DICOMweb), or a
custom server typed in (AE title, host, port; physicists only on the page unless the site allows everyone)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rtexport.errors import InputError, NotAllowedError, WriteError
from rtexport.export.local import ExportFolder
from rtexport.model.people import User
from rtexport.model.site import Site, TLSConfig, validate_ae_title
from rtexport.net.outcome import WebDestination
from rtexport.net.send import Destination
from rtexport.workspace import Workspace


@dataclass(frozen=True)
class FolderDestination:
    """A local folder (its last part created if missing, its parent never). ``opened``: the folder as it was
    checked (the web page's, inside the export roots), written through that handle however its path changes
    meanwhile; else opened when writing."""

    path: Path
    opened: ExportFolder | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return str(self.path)

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


ExportDestination = FolderDestination | Destination | WebDestination


def default_folder(ws: Workspace, site: Site) -> Path:
    """The site's default export folder (``dicom.export_folder``, relative to the workspace)."""
    return ws.resolve(site.dicom.export_folder).resolve()


def _within_roots(ws: Workspace, site: Site, typed: str) -> FolderDestination:
    """The folder opened below the export root it names, without following any symbolic link below the root:
    checked and opened in one step, and written later through that handle."""
    roots = [ws.resolve(r) for r in site.dicom.export_roots]
    if not roots:
        raise NotAllowedError("the site configuration lists no export_roots: local export from the web page is off")
    allowed = ", ".join(str(r.resolve()) for r in roots)
    target = Path(os.path.normpath(ws.resolve(Path(typed))))
    for root in roots:
        for form in (Path(os.path.normpath(root)), root.resolve()):
            if target != form and form not in target.parents:
                continue
            try:
                opened = ExportFolder.within(form, target.relative_to(form))
            except WriteError as e:
                raise NotAllowedError(
                    f"{typed} is outside the folders the site allows for export ({allowed}): {e}"
                ) from e
            return FolderDestination(root.resolve() / target.relative_to(form), opened)
    raise NotAllowedError(f"{typed} is outside the folders the site allows for export ({allowed})")


@dataclass(frozen=True)
class FolderListing:
    """One folder of the export folder picker: its sub-folders (names), and where "up" leads (``parent``: ""
    for the list of export roots, None at that list itself)."""

    path: str
    parent: str | None
    folders: list[str]


def _handle(dest: FolderDestination) -> ExportFolder:
    if dest.opened is None:
        raise WriteError(f"export folder {dest.path} was not opened")
    return dest.opened


def export_folders(ws: Workspace, site: Site, path: str = "") -> FolderListing:
    """The sub-folders of ``path`` (inside the site's export roots; ``""``: the roots themselves), for the page's
    folder picker. Symbolic links are neither followed nor listed. Raises :class:`NotAllowedError` outside the
    roots, :class:`InputError` for a folder that does not exist."""
    if not path.strip():
        return FolderListing("", None, export_roots(ws, site))
    dest = _within_roots(ws, site, path.strip())
    at_root = str(dest.path) in export_roots(ws, site)
    try:
        if at_root and not dest.path.exists():
            return FolderListing(str(dest.path), "", [])  # a root not made yet: made with its first folder
        if not dest.path.is_dir():
            raise InputError(f"{dest.path} does not exist (yet): choose an existing folder or make a new one")
        fd = _handle(dest).directory()
        try:
            with os.scandir(fd) as found:
                names = sorted((e.name for e in found if e.is_dir(follow_symlinks=False)), key=str.casefold)
        finally:
            os.close(fd)
    finally:
        dest.close()
    return FolderListing(str(dest.path), "" if at_root else str(dest.path.parent), names)


def make_export_folder(ws: Workspace, site: Site, parent: str, name: str) -> str:
    """Make the folder ``name`` in ``parent`` (inside the export roots, without following links); its path."""
    name = name.strip()
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"{name!r} is not a folder name: give one name, without / or \\")
    if not parent.strip():
        raise InputError("open one of the export folders first, then make the new folder inside it")
    dest = _within_roots(ws, site, str(Path(parent.strip()) / name))
    try:
        os.close(_handle(dest).directory())
    finally:
        dest.close()
    return str(dest.path)


def export_roots(ws: Workspace, site: Site) -> list[str]:
    """The folders the site allows the web page to export into, as absolute paths."""
    return [str(ws.resolve(r).resolve()) for r in site.dicom.export_roots]


def custom_servers_allowed(site: Site, user: User) -> bool:
    """Whether ``user`` may send to, or test, a server the site does not list (an AE title, host and port typed
    in): physicists may; others only where ``dicom.allow_custom_servers`` is true."""
    return user.qualified or site.dicom.allow_custom_servers


CUSTOM_FIELDS = {"aet": "AE title", "host": "host", "port": "port"}


def custom_server_missing(aet: str | None, host: str | None, port: int | str | None) -> list[str]:
    """The fields of a custom server left empty (``aet``, ``host``, ``port``), for a form that chose a custom
    server: those must be filled in before anything is tested or sent."""
    given = {"aet": aet, "host": host, "port": port}
    return [k for k, v in given.items() if v is None or not str(v).strip()]


def custom_server_message(missing: list[str]) -> str:
    names = [CUSTOM_FIELDS[k] for k in missing]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"a custom server needs its {listed}: fill in {'that field' if len(names) == 1 else 'those fields'}"


def resolve_destination(
    ws: Workspace,
    site: Site,
    *,
    folder: str | Path | None = None,
    server: str | None = None,
    aet: str | None = None,
    host: str | None = None,
    port: int | str | None = None,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    within_roots: bool = False,
    requester: User | None = None,
) -> ExportDestination:
    """Where an export goes, from what the user gave: a folder (default: the site's), a configured server by name,
    or a custom server (AE title, host and port; ``tls_ca`` verifies it, ``tls_cert`` and ``tls_key`` are ours for
    servers that require a client certificate). ``within_roots``: a folder must lie inside the site's
    ``dicom.export_roots`` and is opened now (the web page: no symbolic link below a root is followed, and a later
    swap cannot redirect the files; the export closes it). ``requester``: the web page's user, who may use a
    custom server only as :func:`custom_servers_allowed` says. Raises :class:`InputError`."""
    aet, host = (aet or "").strip() or None, (host or "").strip() or None
    custom = aet is not None or host is not None or (port is not None and str(port).strip() != "")
    if server and custom:
        raise InputError("give a configured server or a custom server (AE title, host, port), not both")
    if (server or custom) and folder is not None and str(folder).strip():
        raise InputError("give a folder or a server, not both")
    if server:
        found = site.dicom.server(server)
        if found is None:
            known = ", ".join(s.name for s in site.dicom.servers) or "none configured"
            raise InputError(f"no DICOM server {server!r} in the site configuration (servers: {known})")
        if found.kind == "dicomweb":
            password = os.environ.get(found.password_env, "") if found.password_env else ""
            if found.password_env and not password:
                raise InputError(f"server {server!r}: the environment variable {found.password_env} (its password) "
                                 "is not set")  # fmt: skip
            return WebDestination(found.url, found.user, password)
        return Destination.from_server(found)
    if custom:
        if requester is not None and not custom_servers_allowed(site, requester):
            raise NotAllowedError(
                f"{requester.name} is a {requester.role.value}: only a physicist may export to or test a custom "
                "server here; choose a server from the site configuration (or the site sets "
                "dicom.allow_custom_servers = true)"
            )
        if aet is None or host is None or port is None or not str(port).strip():
            raise InputError("a custom server needs an AE title, a host and a port")
        try:
            validate_ae_title(aet)
        except ValueError as e:
            raise InputError(str(e)) from e
        try:
            number = int(str(port).strip())
        except ValueError:
            raise InputError(f"port {port!r} is not a number") from None
        if not 1 <= number <= 65535:
            raise InputError(f"port {number} is outside 1-65535")
        if tls_key is not None and tls_cert is None:
            raise InputError("--tls-key needs --tls-cert (our certificate for servers that ask for one)")
        tls = TLSConfig(ca_file=tls_ca, cert_file=tls_cert, key_file=tls_key) if tls_ca or tls_cert else None
        return Destination(aet, host, number, tls)
    if folder is None or not str(folder).strip():
        if within_roots:
            raise InputError("type the folder to export to")
        return FolderDestination(default_folder(ws, site))
    if within_roots:
        return _within_roots(ws, site, str(folder).strip())
    return FolderDestination(Path(folder))
