"""The XenStore wire format (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt).

Every message is a 16-byte header of four native-endian uint32 (type, req_id, tx_id, len)
followed by `len` bytes of payload, at most XENSTORE_PAYLOAD_MAX in either direction.
"""

from __future__ import annotations

import re
import struct
from enum import IntEnum


class XsdSockmsgType(IntEnum):
    """`enum xsd_sockmsg_type`."""

    XS_CONTROL = 0  # alias XS_DEBUG
    XS_DIRECTORY = 1
    XS_READ = 2
    XS_GET_PERMS = 3
    XS_WATCH = 4
    XS_UNWATCH = 5
    XS_TRANSACTION_START = 6
    XS_TRANSACTION_END = 7
    XS_INTRODUCE = 8
    XS_RELEASE = 9
    XS_GET_DOMAIN_PATH = 10
    XS_WRITE = 11
    XS_MKDIR = 12
    XS_RM = 13
    XS_SET_PERMS = 14
    XS_WATCH_EVENT = 15
    XS_ERROR = 16
    XS_IS_DOMAIN_INTRODUCED = 17
    XS_RESUME = 18
    XS_SET_TARGET = 19
    XS_RESTRICT = 20  # removed from the protocol; 20 is invalid
    XS_RESET_WATCHES = 21
    XS_DIRECTORY_PART = 22
    XS_GET_FEATURE = 23
    XS_SET_FEATURE = 24
    XS_GET_QUOTA = 25
    XS_SET_QUOTA = 26
    XS_INVALID = 0xFFFF


Op = XsdSockmsgType

# `xsd_errors[]`: the only names a server may send (EQUOTA is oxenstored's, not the protocol's).
XSD_ERRORS: tuple[str, ...] = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)

XENSTORE_PAYLOAD_MAX = 4096
XENSTORE_ABS_PATH_MAX = 3072
XENSTORE_REL_PATH_MAX = 2048
XENSTORE_SERVER_FEATURE_RECONNECTION = 1
XENSTORE_SERVER_FEATURE_ERROR = 2
XENSTORE_SERVER_FEATURE_WATCHDEPTH = 4

HEADER = struct.Struct("=IIII")
HEADER_SIZE = HEADER.size  # 16

SPECIAL_PATHS = ("@introduceDomain", "@releaseDomain")

OK = b"OK\0"


class XenbusState(IntEnum):
    """`enum xenbus_state` (xen/include/public/io/xenbus.h)."""

    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6
    Reconfiguring = 7
    Reconfigured = 8


class XsError(Exception):
    """A protocol-level error, carried as its xs_wire name (EINVAL, ENOENT, ...)."""

    def __init__(self, name: str, detail: str = "") -> None:
        assert name in XSD_ERRORS, name
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail


def pack(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload


def unpack_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int, int, int]:
    return HEADER.unpack_from(buf, offset)


def error_payload(name: str) -> bytes:
    return name.encode() + b"\0"


_VALID = re.compile(r"[A-Za-z0-9\-/_@]+")


def validate_path(path: str, *, special_ok: bool = False) -> None:
    """C xenstored's `is_valid_nodename` rules, raising EINVAL. A relative path is checked
    against the relative limit; `@` is only allowed as the special watch paths."""
    if not path:
        raise XsError("EINVAL", "empty path")
    if path.startswith("@"):
        if not special_ok:
            raise XsError("EINVAL", f"special path {path!r} not allowed here")
        base, _, rest = path.partition("/")
        if base not in SPECIAL_PATHS or (rest and not rest.isdigit()):
            raise XsError("EINVAL", f"unknown special path {path!r}")
        return
    if path.startswith("/"):
        if len(path) > XENSTORE_ABS_PATH_MAX:
            raise XsError("EINVAL", "path too long")
    elif len(path) > XENSTORE_REL_PATH_MAX:
        raise XsError("EINVAL", "relative path too long")
    if _VALID.fullmatch(path) is None or "@" in path:
        raise XsError("EINVAL", f"forbidden character in {path[:64]!r}")
    if "//" in path or (path.endswith("/") and path != "/"):
        raise XsError("EINVAL", f"malformed path {path[:64]!r}")


def split_args(payload: bytes, count: int | None = None) -> list[bytes]:
    """Split a request's NUL-terminated strings. With `count`, the first `count - 1` strings
    must end with NUL and the last one takes the rest (WRITE's value, which has none)."""
    if count is None:
        if not payload.endswith(b"\0"):
            raise XsError("EINVAL", "payload does not end with NUL")
        return payload[:-1].split(b"\0")
    parts = payload.split(b"\0", count - 1)
    if len(parts) != count:
        raise XsError("EINVAL", f"expected {count} arguments")
    return parts


def decode(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise XsError("EINVAL", "non-ASCII path") from None
