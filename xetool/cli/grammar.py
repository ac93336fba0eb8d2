"""xe's argument grammar, independent of click.

    xetool <command> [key=value ...] [map-key:sub=value ...] [--flag ...]

- `key=value` splits on the first `=`; the value may contain `=` and may be empty.
- `--flag` is `flag=true` (`--force`, `--multiple`, `--minimal`); `--key=value` is `key=value`.
- `map:key=value` (for example `other-config:owner=ops`) keeps `map:key` as the key.
- Comma lists (`params=a,b`) are split by the command, with `\\,` escaping a comma.
- Arguments that are not valid UTF-8 reach Python as surrogate escapes and are refused.

>>> parse(["vm=web01", "--force", "platform:acpi=1", "PV-args=root=/dev/xvda1"]).params
{'vm': 'web01', 'force': 'true', 'platform:acpi': '1', 'PV-args': 'root=/dev/xvda1'}
"""

from __future__ import annotations

import re

from xetool.errors import XeError
from xetool.records import field, record

VALUE_OPTIONS = frozenset({"format", "state-dir"})  # `--format json` as well as `--format=json`
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*(:[^=\s]*)?$")
_SURROGATE = re.compile("[\udc80-\udcff]")


@record
class Args:
    """Parsed arguments: key -> value, in the order given."""

    params: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.params.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.params

    def flag(self, key: str) -> bool:
        """A boolean parameter (`--force` or `force=true`)."""
        from xetool.store.codec import parse_bool

        value = self.params.get(key)
        if value is None:
            return False
        parsed = parse_bool(value)
        if parsed is None:
            raise XeError("FIELD_TYPE_ERROR", key, value, "bool (true or false)")
        return parsed

    def pop(self, key: str, default: str | None = None) -> str | None:
        return self.params.pop(key, default)


def check_utf8(word: str, what: str) -> None:
    if _SURROGATE.search(word):
        shown = word.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise XeError("NOT_UTF8", f"{what} ({shown})")


def parse(words: list[str]) -> Args:
    """Parse the words after the command name."""
    args = Args()
    words = list(words)
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            body = word[2:]
            key, eq, value = body.partition("=")
            if not eq:
                value = words.pop(0) if key in VALUE_OPTIONS and words else "true"
        else:
            key, eq, value = word.partition("=")
            if not eq:
                check_utf8(word, "argument")
                raise XeError("SYNTAX_ERROR", f"'{word}' is not of the form key=value")
        check_utf8(key, "parameter name")
        check_utf8(value, key)
        if not _KEY_RE.match(key):
            raise XeError("SYNTAX_ERROR", f"'{key}' is not a parameter name")
        if key in args.params:
            raise XeError("REPEATED_PARAMETER", key)
        args.params[key] = value
    return args
