"""The pure tree: transactions, watches, permissions, quotas (no sockets)."""

from __future__ import annotations

import pytest

from xetool.xenstore.tree import DOM0, Caller, Quotas, Tree, parse_perms
from xetool.xenstore.wire import XsError, validate_path


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def deliver(self, path: str, token: str) -> None:
        self.events.append((path, token))


def err(fn, *args) -> str:
    with pytest.raises(XsError) as e:
        fn(*args)
    return e.value.name


@pytest.fixture
def tree() -> Tree:
    return Tree()


def watch(tree: Tree, path: str, token: str = "t", depth: int | None = None, caller: Caller = DOM0,
          given: str | None = None) -> Recorder:
    r = Recorder()
    w = tree.watch(r, caller, given or path, path, token, depth)
    tree.initial_event(w)
    return r


# --- basic nodes ---------------------------------------------------------------------------------

def test_write_creates_parents_with_empty_values(tree: Tree) -> None:
    tree.write(DOM0, "/a/b/c", b"v")
    assert tree.read(DOM0, "/a/b/c") == b"v"
    assert tree.read(DOM0, "/a/b") == b""
    assert tree.directory(DOM0, "/a")[0] == ["b"]


def test_empty_value_and_mkdir_noop(tree: Tree) -> None:
    tree.write(DOM0, "/a", b"")
    assert tree.read(DOM0, "/a") == b""
    tree.write(DOM0, "/a", b"x")
    tree.mkdir(DOM0, "/a")
    assert tree.read(DOM0, "/a") == b"x"


def test_rm_rules(tree: Tree) -> None:
    tree.write(DOM0, "/a/b", b"1")
    tree.rm(DOM0, "/a/missing")  # parent exists: fine
    assert err(tree.rm, DOM0, "/nope/x") == "ENOENT"
    assert err(tree.rm, DOM0, "/") == "EINVAL"
    tree.rm(DOM0, "/a")
    assert not tree.exists("/a") and not tree.exists("/a/b")
    assert err(tree.read, DOM0, "/a/b") == "ENOENT"


def test_initial_store(tree: Tree) -> None:
    assert tree.directory(DOM0, "/")[0] == ["tool"]
    assert tree.get_perms(DOM0, "/") == (("n", 0),)


@pytest.mark.parametrize("path", ["", "a//b", "/a/", "/a b", "/a\x00", "/é", "@other", "/x/@y", "/" + "a" * 3072, "a" * 2049])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(XsError) as e:
        validate_path(path, special_ok=True)
    assert e.value.name == "EINVAL"


def test_special_paths_only_where_allowed() -> None:
    validate_path("@releaseDomain", special_ok=True)
    validate_path("@releaseDomain/7", special_ok=True)
    with pytest.raises(XsError):
        validate_path("@releaseDomain")


# --- transactions --------------------------------------------------------------------------------

def test_transaction_sees_private_copy_and_commits(tree: Tree) -> None:
    tree.write(DOM0, "/a", b"1")
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/a", b"2", tx)
    tree.write(DOM0, "/new/x", b"3", tx)
    assert tree.read(DOM0, "/a", tx) == b"2"
    assert tree.read(DOM0, "/a") == b"1"
    assert not tree.exists("/new")
    tree.transaction_end(tx, commit=True)
    assert tree.read(DOM0, "/a") == b"2" and tree.read(DOM0, "/new/x") == b"3"


def test_abort_discards(tree: Tree) -> None:
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/a", b"1", tx)
    tree.transaction_end(tx, commit=False)
    assert not tree.exists("/a")


def test_conflict_only_on_what_was_read(tree: Tree) -> None:
    tree.write(DOM0, "/a", b"1")
    tree.write(DOM0, "/b", b"1")
    # T read /a; /a changes outside: EAGAIN
    tx = tree.transaction_start(DOM0)
    tree.read(DOM0, "/a", tx)
    tree.write(DOM0, "/c", b"x", tx)
    tree.write(DOM0, "/a", b"2")
    assert err(tree.transaction_end, tx, True) == "EAGAIN"
    assert not tree.exists("/c")
    # T only wrote /b; /b changes outside: the last writer (T) wins, no conflict
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/b", b"T", tx)
    tree.write(DOM0, "/b", b"outside")
    tree.transaction_end(tx, True)
    assert tree.read(DOM0, "/b") == b"T"


