"""xetool.records behaves as dataclasses do for what xetool uses of them."""

from __future__ import annotations

import dataclasses

import pytest

from xetool import records
from xetool.records import field, record


def _pair(frozen: bool):
    """The same class built by dataclasses and by records."""
    def body(ns):
        ns["__annotations__"] = {"name": "str", "size": "int", "tags": "list[str]", "note": "str"}
        ns["size"] = 0
        return ns

    made = []
    for deco, fld in ((dataclasses.dataclass(frozen=frozen), dataclasses.field), (record(frozen=frozen), field)):
        ns = body({"__module__": __name__, "__qualname__": "Disk"})
        ns["tags"] = fld(default_factory=list)
        ns["note"] = fld(default="", compare=False)
        made.append(deco(type("Disk", (), ns)))
    return made


@pytest.mark.parametrize("frozen", [False, True])
def test_same_behaviour_as_dataclasses(frozen):
    dc, rc = _pair(frozen)
    for cls in (dc, rc):
        a, b = cls("xvda"), cls("xvda", note="other")
        assert (a.name, a.size, a.tags, a.note) == ("xvda", 0, [], "")
        assert a == b  # note= is not compared
        assert a != cls("xvdb") and a.__eq__(object()) is NotImplemented
        assert cls("x").tags is not cls("x").tags  # a fresh default per instance
        assert cls.__match_args__ == ("name", "size", "tags", "note")
        with pytest.raises(TypeError):
            cls()  # name is required
    assert repr(rc("xvda", 2)) == repr(dc("xvda", 2)).replace("test_same_behaviour_as_dataclasses.<locals>.", "")
    if frozen:
        with pytest.raises(AttributeError):
            rc("x").name = "y"
        assert rc.__hash__ is not None
    else:
        assert rc.__hash__ is None  # compared by value and mutable: unhashable, as dataclasses make it


def test_hash_follows_compared_fields():
    @record(frozen=True)
    class Mark:
        vm: str
        task: str = field(default="", compare=False)

    assert hash(Mark("a", "t1")) == hash(Mark("a", "t2")) and {Mark("a"), Mark("a", "x")} == {Mark("a")}


def test_post_init_replace_asdict():
    @record(frozen=True)
    class Leaf:
        n: int

    @record
    class Tree:
        leaves: list
        count: int = 0

        def __post_init__(self) -> None:
            self.count = len(self.leaves)

    t = Tree([Leaf(1), Leaf(2)])
    assert t.count == 2
    assert records.asdict(t) == {"leaves": [{"n": 1}, {"n": 2}], "count": 2}
    assert records.replace(Leaf(1), n=5) == Leaf(5)
    with pytest.raises(TypeError, match="no field"):
        records.replace(Leaf(1), m=5)


def test_explicit_methods_are_kept():
    @record(frozen=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __hash__(self) -> int:
            return 7

    assert repr(Named("a")) == "<a>" and hash(Named("a")) == 7


@pytest.mark.parametrize("deco,fld", [(dataclasses.dataclass, dataclasses.field), (record, field)])
def test_refuses_what_dataclasses_refuse(deco, fld):
    for mutable in ([], {}, set()):
        with pytest.raises(ValueError, match="mutable default"):
            deco(type("Bad", (), {"__annotations__": {"x": "list"}, "x": mutable, "__module__": __name__}))
    with pytest.raises(ValueError, match="mutable default"):
        deco(type("Bad", (), {"__annotations__": {"x": "list"}, "x": fld(default=[]), "__module__": __name__}))
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        deco(type("Bad", (), {"__annotations__": {"a": "int", "b": "int"}, "a": 1, "__module__": __name__}))


@pytest.mark.parametrize("deco", [dataclasses.dataclass, record])
def test_fields_are_inherited_as_dataclasses_inherit_them(deco):
    @deco
    class Base:
        name: str
        size: int = 1

    @deco
    class Disk(Base):
        size: int = 2  # overridden: keeps its place, takes the new default
        mode: str = "RW"

    d = Disk("xvda")
    assert (d.name, d.size, d.mode) == ("xvda", 2, "RW")
    assert Disk.__match_args__ == ("name", "size", "mode")
    assert Disk("a", 3, "RO") == Disk("a", 3, "RO") != Disk("a", 3, "RW")
    with pytest.raises(TypeError):
        deco(type("Late", (Base,), {"__annotations__": {"late": "int"}, "__module__": __name__}))
