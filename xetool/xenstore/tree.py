"""The xenstore database, pure: nodes, permissions, transactions, watches, quotas. No sockets.

Semantics follow C xenstored (tools/xenstored/{core,transaction,watch,domain}.c):
- paths here are absolute and already validated; the server resolves relative ones;
- a transaction sees its own copy of the store, as it was when the transaction started ("whole
  db is copied", docs/misc/xenstore.txt): nothing is copied up front; a change made outside first
  keeps the node's old version for each open transaction (`_preserve`), so the cost falls on
  writes made while transactions are open, and none when there are none. Its own changes go to a
  copy-on-write overlay; the commit fails with EAGAIN only if a node it *read* changed since
  (per-node generation counters, as C xenstored); its events are sent at commit;
- permissions are `n`/`r`/`w`/`b` + domid, the first entry names the owner and the default;
  dom0 (the privileged caller) bypasses them; unprivileged callers get quotas (ENOSPC).
"""

from __future__ import annotations

import random

from xetool.xenstore.wire import SPECIAL_PATHS, XsError

Perm = tuple[str, int]  # ("n" | "r" | "w" | "b", domid)


def parse_perms(strings: list[str]) -> tuple[Perm, ...]:
    if not strings:
        raise XsError("EINVAL", "at least one permission is needed")
    perms: list[Perm] = []
    for s in strings:
        if len(s) < 2 or s[0] not in "nrwb" or not s[1:].isdigit():
            raise XsError("EINVAL", f"bad permission {s!r}")
        perms.append((s[0], int(s[1:])))
    return tuple(perms)


def format_perms(perms: tuple[Perm, ...]) -> list[str]:
    return [f"{letter}{domid}" for letter, domid in perms]


class Caller:
    """Who sends a request: dom0 (privileged, as every socket client by default) or domain N.
    `target` (SET_TARGET): the domain also acts with that domain's rights."""

    __slots__ = ("domid", "target", "privileged")

    def __init__(self, domid: int = 0, target: int | None = None) -> None:
        self.domid = domid
        self.target = target
        self.privileged = domid == 0

    def __repr__(self) -> str:
        return f"Caller({self.domid}, {self.target})"


DOM0 = Caller(0)


class Node:
    __slots__ = ("value", "perms", "children", "gen")

    def __init__(self, value: bytes, perms: tuple[Perm, ...], children: dict[str, None], gen: int = 0) -> None:
        self.value = value
        self.perms = perms
        self.children = children
        self.gen = gen

    def copy(self) -> Node:
        return Node(self.value, self.perms, dict(self.children), self.gen)


class Quotas:
    """C xenstored's defaults (domain.c `quotas[]`); they apply to unprivileged domains only."""

    __slots__ = ("nodes_per_domain", "watches_per_domain", "transactions_per_domain",
                 "nodes_per_transaction", "perms_per_node", "node_size")

    def __init__(self, nodes_per_domain: int = 1000, watches_per_domain: int = 128,
                 transactions_per_domain: int = 10, nodes_per_transaction: int = 1024,
                 perms_per_node: int = 5, node_size: int = 2048) -> None:
        self.nodes_per_domain = nodes_per_domain
        self.watches_per_domain = watches_per_domain
        self.transactions_per_domain = transactions_per_domain
        self.nodes_per_transaction = nodes_per_transaction
        self.perms_per_node = perms_per_node
        self.node_size = node_size


TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time (start-up)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Protocol

    class WatchOwner(Protocol):
        def deliver(self, path: str, token: str) -> None: ...


class Watch:
    """`given` is the path as registered (relative or absolute), `path` the absolute (or
    special) one; `strip` is how many leading characters a relative watch's events lose."""

    __slots__ = ("owner", "caller", "given", "path", "token", "depth", "strip")

    def __init__(self, owner: WatchOwner, caller: Caller, given: str, path: str, token: str,
                 depth: int | None, strip: int) -> None:
        self.owner, self.caller, self.given, self.path = owner, caller, given, path
        self.token, self.depth, self.strip = token, depth, strip