def test_conflict_on_absent_node_created(tree: Tree) -> None:
    tx = tree.transaction_start(DOM0)
    assert err(tree.read, DOM0, "/late", tx) == "ENOENT"
    tree.write(DOM0, "/late", b"1")
    assert err(tree.transaction_end, tx, True) == "EAGAIN"


def test_directory_read_conflicts_with_new_child(tree: Tree) -> None:
    tree.mkdir(DOM0, "/d")
    tx = tree.transaction_start(DOM0)
    tree.directory(DOM0, "/d", tx)
    tree.write(DOM0, "/d/x", b"")
    assert err(tree.transaction_end, tx, True) == "EAGAIN"


def test_commit_merges_children_created_meanwhile(tree: Tree) -> None:
    tree.mkdir(DOM0, "/d")
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/d/mine", b"1", tx)
    tree.write(DOM0, "/d/theirs", b"2")
    tree.transaction_end(tx, True)
    assert sorted(tree.directory(DOM0, "/d")[0]) == ["mine", "theirs"]


def test_rm_then_recreate_in_transaction(tree: Tree) -> None:
    tree.write(DOM0, "/a/old", b"1")
    tx = tree.transaction_start(DOM0)
    tree.rm(DOM0, "/a", tx)
    tree.write(DOM0, "/a/new", b"2", tx)
    assert tree.directory(DOM0, "/a", tx)[0] == ["new"]
    tree.transaction_end(tx, True)
    assert tree.directory(DOM0, "/a")[0] == ["new"]


def test_eagain_fault_injection() -> None:
    tree = Tree(eagain_probability=1.0, seed=1)
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/a", b"1", tx)
    assert err(tree.transaction_end, tx, True) == "EAGAIN"


# --- watches -------------------------------------------------------------------------------------

def test_watch_initial_event_and_subtree(tree: Tree) -> None:
    r = watch(tree, "/a")
    tree.write(DOM0, "/a/b/c", b"1")
    tree.write(DOM0, "/ab", b"1")  # a sibling with the same prefix does not match
    tree.write(DOM0, "/a/b/c", b"1")  # unchanged value still fires
    assert r.events == [("/a", "t"), ("/a/b/c", "t"), ("/a/b/c", "t")]


def test_root_watch_and_depth(tree: Tree) -> None:
    root = watch(tree, "/", "root")
    shallow = watch(tree, "/a", "d1", depth=1)
    tree.write(DOM0, "/a/b", b"")
    tree.write(DOM0, "/a/b/c", b"")
    assert ("/a/b/c", "root") in root.events
    assert shallow.events == [("/a", "d1"), ("/a/b", "d1")]


def test_mkdir_fires_only_when_created(tree: Tree) -> None:
    tree.mkdir(DOM0, "/a")
    r = watch(tree, "/a")
    tree.mkdir(DOM0, "/a")
    assert r.events == [("/a", "t")]


def test_rm_semantics(tree: Tree) -> None:
    tree.write(DOM0, "/a/b/c", b"")
    above = watch(tree, "/a", "above")
    below = watch(tree, "/a/b/c", "below")
    missing = watch(tree, "/a/b/nothere", "missing")
    tree.rm(DOM0, "/a/b")
    assert above.events[-1] == ("/a/b", "above")
    assert below.events[-1] == ("/a/b/c", "below")  # its own path, never above it
    assert missing.events == [("/a/b/nothere", "missing")]  # only the initial event


def test_relative_watch_gets_relative_paths(tree: Tree) -> None:
    r = watch(tree, "/local/domain/0/foo", given="foo")
    tree.write(DOM0, "/local/domain/0/foo/bar", b"1")
    assert r.events == [("foo", "t"), ("foo/bar", "t")]


