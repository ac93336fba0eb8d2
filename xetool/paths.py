"""Where xetool keeps its state (DESIGN.md, "State").

The state directory is resolved as a string: a read command's whole path (context, store) works
on strings, since pathlib costs a command about 8 ms of start-up (it imports urllib.parse).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from pathlib import Path

HOSTS = "hosts"  # <state>/hosts/<host uuid>/: a host's runtime files
HOSTD_PID = "hostd.pid"  # a simulated host's pid file, in its host directory


def state_dir_name(explicit: str | os.PathLike[str] | None = None) -> str:
    """`--state-dir`, else $XETOOL_STATE_DIR, else /var/lib/xetool for root and
    $XDG_STATE_HOME/xetool (default ~/.local/state/xetool) for everyone else."""
    if explicit:
        return os.fspath(explicit)
    env = os.environ.get("XETOOL_STATE_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/lib/xetool"
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "xetool")


def host_dir(state: Path, host_uuid: str) -> Path:
    """Per-host runtime files: the simulated host's sockets, locks, leases."""
    return state / HOSTS / host_uuid


def ensure_state_dir(state: str, create: bool) -> bool:
    """Check that only this user can change the state directory; make it (0700) if `create`.
    Return whether it exists now. Like ssh's StrictModes: a directory that another user owns or
    can write to could have its pool, sockets or disk images swapped under us."""
    from xetool.errors import XeError

    try:
        st = os.stat(state)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.makedirs(state, mode=0o700, exist_ok=True)
            st = os.stat(state)
        except OSError as err:
            raise state_dir_error(state, err) from None
    except OSError as err:
        raise state_dir_error(state, err) from None
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise XeError("STATE_DIR_NOT_WRITABLE", state, "not a directory")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise XeError("STATE_DIR_UNSAFE", state, f"it is owned by uid {st.st_uid}, and xetool runs as uid {uid}",
                      f"chown {uid} {state} (or run xetool as its owner)")
    if st.st_mode & 0o022:
        raise XeError("STATE_DIR_UNSAFE", state, f"its mode {stat.S_IMODE(st.st_mode):04o} lets others write to it",
                      f"chmod go-w {state}")
    return True


def state_dir_error(state: str, err: OSError) -> Exception:
    """An OSError on the state directory as a registry error: a read-only file system and a
    permission problem are different fixes, so they are different errors."""
    import errno

    from xetool.errors import XeError

    if err.errno == errno.EROFS or (err.errno in (errno.EACCES, errno.EPERM) and on_read_only_fs(state)):
        return XeError("STATE_DIR_READ_ONLY", state, errno.errorcode.get(err.errno or 0, "EROFS"))
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return XeError("STORE_DISK_FULL", state, errno.errorcode[err.errno])
    return XeError("STATE_DIR_NOT_WRITABLE", state, err.strerror or str(err))


def no_space_left(path: str) -> bool:
    """True if the file system holding `path` has no block left for us: SQLite reports some
    writes that fail for want of space (its shared-memory file, a WAL frame) as I/O errors."""
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
    except OSError:
        return False
    return st.f_bavail == 0 or st.f_favail == 0


def on_read_only_fs(path: str) -> bool:
    """True if `path` (or its nearest existing parent) is on a file system mounted read-only."""
    while path:
        try:
            return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        except FileNotFoundError:
            parent = os.path.dirname(path.rstrip("/"))
            if parent == path:
                return False
            path = parent
        except OSError:
            return False
    return False


def write_atomic(path: str | os.PathLike[str], text: str, mode: int | None = 0o600) -> None:
    """Write a whole file or nothing: a same-directory temporary file (of `mode` whatever the
    umask; None: as the umask makes it), then rename. On any failure the temporary file is removed and the error raised, so
    a full disk leaves neither a half-written file nor a stray temporary one."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask; an old file keeps its own
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


SUN_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes; keep a margin


def socket_dir(directory: Path, room: int, limit: int = SUN_PATH_MAX) -> Path:
    """`directory`, unless a socket name of `room` bytes there would pass a Unix socket address's
    limit (107 exactly for a name known to the byte; a margin below it by default): then a short
    per-user directory under /tmp named after it (every process computes the same name). Make it
    with make_private_dirs: /tmp is everyone's."""
    from pathlib import Path  # its callers have it loaded already

    directory = Path(directory).absolute()
    if len(os.fsencode(directory)) + 1 + room <= limit:
        return directory
    import hashlib  # only here: a host process's start-up time counts

    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    return Path(os.environ.get("TMPDIR") or "/tmp") / f"xetool-{os.getuid()}" / digest


def private_dir(path: str) -> None:
    """Refuse a socket directory that another user owns or can write to: whoever can, could put
    their own socket in place of the host's and answer for it."""
    from xetool.errors import XeError

    st = os.stat(path)
    uid = os.geteuid()
    if st.st_uid != uid or st.st_mode & 0o022:
        raise XeError("STATE_DIR_UNSAFE", path,
                      f"owned by uid {st.st_uid} with mode {st.st_mode & 0o7777:04o}; it must be uid {uid}'s, 0700",
                      f"remove {path} (xetool makes it again)")


def socket_dirs_private(socket_path: str) -> None:
    """When a host's sockets live in the short /tmp/xetool-UID/<digest> (socket_dir), both
    directories must be private_dir: /tmp is everyone's. In the state directory they are covered
    by its own check (paths.ensure_state_dir)."""
    d = os.path.dirname(socket_path) or "."
    parent = os.path.dirname(d)
    if os.path.basename(parent).startswith("xetool-"):
        private_dir(parent)
        private_dir(d)


def make_private_dirs(path: Path) -> None:
    """A socket directory (and the short /tmp/xetool-UID above it, if used), 0700 under the
    umask, and refused if another user owns it or can write to it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket_dirs_private(str(path / "control.sock"))