class Transaction:
    """A private view: `overlay` holds changed nodes (None: removed), `seen` the version at
    the start of each node changed by others since (None: absent then), `reads` the generation
    of every node read (-1: absent), `events` what fires at commit."""

    __slots__ = ("caller", "overlay", "seen", "reads", "events", "created")

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self.overlay: dict[str, Node | None] = {}
        self.seen: dict[str, Node | None] = {}
        self.reads: dict[str, int] = {}
        self.events: list[tuple[str, tuple[Perm, ...], tuple[str, ...]]] = []
        self.created = 0  # nodes created by an unprivileged caller (quota)


def parent_of(path: str) -> str:
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def _ancestors(path: str) -> Iterator[str]:
    """The path itself, then each ancestor up to and including `/`."""
    yield path
    while path != "/":
        path = parent_of(path)
        yield path


def access(caller: Caller, perms: tuple[Perm, ...]) -> str:
    """`perm_for_conn`: the caller's rights on a node as a set of letters from "rw"."""
    if caller.privileged:
        return "rw"
    owner_letter, owner = perms[0]
    ids = (caller.domid, caller.target)
    if owner in ids:
        return "rw"
    rights = ""
    matched = False
    for letter, domid in perms[1:]:
        if domid in ids:
            matched = True
            rights += {"n": "", "r": "r", "w": "w", "b": "rw"}[letter]
    if not matched:
        rights = {"n": "", "r": "r", "w": "w", "b": "rw"}[owner_letter]
    return rights