def test_events_deferred_until_commit_and_dropped_on_abort(tree: Tree) -> None:
    r = watch(tree, "/a")
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/a/x", b"1", tx)
    assert r.events == [("/a", "t")]
    tree.transaction_end(tx, True)
    assert r.events[-1] == ("/a/x", "t")
    tx = tree.transaction_start(DOM0)
    tree.write(DOM0, "/a/y", b"1", tx)
    tree.transaction_end(tx, False)
    assert r.events[-1] == ("/a/x", "t")


def test_duplicate_watch_and_unwatch(tree: Tree) -> None:
    r = Recorder()
    tree.watch(r, DOM0, "/a", "/a", "t", None)
    assert err(tree.watch, r, DOM0, "/a", "/a", "t", None) == "EEXIST"
    tree.unwatch(r, "/a", "/a", "t")
    assert err(tree.unwatch, r, "/a", "/a", "t") == "ENOENT"
    tree.write(DOM0, "/a", b"")
    assert r.events == []


def test_special_watches(tree: Tree) -> None:
    intro = watch(tree, "@introduceDomain", "i")
    rel = watch(tree, "@releaseDomain", "r")
    rel1 = watch(tree, "@releaseDomain", "r1", depth=1)
    one = watch(tree, "@releaseDomain/5", "five")
    tree.introduce(5)
    tree.introduce(6)
    tree.domain_shutdown(5)
    tree.domain_shutdown(5)  # quiet until RESUME
    tree.release(6)
    assert intro.events == [("@introduceDomain", "i")] * 3
    assert rel.events == [("@releaseDomain", "r")] * 3
    assert rel1.events[1:] == [("@releaseDomain/5", "r1"), ("@releaseDomain/6", "r1")]
    assert one.events == [("@releaseDomain/5", "five")] * 2
    tree.resume(5)
    tree.domain_shutdown(5)
    assert len(rel.events) == 4


# --- permissions ---------------------------------------------------------------------------------

def test_perm_strings(tree: Tree) -> None:
    assert parse_perms(["n0", "r5", "w6", "b7"]) == (("n", 0), ("r", 5), ("w", 6), ("b", 7))
    with pytest.raises(XsError):
        parse_perms(["x1"])
    with pytest.raises(XsError):
        parse_perms([])


def test_owner_default_and_entries(tree: Tree) -> None:
    g5, g6, g7 = Caller(5), Caller(6), Caller(7)
    tree.write(DOM0, "/d/k", b"v")
    tree.set_perms(DOM0, "/d/k", parse_perms(["n5", "r6"]))
    assert tree.read(g5, "/d/k") == b"v"  # the owner
    tree.write(g5, "/d/k", b"w")
    assert tree.read(g6, "/d/k") == b"w"
    assert err(tree.write, g6, "/d/k", b"x") == "EACCES"
    assert err(tree.read, g7, "/d/k") == "EACCES"
    tree.set_perms(DOM0, "/d/k", parse_perms(["r0"]))  # default read for everybody
    assert tree.read(g7, "/d/k") == b"w"


def test_inheritance_and_unprivileged_owner(tree: Tree) -> None:
    g5 = Caller(5)
    tree.mkdir(DOM0, "/local/domain/5")
    tree.set_perms(DOM0, "/local/domain/5", parse_perms(["n0", "r5"]))
    tree.write(DOM0, "/local/domain/5/x/y", b"")
    assert tree.get_perms(DOM0, "/local/domain/5/x/y") == (("n", 0), ("r", 5))
    tree.mkdir(DOM0, "/local/domain/5/data")
    tree.set_perms(DOM0, "/local/domain/5/data", parse_perms(["n5"]))
    tree.write(g5, "/local/domain/5/data/a/b", b"1")
    assert tree.get_perms(DOM0, "/local/domain/5/data/a/b") == (("n", 5),)


def test_set_perms_rules(tree: Tree) -> None:
    g5 = Caller(5)
    tree.write(DOM0, "/n", b"")
    tree.set_perms(DOM0, "/n", parse_perms(["n5"]))
    tree.set_perms(g5, "/n", parse_perms(["n5", "r6"]))
    assert err(tree.set_perms, g5, "/n", parse_perms(["n6"])) == "EPERM"
    tree.set_perms(DOM0, "/n", parse_perms(["b0"]))  # writable by everybody, owned by dom0
    assert err(tree.set_perms, g5, "/n", parse_perms(["b0", "r5"])) == "EACCES"


