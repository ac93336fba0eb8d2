"""The vocabulary of the datamodel: field kinds, qualifiers, fields and classes.

A field is declared once, with its kind, qualifier, default and a line of doc; the SQLite schema,
the generated param commands, the record printer's markers, JSON output, the man page and
completion all read these declarations.
"""

from __future__ import annotations

from enum import Enum

from xetool.records import field, record

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from typing import Any


class Kind(Enum):
    STR = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"  # ISO 8601, UTC
    ENUM = "enum"
    REF = "ref"  # the uuid of another object, or None
    SET = "set"  # of strings (or enum values, or refs)
    MAP = "map"  # string -> string


class Qualifier(Enum):
    RW = "RW"  # settable with <class>-param-set
    RO = "RO"  # set when the object is made, by xetool's own commands only (xapi StaticRO)
    DRO = "DRO"  # kept by xetool as things happen (xapi DynamicRO)


@record(frozen=True)
class Field:
    name: str  # the attribute and column name, xapi's spelling: name_label, VCPUs_max
    kind: Kind
    qualifier: Qualifier
    doc: str
    default: Any = None
    cli: str = ""  # the CLI name; derived from `name` unless xe spells it otherwise
    values: tuple[str, ...] = ()  # ENUM (and SET of enums): the allowed values
    ref: str = ""  # REF (and SET of refs): the class referred to
    derived_from: tuple[str, str] | None = None  # SET of refs kept as a foreign key elsewhere
    hidden: bool = False  # left out of -list and -param-list, readable with -param-get
    # A field read from the object that refers to this one: (class, its ref to us, its field),
    # as xe shows VM.start-time from the VM's metrics.
    via: tuple[str, str, str] | None = None
    computed: str = ""  # "module:function(txn, row)" computing the value when it is read
    expensive: bool = False  # xe prints `<expensive field>` for it in -list (param-list/-get compute it)
    bounds: tuple[int, int, str] | None = None  # INT: (least, most, what the bound protects); limits.py

    @property
    def cli_name(self) -> str:
        return self.cli or self.name.replace("_", "-")

    @property
    def persisted(self) -> bool:
        return self.derived_from is None and self.via is None and not self.computed

    @property
    def on_demand(self) -> bool:
        """Read only when asked for by name (never part of a whole-record read)."""
        return self.via is not None or bool(self.computed)

    @property
    def settable(self) -> bool:
        return self.qualifier is Qualifier.RW

    @property
    def marker(self) -> str:
        """xe's record marker: ( RO), ( RW), (SRO), (SRW), (MRO), (MRW)."""
        rw = "RW" if self.settable else "RO"
        prefix = {Kind.SET: "S", Kind.MAP: "M"}.get(self.kind, " ")
        return f"({prefix}{rw})"

    def initial(self) -> Any:
        """A fresh default value (sets and maps get their own container)."""
        if self.kind is Kind.SET:
            return list(self.default or ())
        if self.kind is Kind.MAP:
            return dict(self.default or {})
        return self.default


@record(frozen=True)
class ClassSpec:
    name: str  # xapi's class name, lower case on the CLI: vm, host, vbd
    doc: str
    fields: tuple[Field, ...]
    list_params: tuple[str, ...] = ("uuid", "name_label")  # default <class>-list columns
    list_filter: tuple[tuple[str, Any], ...] = ()  # default filters of <class>-list
    by_name: Field | None = field(default=None, compare=False)
    _index: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in self.fields:
            self._index[f.name] = f
            self._index[f.cli_name] = f

    def field(self, name: str) -> Field | None:
        """Look a field up by attribute name or CLI name."""
        return self._index.get(name)

    def field_named(self, name: str) -> Field:
        """A field the code itself names, so the class has it (a KeyError would be a bug)."""
        return self._index[name]

    @property
    def table(self) -> str:
        return self.name

    @property
    def persisted_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.persisted)

    @property
    def has_name_label(self) -> bool:
        return "name_label" in self._index