class Tree:
    """The store. Every mutating call fires the matching watches through their owner's
    `deliver`, at once outside a transaction and at commit inside one."""

    def __init__(self, quotas: Quotas | None = None, eagain_probability: float = 0.0, seed: int | None = None) -> None:
        self.quotas = quotas or Quotas()
        self.eagain_probability = eagain_probability
        self._random = random.Random(seed)
        self._gen = 0
        root_perms: tuple[Perm, ...] = (("n", 0),)
        self._nodes: dict[str, Node] = {"/": Node(b"", root_perms, {})}
        self._special_perms: dict[str, tuple[Perm, ...]] = {p: (("n", 0),) for p in SPECIAL_PATHS}
        self._watches: dict[str, list[Watch]] = {}
        self._watch_count: dict[int, int] = {}
        self._tx_count: dict[int, int] = {}
        self._owned: dict[int, int] = {0: 1}
        self._open: set[Transaction] = set()  # transactions started and not ended
        self.introduced: set[int] = set()
        self._exc_fired: set[int] = set()  # domains whose shutdown already fired @releaseDomain
        self.targets: dict[int, int] = {}
        for path in ("/tool", "/tool/xenstored"):
            self.mkdir(DOM0, path)

    # --- node access ---------------------------------------------------------------------------

    def _next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def _get(self, path: str, tx: Transaction | None) -> Node | None:
        """The node as the caller sees it: the global one, or in a transaction its own version:
        the one it changed, else the one the store had when it started (kept in `seen` by
        `_preserve` when someone else changed it since), else the global one, unchanged."""
        if tx is None:
            return self._nodes.get(path)
        if path in tx.overlay:
            return tx.overlay[path]
        seen = tx.seen
        if path in seen:
            return seen[path]
        return self._nodes.get(path)

    def _preserve(self, path: str) -> None:
        """Before the global node at `path` changes (or is created or removed), keep its
        current version for every open transaction that has no version of its own yet: each
        transaction goes on seeing the store as it was when it started."""
        node = self._nodes.get(path)
        for tx in self._open:
            if path not in tx.seen and path not in tx.overlay:
                tx.seen[path] = node.copy() if node is not None else None

    def _record_read(self, path: str, tx: Transaction | None) -> None:
        """Remember the generation of the version the transaction read, for the conflict check
        at commit."""
        if tx is not None and path not in tx.reads and path not in tx.overlay:
            node = self._get(path, tx)
            tx.reads[path] = node.gen if node is not None else -1
            self._check_tx_size(tx)

    def _written(self, path: str, tx: Transaction | None) -> Node:
        """The node just written or made at `path`, as the caller sees it."""
        node = self._get(path, tx)
        if node is None:
            raise KeyError(path)  # a bug: the caller has just written it
        return node

    def _mutable(self, path: str, tx: Transaction | None) -> Node:
        """The node to change in place: the global one, or the transaction's private copy.
        Either way its generation moves on, so that a DIRECTORY_PART reader sees the change
        (inside the transaction too)."""
        if tx is None:
            if self._open:
                self._preserve(path)
            shared = self._nodes[path]
            shared.gen = self._next_gen()
            return shared
        node = tx.overlay.get(path)
        if node is None:
            node = tx.seen.pop(path, None) or self._nodes[path].copy()
            tx.overlay[path] = node
            self._check_tx_size(tx)
        node.gen = self._next_gen()
        return node

    def _check_tx_size(self, tx: Transaction) -> None:
        """C xenstored's per-transaction node quota: the nodes it read or changed."""
        if not tx.caller.privileged and len(tx.overlay) + len(tx.reads) > self.quotas.nodes_per_transaction:
            raise XsError("ENOSPC", "too many nodes in the transaction")

    def _masked(self, caller: Caller, path: str, err: XsError, tx: Transaction | None) -> XsError:
        """`errno_from_parents`: hide ENOENT/EACCES behind EACCES if the nearest existing
        ancestor is not readable, so nobody can probe below a directory they cannot read."""
        if caller.privileged or path.startswith("@"):
            return err
        for anc in _ancestors(parent_of(path)):
            node = self._get(anc, tx)
            if node is not None:
                return err if "r" in access(caller, node.perms) else XsError("EACCES", path)
        return err

    def _lookup(self, caller: Caller, path: str, need: str, tx: Transaction | None) -> Node:
        node = self._get(path, tx)
        if node is None:
            raise self._masked(caller, path, XsError("ENOENT", path), tx)
        if need not in access(caller, node.perms):
            raise self._masked(caller, path, XsError("EACCES", path), tx)
        return node

    # --- the operations ------------------------------------------------------------------------

    def read(self, caller: Caller, path: str, tx: Transaction | None = None) -> bytes:
        if tx is None and caller.privileged:  # the common case, kept short
            node = self._nodes.get(path)
            if node is not None:
                return node.value
        self._record_read(path, tx)
        return self._lookup(caller, path, "r", tx).value

    def exists(self, path: str, tx: Transaction | None = None) -> bool:
        return self._get(path, tx) is not None

    def directory(self, caller: Caller, path: str, tx: Transaction | None = None) -> tuple[list[str], int]:
        """The children's names and the node's generation (DIRECTORY_PART's gencnt)."""
        self._record_read(path, tx)
        node = self._lookup(caller, path, "r", tx)
        return list(node.children), node.gen

    def get_perms(self, caller: Caller, path: str, tx: Transaction | None = None) -> tuple[Perm, ...]:
        if path.startswith("@"):
            perms = self._special_perms[path.split("/", 1)[0]]
            if "r" not in access(caller, perms):
                raise XsError("EACCES", path)
            return perms
        self._record_read(path, tx)
        return self._lookup(caller, path, "r", tx).perms

    def write(self, caller: Caller, path: str, value: bytes, tx: Transaction | None = None) -> None:
        if tx is None and caller.privileged:  # the common case, kept short
            node = self._nodes.get(path)
            if node is not None:
                if self._open:
                    self._preserve(path)
                node.value = value
                self._gen += 1
                node.gen = self._gen
                if self._watches:
                    self._fire(path, node.perms, ())
                return
        node = self._get(path, tx)
        if node is None:
            self._create(caller, path, value, tx)
        else:
            if "w" not in access(caller, node.perms):
                raise self._masked(caller, path, XsError("EACCES", path), tx)
            self._check_size(caller, value, node.perms, node.children)
            self._mutable(path, tx).value = value
        self._event(path, self._written(path, tx).perms, (), tx)

    def mkdir(self, caller: Caller, path: str, tx: Transaction | None = None) -> None:
        if self._get(path, tx) is not None:
            return  # no-op, and no watch fires
        self._create(caller, path, b"", tx)
        self._event(path, self._written(path, tx).perms, (), tx)

    def _create(self, caller: Caller, path: str, value: bytes, tx: Transaction | None) -> None:
        """Create `path` and any missing parents, each inheriting its parent's permissions
        (with the owner replaced by an unprivileged creator)."""
        missing = []
        anc = path
        while self._get(anc, tx) is None:
            missing.append(anc)
            anc = parent_of(anc)
        base = self._get(anc, tx)
        assert base is not None
        if "w" not in access(caller, base.perms):
            raise self._masked(caller, path, XsError("EACCES", path), tx)
        perms = base.perms
        if not caller.privileged:
            perms = ((perms[0][0], caller.domid),) + perms[1:]
            owned = self._owned.get(caller.domid, 0) + (tx.created if tx else 0)
            if owned + len(missing) > self.quotas.nodes_per_domain:
                raise XsError("ENOSPC", "node quota exceeded")
            self._check_size(caller, value, perms, {})
        for p in reversed(missing):
            node = Node(value if p == path else b"", perms, {})
            self._mutable(parent_of(p), tx).children[p.rsplit("/", 1)[1]] = None
            if tx is None:
                if self._open:
                    self._preserve(p)
                node.gen = self._next_gen()
                self._nodes[p] = node
                self._owned[perms[0][1]] = self._owned.get(perms[0][1], 0) + 1
            else:
                node.gen = self._next_gen()
                tx.seen.pop(p, None)
                tx.overlay[p] = node
                tx.created += 1
                self._check_tx_size(tx)

    def _check_size(self, caller: Caller, value: bytes, perms: tuple[Perm, ...], children: dict[str, None]) -> None:
        if caller.privileged:
            return
        size = len(value) + sum(len(c) + 1 for c in children) + sum(len(str(d)) + 2 for _, d in perms)
        if size > self.quotas.node_size:
            raise XsError("ENOSPC", "node too large")

    def rm(self, caller: Caller, path: str, tx: Transaction | None = None) -> None:
        if path == "/":
            raise XsError("EINVAL", "cannot remove /")
        node = self._get(path, tx)
        if node is None:
            if self._get(parent_of(path), tx) is None:
                raise self._masked(caller, path, XsError("ENOENT", path), tx)
            return
        if "w" not in access(caller, node.perms):
            raise self._masked(caller, path, XsError("EACCES", path), tx)
        removed = list(self._subtree(path, tx))
        del self._mutable(parent_of(path), tx).children[path.rsplit("/", 1)[1]]
        for p in removed:
            if tx is None:
                if self._open:
                    self._preserve(p)
                gone = self._nodes.pop(p)
                self._owned[gone.perms[0][1]] -= 1
            else:
                tx.seen.pop(p, None)
                tx.overlay[p] = None
        self._event(path, node.perms, tuple(removed[1:]), tx)

    def _subtree(self, path: str, tx: Transaction | None) -> Iterator[str]:
        node = self._get(path, tx)
        if node is None:
            return
        yield path
        for child in node.children:
            yield from self._subtree(f"{path}/{child}" if path != "/" else f"/{child}", tx)

    def set_perms(self, caller: Caller, path: str, perms: tuple[Perm, ...], tx: Transaction | None = None) -> None:
        if not caller.privileged and len(perms) > self.quotas.perms_per_node:
            raise XsError("ENOSPC", "too many permissions")
        if path.startswith("@"):
            special = path.split("/", 1)[0]
            old = self._special_perms[special]
            self._check_owner(caller, path, old, perms)
            self._special_perms[special] = perms
            return
        node = self._lookup(caller, path, "w", tx)
        self._check_owner(caller, path, node.perms, perms)
        old = node.perms
        self._mutable(path, tx).perms = perms
        if tx is None and old[0][1] != perms[0][1]:
            self._owned[old[0][1]] -= 1
            self._owned[perms[0][1]] = self._owned.get(perms[0][1], 0) + 1
        self._event(path, old + perms, (), tx)  # the old perms count too: a watcher losing access hears it

    @staticmethod
    def _check_owner(caller: Caller, path: str, old: tuple[Perm, ...], new: tuple[Perm, ...]) -> None:
        if caller.privileged:
            return
        if old[0][1] not in (caller.domid, caller.target):
            raise XsError("EACCES", path)
        if new[0][1] != old[0][1]:
            raise XsError("EPERM", "an unprivileged domain cannot change the owner")

    # --- transactions --------------------------------------------------------------------------

    def transaction_start(self, caller: Caller) -> Transaction:
        count = self._tx_count.get(caller.domid, 0)
        if not caller.privileged and count >= self.quotas.transactions_per_domain:
            raise XsError("ENOSPC", "too many transactions")
        self._tx_count[caller.domid] = count + 1
        tx = Transaction(caller)
        self._open.add(tx)
        return tx

    def transaction_end(self, tx: Transaction, commit: bool) -> None:
        """Commit or abort. EAGAIN if a node the transaction read has changed since (or at
        random, with the fault-injection probability): the caller redoes the whole work."""
        self._tx_count[tx.caller.domid] -= 1
        self._open.discard(tx)
        if not commit:
            return
        for path, gen in tx.reads.items():
            node = self._nodes.get(path)
            if (node.gen if node is not None else -1) != gen:
                raise XsError("EAGAIN", path)
        if self.eagain_probability and self._random.random() < self.eagain_probability:
            raise XsError("EAGAIN", "fault injection")
        # Apply by depth: parents first, so a re-created directory exists before its children,
        # and children lists are merged (not overwritten) with what others created meanwhile.
        preserve = self._preserve if self._open else None  # for the other open transactions
        for path in sorted(tx.overlay, key=_depth):
            new = tx.overlay[path]
            cur = self._nodes.get(path)
            if new is None:
                if cur is not None:
                    for p in list(self._subtree(path, None)):
                        if preserve:
                            preserve(p)
                        self._owned[self._nodes.pop(p).perms[0][1]] -= 1
                    parent = self._nodes.get(parent_of(path))
                    name = path.rsplit("/", 1)[1]
                    if parent is not None and name in parent.children:
                        if preserve:
                            preserve(parent_of(path))
                        del parent.children[name]
                        parent.gen = self._next_gen()
                continue
            if preserve:
                preserve(path)
            if cur is None:
                cur = Node(new.value, new.perms, {})
                if path != "/":
                    parent = self._nodes.get(parent_of(path))
                    if parent is None:  # removed by someone else meanwhile, with its subtree
                        continue
                    if preserve:
                        preserve(parent_of(path))
                    parent.children[path.rsplit("/", 1)[1]] = None
                    parent.gen = self._next_gen()
                self._nodes[path] = cur
                self._owned[new.perms[0][1]] = self._owned.get(new.perms[0][1], 0) + 1
            else:
                if cur.perms[0][1] != new.perms[0][1]:
                    self._owned[cur.perms[0][1]] -= 1
                    self._owned[new.perms[0][1]] = self._owned.get(new.perms[0][1], 0) + 1
                cur.value, cur.perms = new.value, new.perms
            cur.gen = self._next_gen()
        for path, perms, removed in tx.events:
            self._fire(path, perms, removed)

    # --- watches -------------------------------------------------------------------------------

    def watch(self, owner: WatchOwner, caller: Caller, given: str, path: str, token: str,
              depth: int | None = None) -> Watch:
        """Register a watch; the caller then sends the initial event (`initial_event`)."""
        if any(w.owner is owner and w.given == given and w.token == token for w in self._watches.get(path, ())):
            raise XsError("EEXIST", given)
        count = self._watch_count.get(caller.domid, 0)
        if not caller.privileged and count >= self.quotas.watches_per_domain:
            raise XsError("ENOSPC", "too many watches")
        strip = len(path) - len(given) if given != path else 0
        w = Watch(owner, caller, given, path, token, depth, strip)
        self._watches.setdefault(path, []).append(w)
        self._watch_count[caller.domid] = count + 1
        return w

    def initial_event(self, w: Watch) -> None:
        w.owner.deliver(w.given, w.token)

    def unwatch(self, owner: WatchOwner, given: str, path: str, token: str) -> None:
        for w in self._watches.get(path, ()):
            if w.owner is owner and w.given == given and w.token == token:
                self._drop(w)
                return
        raise XsError("ENOENT", f"no watch {given} {token}")

    def reset_watches(self, owner: WatchOwner) -> None:
        for ws in list(self._watches.values()):
            for w in [w for w in ws if w.owner is owner]:
                self._drop(w)

    def _drop(self, w: Watch) -> None:
        ws = self._watches[w.path]
        ws.remove(w)
        if not ws:
            del self._watches[w.path]
        self._watch_count[w.caller.domid] -= 1

    def _event(self, path: str, perms: tuple[Perm, ...], removed: tuple[str, ...], tx: Transaction | None) -> None:
        if tx is None:
            self._fire(path, perms, removed)
        else:
            tx.events.append((path, perms, removed))

    def _fire(self, path: str, perms: tuple[Perm, ...], removed: tuple[str, ...]) -> None:
        if not self._watches:
            return
        level = _depth(path)
        for anc in _ancestors(path):
            for w in self._watches.get(anc, ()):
                if w.depth is not None and level - _depth(anc) > w.depth:
                    continue
                if w.caller.privileged or self._may_see(w.caller, path, perms):
                    w.owner.deliver(path[w.strip:], w.token)
        for sub in removed:  # watches below a removed root fire once, with their own path
            for w in self._watches.get(sub, ()):
                if w.caller.privileged or self._may_see(w.caller, sub, perms):
                    w.owner.deliver(sub[w.strip:], w.token)

    def _may_see(self, caller: Caller, path: str, perms: tuple[Perm, ...]) -> bool:
        """`watch_permitted`: the watcher can read the node (old or new perms) or its parent."""
        if "r" in access(caller, perms) or any(d in (caller.domid, caller.target) and l in "rb" for l, d in perms):
            return True
        parent = self._nodes.get(parent_of(path))
        return parent is not None and "r" in access(caller, parent.perms)

    def fire_special(self, name: str, domid: int) -> None:
        """@introduceDomain / @releaseDomain; with depth >= 1, or a watch on name/domid,
        the event path names the domain."""
        perms = self._special_perms[name]
        for wpath in (name, f"{name}/{domid}"):
            for w in list(self._watches.get(wpath, ())):
                if not (w.caller.privileged or "r" in access(w.caller, perms)):
                    continue
                epath = f"{name}/{domid}" if wpath != name or (w.depth or 0) >= 1 else name
                w.owner.deliver(epath, w.token)

    # --- domains -------------------------------------------------------------------------------

    def introduce(self, domid: int) -> None:
        if domid <= 0:
            raise XsError("EINVAL", "only a guest domain can be introduced")
        self.introduced.add(domid)
        self._exc_fired.discard(domid)
        self.fire_special("@introduceDomain", domid)

    def release(self, domid: int) -> None:
        """RELEASE, or the domain is destroyed: forget it, drop its watches, fire @releaseDomain."""
        if domid <= 0:
            raise XsError("EINVAL", "cannot release the privileged domain")
        for ws in list(self._watches.values()):
            for w in [w for w in ws if w.caller.domid == domid]:
                self._drop(w)
        self.introduced.discard(domid)
        self.targets.pop(domid, None)
        self.fire_special("@releaseDomain", domid)

    def domain_shutdown(self, domid: int) -> None:
        """The domain shut down (VIRQ_DOM_EXC): @releaseDomain once, until RESUME."""
        if domid not in self._exc_fired:
            self._exc_fired.add(domid)
            self.fire_special("@releaseDomain", domid)

    def resume(self, domid: int) -> None:
        if domid not in self.introduced:
            raise XsError("ENOENT", f"domain {domid} not introduced")
        self._exc_fired.discard(domid)

    def set_target(self, domid: int, target: int) -> None:
        if domid not in self.introduced or target not in self.introduced:
            raise XsError("ENOENT", "both domains must be introduced")
        self.targets[domid] = target

    def caller_for(self, domid: int) -> Caller:
        return Caller(domid, self.targets.get(domid))

    # --- inspection (tests, operators) ---------------------------------------------------------

    def owned(self, domid: int) -> int:
        return self._owned.get(domid, 0)

    def dump(self, top: str = "/") -> dict[str, bytes]:
        return {p: self._nodes[p].value for p in self._subtree(top, None)}

