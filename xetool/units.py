"""Sizes as people write them: 512MiB, 4G, 1073741824."""

from __future__ import annotations

import re

from xetool.errors import XeError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int, what: str) -> int:
    """Bytes from `512MiB`, `4G`, `1.5GiB` or a plain number of bytes (binary units throughout)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise XeError("INVALID_VALUE", what, text)
        return text
    m = _SIZE.match(str(text))
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        raise XeError("FIELD_TYPE_ERROR", what, text, "a size such as 512MiB, 4GiB or a number of bytes")
    return int(float(m.group(1)) * unit)


def show_size(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
