"""The service's files are its system user's alone: files 0600, folders 0700.

Every service command (``serve``, ``api``, ``worker``, ``db upgrade``, ``users``) sets the umask
to 077 before it creates anything, so the SQLite database and its journals, the embedded broker,
uploads, adapters, images, checkpoints and logs are born private, in this process and in every
process it starts (the umask is inherited). The top level of an existing data directory, which
may predate this rule, is tightened at start too. API and workers must therefore run as the same
system user (docs/service.md, "Files and permissions").
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private(data_dir: Path) -> None:
    """Set this process's umask to 077 and tighten ``data_dir`` and its entries (when it exists)."""
    os.umask(PRIVATE_UMASK)
    if data_dir.is_dir():
        for path in (data_dir, *data_dir.iterdir()):
            _tighten(path)


def _tighten(path: Path) -> None:
    """chmod a folder to 0700 and a file to 0600 (links are left alone)."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            return
        wanted = DIR_MODE if stat.S_ISDIR(mode) else FILE_MODE
        if stat.S_IMODE(mode) != wanted:
            path.chmod(wanted)
    except OSError as error:  # not ours (another user's folder): say so, do not fail the command
        log.warning("cannot make %s private: %s", path, type(error).__name__)
