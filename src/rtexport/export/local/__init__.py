"""Writing exported files to a folder: verified, all files or none, never overwriting a different file, never
outside the folder.

The folder is opened once (:class:`ExportFolder`) and every later operation goes through that directory handle
(``dir_fd``) without following a symbolic link; file names are built only from UIDs checked by the UID grammar.
Every stored file is hashed as it is copied and compared with the hash it was stored under before anything is
put in place. A new folder is filled in a hidden staging folder beside it and renamed into place at once; into
an existing folder, files are staged in a hidden folder inside it and linked into place while the export holds
the folder's lock (renamed where the file system has no hard links). Files get the mode the umask gives.
"""

from rtexport.export.local.folder import ExportFolder
from rtexport.export.local.staging import STAGING_THREADS, STALE_WITHOUT_LOCKS_S
from rtexport.export.local.survey import PlanIdentity
from rtexport.export.local.write import WriteReport, write_folder

__all__ = ["STAGING_THREADS", "STALE_WITHOUT_LOCKS_S", "ExportFolder", "PlanIdentity", "WriteReport", "write_folder"]