def test_masking_hides_existence(tree: Tree) -> None:
    g5 = Caller(5)
    tree.write(DOM0, "/secret/a", b"")
    assert err(tree.read, g5, "/secret/a") == "EACCES"
    assert err(tree.read, g5, "/secret/nothere") == "EACCES"  # not ENOENT: nothing to probe
    tree.set_perms(DOM0, "/secret", parse_perms(["r0"]))
    assert err(tree.read, g5, "/secret/nothere") == "ENOENT"


def test_watch_events_filtered_by_permission(tree: Tree) -> None:
    g5 = Caller(5)
    tree.write(DOM0, "/pub/x", b"")
    tree.set_perms(DOM0, "/pub", parse_perms(["r0"]))
    tree.set_perms(DOM0, "/pub/x", parse_perms(["r0"]))
    r = watch(tree, "/pub", caller=g5)
    tree.write(DOM0, "/priv/y", b"")
    tree.write(DOM0, "/pub/x", b"1")
    assert r.events == [("/pub", "t"), ("/pub/x", "t")]


def test_special_watch_needs_permission(tree: Tree) -> None:
    r = watch(tree, "@releaseDomain", caller=Caller(5))
    tree.release(7)
    assert r.events == [("@releaseDomain", "t")]
    tree.set_perms(DOM0, "@releaseDomain", parse_perms(["n0", "r5"]))
    tree.release(8)
    assert r.events[-1] == ("@releaseDomain", "t") and len(r.events) == 2


def test_release_drops_the_domains_watches(tree: Tree) -> None:
    tree.write(DOM0, "/w", b"")
    tree.set_perms(DOM0, "/w", parse_perms(["r0"]))
    r = watch(tree, "/w", caller=Caller(5))
    tree.introduce(5)
    tree.release(5)
    tree.write(DOM0, "/w", b"1")
    assert r.events == [("/w", "t")]


# --- quotas --------------------------------------------------------------------------------------

def quota_tree(**kw: int) -> Tree:
    tree = Tree(Quotas(**kw))
    tree.mkdir(DOM0, "/local/domain/5")
    tree.set_perms(DOM0, "/local/domain/5", parse_perms(["n5"]))
    return tree


def test_node_quota() -> None:
    tree = quota_tree(nodes_per_domain=4)
    g5 = Caller(5)
    base = tree.owned(5)
    for i in range(4 - base):
        tree.write(g5, f"/local/domain/5/k{i}", b"")
    assert err(tree.write, g5, "/local/domain/5/over", b"") == "ENOSPC"
    tree.write(DOM0, "/local/domain/5/dom0-may", b"")  # dom0 is exempt (the node inherits owner 5)
    tree.rm(g5, "/local/domain/5/dom0-may")
    tree.rm(g5, "/local/domain/5/k0")
    tree.write(g5, "/local/domain/5/again", b"")


def test_size_perms_watch_and_transaction_quotas() -> None:
    tree = quota_tree(node_size=64, perms_per_node=2, watches_per_domain=2, transactions_per_domain=1)
    g5 = Caller(5)
    assert err(tree.write, g5, "/local/domain/5/big", b"x" * 100) == "ENOSPC"
    tree.write(DOM0, "/local/domain/5/big", b"x" * 100)
    tree.write(g5, "/local/domain/5/p", b"")
    assert err(tree.set_perms, g5, "/local/domain/5/p", parse_perms(["n5", "r1", "r2"])) == "ENOSPC"
    r = Recorder()
    tree.watch(r, g5, "/local/domain/5/a", "/local/domain/5/a", "1", None)
    tree.watch(r, g5, "/local/domain/5/b", "/local/domain/5/b", "2", None)
    assert err(tree.watch, r, g5, "/local/domain/5/c", "/local/domain/5/c", "3", None) == "ENOSPC"
    tx = tree.transaction_start(g5)
    assert err(tree.transaction_start, g5) == "ENOSPC"
    tree.transaction_end(tx, False)
    tree.transaction_end(tree.transaction_start(g5), False)
