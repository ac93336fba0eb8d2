"""The bounds of sizes, counts and text, with where each comes from.

Checked wherever a value enters the pool (the command line, pool-import, the store's writes), so
that a VM that could never start, a size no SR can hold or a name that breaks the record layout
is refused when it is given, not later at vm-start.
"""

from __future__ import annotations

from xetool.errors import XeError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from xetool.datamodel.types import Field

MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40

# xapi refuses to start a VM whose memory-static-max is below this (Xapi_globs.vm_minimum_memory,
# VM_MEMORY_SIZE_TOO_LOW).
VM_MEMORY_MIN = 16 * MiB
# XenServer's configuration limits: RAM per VM 1.5 TiB, 64 vCPUs per VM (the seed-era vmops
# refused 64 and more with VM_TOOMANY_VCPUS; today's documented limit includes 64).
VM_MEMORY_MAX = 1536 * GiB
VCPUS_MAX = 64
# XenServer's virtual disk size limit for file-based (VHD) SRs: 2040 GiB.
VDI_SIZE_MAX = 2040 * GiB
# A host: Xen on x86 without CONFIG_BIGMEM addresses 16 TiB; NR_CPUS is at most 4096.
HOST_MEMORY_MAX = 16 * TiB
HOST_CPUS_MAX = 4096
# SQLite's INTEGER and xapi's int64.
INT64_MAX = (1 << 63) - 1
# Text: a name-label is a line in records and listings; every value must fit one xenstore
# payload (4096 bytes), which is where names and keys end up on the host.
NAME_MAX = 255
TEXT_MAX = 4096

# The fields' bounds, (least, most, what the bound protects): the datamodel declares which field
# has which (datamodel/classes.py, Field.bounds).
VM_STATIC_MAX = (VM_MEMORY_MIN, VM_MEMORY_MAX,
                 "a VM needs 16 MiB to start (VM_MEMORY_SIZE_TOO_LOW) and may have at most 1.5 TiB")
VM_MEMORY = (0, VM_MEMORY_MAX, "a VM may have at most 1.5 TiB")
VM_VCPUS = (1, VCPUS_MAX, "a VM has 1 to 64 vCPUs (VM_NO_VCPUS, VM_TOOMANY_VCPUS)")
START_DELAY = (0, 86400, "at most a day, in seconds")
VDI_SIZE = (1, VDI_SIZE_MAX, "a disk holds 1 byte to 2040 GiB")
HOST_MEMORY = (256 * MiB, HOST_MEMORY_MAX, "a host has 256 MiB to 16 TiB")
DOM0_MEMORY = (0, HOST_MEMORY_MAX, "a host has at most 16 TiB")
HOST_CPUS = (1, HOST_CPUS_MAX, "a host has 1 to 4096 CPUs")
NETWORK_MTU = (68, 9216, "an MTU is 68 to 9216 bytes")
SSH_PORT = (0, 65535, "a TCP port, 1 to 65535 (0: ssh's own choice)")
INT64 = (-INT64_MAX - 1, INT64_MAX, "a 64-bit integer")


def check_int(f: Field, value: int, what: str = "") -> None:
    """VALUE_NOT_SUPPORTED naming the field (or `what` the user wrote) if `value` is outside
    the field's bounds (any integer: SQLite's 64 bits)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return
    lo, hi, why = f.bounds or INT64
    if not lo <= value <= hi:
        raise XeError("VALUE_NOT_SUPPORTED", what or f.cli_name, value, f"must be {lo} to {hi}: {why}")


def check_text(what: str, value: str, *, limit: int = TEXT_MAX, line: bool = False) -> None:
    """No NUL, at most `limit` bytes; a `line` (name-label, name-description) also has no
    newline or other control character, which would break the record layout."""
    if line and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise XeError("VALUE_NOT_SUPPORTED", what, _short(value),
                      "a name is one line: no newline, NUL or other control character")
    if "\0" in value:
        raise XeError("VALUE_NOT_SUPPORTED", what, _short(value), "a value may not contain NUL")
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise XeError("VALUE_NOT_SUPPORTED", what, _short(value), f"at most {limit} bytes")


def check_field(f: Field, value: object) -> None:
    """The bounds of one field's value as it is written to the store."""
    if isinstance(value, int):
        check_int(f, value)
    elif isinstance(value, str) and f.name in NAME_FIELDS:
        check_text(f.cli_name, value, limit=NAME_FIELDS[f.name], line=True)


NAME_FIELDS = {"name_label": NAME_MAX, "name_description": TEXT_MAX}


def _short(value: str) -> str:
    """The value as an error parameter: escaped, and cut when long."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 60 else f"{text[:57]}... ({len(value)} characters)"
