"""Sizes as people write them: 512MiB, 4G, 1.5GiB, 1073741824.

Units are binary throughout: K/KiB = 2^10, M/MiB = 2^20, G/GiB = 2^30, T/TiB = 2^40 bytes, and a
bare number is bytes. xe reads `MB` as MiB too, while most disk tools read it as 10^6: the
decimal-looking spellings (kB, MB, GB, TB) are refused rather than guessed. Values are checked
against the limits in `xetool.limits` by the callers that know which field they fill.
"""

from __future__ import annotations

import re

from xetool.errors import XeError

_UNITS = {"": 0, "b": 0, "bytes": 0, "k": 10, "kib": 10, "m": 20, "mib": 20, "g": 30, "gib": 30, "t": 40, "tib": 40}
_AMBIGUOUS = {"kb": "KiB", "mb": "MiB", "gb": "GiB", "tb": "TiB"}
_SIZE = re.compile(r"^\s*(\d{1,30})(?:\.(\d{1,30}))?\s*([a-zA-Z]*)\s*$")
EXPECTED = "a size in bytes or with a binary unit: 512MiB, 4GiB (K, M, G, T are KiB, MiB, GiB, TiB)"


def parse_size(text: str | int, what: str) -> int:
    """Bytes from `512MiB`, `4G`, `1.5GiB` or a plain number of bytes; a whole number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise XeError("INVALID_VALUE", what, text)
        return text
    m = _SIZE.match(str(text))
    if m is None:
        raise XeError("FIELD_TYPE_ERROR", what, text, EXPECTED)
    unit = m.group(3).lower()
    if unit in _AMBIGUOUS:
        raise XeError("FIELD_TYPE_ERROR", what, text,
                      f"an unambiguous unit: {m.group(3)} may mean 10^n or 2^n bytes; write {_AMBIGUOUS[unit]}")
    shift = _UNITS.get(unit)
    if shift is None:
        raise XeError("FIELD_TYPE_ERROR", what, text, EXPECTED)
    whole, frac = m.group(1), m.group(2) or ""
    numerator = int(whole + frac) << shift  # exact: no float rounding, no overflow
    denominator: int = 10 ** len(frac)
    if numerator % denominator:
        raise XeError("FIELD_TYPE_ERROR", what, text, "a whole number of bytes")
    return numerator // denominator


def show_size(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


SECONDS_MAX = 86400.0  # a bounded wait of more than a day is a mistake, not a plan


def parse_seconds(text: str, what: str) -> float:
    """A number of seconds for a bounded wait (timeout=, wait=): 0 to a day."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise XeError("FIELD_TYPE_ERROR", what, text, "seconds (a number >= 0)")
    if seconds > SECONDS_MAX:
        raise XeError("VALUE_NOT_SUPPORTED", what, text, f"must be 0 to {SECONDS_MAX:g}: at most a day, in seconds")
    return seconds
