"""The `file` SR driver: a directory of sparse raw disk files, one per VDI.

The directory is the PBD's device-config:path (every host of this machine sees the same one).
"""

from __future__ import annotations

import os
from pathlib import Path

from xetool.errors import XeError


def vdi_path(sr_path: str, location: str) -> Path:
    return Path(sr_path) / location


def create(sr_uuid: str, sr_path: str, vdi_uuid: str, size: int) -> str:
    """Make the sparse file; return its location (the file name)."""
    location = f"{vdi_uuid}.raw"
    made_dir = not os.path.isdir(sr_path)
    path = vdi_path(sr_path, location)
    try:
        Path(sr_path).mkdir(parents=True, exist_ok=True, mode=0o700)
        # A guest's disk: owner-only whatever the umask (O_CREAT's mode is masked by it).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as f:
            try:
                os.fchmod(fd, 0o600)
                f.truncate(size)
            except BaseException:  # nothing is left behind: not the file, not a directory made for it
                path.unlink()
                if made_dir:
                    os.rmdir(sr_path)
                raise
    except (OSError, OverflowError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise XeError("SR_BACKEND_FAILURE", sr_uuid, f"cannot create {location}: {reason}") from None
    return location


def destroy(sr_uuid: str, sr_path: str, location: str) -> None:
    try:
        os.unlink(vdi_path(sr_path, location))
    except FileNotFoundError:
        pass
    except OSError as err:
        raise XeError("SR_BACKEND_FAILURE", sr_uuid, f"cannot remove {location}: {err.strerror}") from None


def attach(sr_uuid: str, sr_path: str, vdi_uuid: str, location: str) -> Path:
    """The file a backend should open; VDI_MISSING if it is gone."""
    path = vdi_path(sr_path, location)
    if not path.is_file():
        raise XeError("VDI_MISSING", sr_uuid, vdi_uuid)
    return path


def utilisation(sr_path: str, location: str) -> int:
    try:
        return os.stat(vdi_path(sr_path, location)).st_blocks * 512
    except OSError:
        return 0
