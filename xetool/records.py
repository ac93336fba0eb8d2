"""`record`: the part of `dataclasses` that xetool uses, without its start-up cost.

A command line defines some fifty record classes on its way (datamodel, registry, placement,
steps, devices). On these machines importing `dataclasses` costs about 30 ms (it pulls in
inspect, ast, dis and tokenize) and each class about 1 ms more (several generated methods
compiled, and an `inspect.signature` for classes without a docstring): a fifth of a vm-start.
A record compiles one method, its `__init__`, so that building a 20,000-VM snapshot stays as
quick as with dataclasses; equality, hashing and repr are shared functions over the fields.

The semantics are those of dataclasses for what is used here: defaults, `field(default_factory=,
compare=, repr=, hash=)`, `frozen=True`, `__post_init__`, eq always, a hash for frozen records
(and none for mutable ones), fields inherited from record bases, `replace` and `asdict`; and
dataclasses' refusals: a mutable default (list, dict, set) and a field without a default after
one with a default. Type checkers see `record` as dataclasses (PEP 681's dataclass_transform),
which costs nothing at run time.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing is a cost this module exists to avoid
if TYPE_CHECKING:
    import sys
    from collections.abc import Callable
    from typing import Any, TypeVar

    if sys.version_info >= (3, 11):
        from typing import dataclass_transform
    else:
        from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_: object) -> object:
        return lambda decorator: decorator

_MISSING: Any = object()


class FrozenInstanceError(AttributeError):
    """An assignment to a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory", "compare", "repr", "hash")

    def __init__(self, default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True,
                 repr: bool = True, hash: bool | None = None) -> None:
        self.name = ""
        self.default, self.default_factory = default, default_factory
        self.compare, self.repr = compare, repr
        self.hash = compare if hash is None else hash


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] = _MISSING, compare: bool = True,
          repr: bool = True, hash: bool | None = None) -> Any:
    return Field(default, default_factory, compare, repr, hash)


@dataclass_transform(field_specifiers=(field, Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Class decorator: `@record` or `@record(frozen=True)`."""
    def wrap(cls: type[T]) -> type[T]:
        return _build(cls, frozen)

    return wrap if cls is None else wrap(cls)


def fields(obj: Any) -> tuple[Field, ...]:
    return tuple(obj.__record_fields__)


def replace(obj: T, **changes: Any) -> T:
    values = {f.name: changes.pop(f.name, getattr(obj, f.name)) for f in fields(obj)}
    if changes:
        raise TypeError(f"{type(obj).__name__} has no field {', '.join(changes)}")
    return type(obj)(**values)


def asdict(obj: Any) -> dict[str, Any]:
    """A record as a dict, recursively through records, lists, tuples and dicts (other leaves as
    they are)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in obj.__record_fields__}


def _plain(value: Any) -> Any:
    if hasattr(type(value), "__record_fields__"):
        return asdict(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(cls: type[T], frozen: bool) -> type[T]:
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):  # as dataclasses: the nearest base's field wins
        for spec in base.__dict__.get("__record_fields__", ()):
            inherited[spec.name] = spec
    declared: dict[str, Field] = {}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        if isinstance(spec.default, (list, dict, set)):
            raise ValueError(f"mutable default {type(spec.default)} for field {name} of {cls.__qualname__} "
                             "is not allowed: use default_factory")
        if isinstance(value, Field):  # the class attribute is the default, as in dataclasses
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        declared[name] = spec
    specs = list({**inherited, **declared}.values())
    defaulted = ""
    for spec in specs:
        if spec.default is not _MISSING or spec.default_factory is not _MISSING:
            defaulted = spec.name
        elif defaulted:
            raise TypeError(f"non-default argument {spec.name!r} follows default argument {defaulted!r} "
                            f"in {cls.__qualname__}")
    setattr(cls, "__record_fields__", tuple(specs))
    setattr(cls, "__match_args__", tuple(f.name for f in specs))
    own = cls.__dict__
    # a method the class writes itself is kept, as dataclasses keep it (a class body that defines
    # __eq__ gets __hash__ = None from Python: that one is not the class's own)
    class_hash = own.get("__hash__", _MISSING)
    explicit_hash = not (class_hash is _MISSING or (class_hash is None and "__eq__" in own))
    methods: dict[str, Any] = {"__init__": _make_init(cls, specs, frozen), "__eq__": _eq, "__repr__": _repr}
    if frozen:
        methods.update(__setattr__=_frozen_setattr, __delattr__=_frozen_setattr)
    for name, method in methods.items():
        if name not in own:
            setattr(cls, name, method)
    if not explicit_hash:  # frozen: hashed by value; mutable: unhashable, being compared by value
        setattr(cls, "__hash__", _hash if frozen else None)
    return cls


def _make_init(cls: type, specs: list[Field], frozen: bool) -> Callable[..., None]:
    """One compiled `__init__`: the per-instance cost matters (snapshots of 20,000 VMs)."""
    params, body = ["self"], []
    env: dict[str, Any] = {"_MISSING": _MISSING, "_set": object.__setattr__}
    for f in specs:
        if f.default_factory is not _MISSING:
            env[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            body.append(f"if {f.name} is _MISSING: {f.name} = _factory_{f.name}()")
        elif f.default is not _MISSING:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        body.append(f"_set(self, {f.name!r}, {f.name})" if frozen else f"self.{f.name} = {f.name}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = f"def __init__({', '.join(params)}):\n    " + "\n    ".join(body or ["pass"]) + "\n"
    exec(source, env)
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _compared(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in obj.__record_fields__ if f.compare)


def _eq(self: Any, other: Any) -> object:  # the __eq__ protocol: a bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, f.name) for f in self.__record_fields__ if f.hash))


def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.__record_fields__ if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(self: Any, name: str, *value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")
