"""Messages for the operator (VM_STARTED, WLB_CONSULTATION_FAILED, ...), kept in the store."""

from __future__ import annotations

from xetool.clock import now_iso
from xetool.store.db import Txn

KEEP = 10_000  # xapi's message_limit: Xapi_message.gc keeps the newest this many, oldest go first


def create(txn: Txn, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    uuid = txn.insert("message", {"name": name, "priority": priority, "cls": cls, "obj_uuid": obj_uuid,
                                  "timestamp": now_iso(), "body": body})
    txn.db.execute("DELETE FROM message WHERE rowid <= (SELECT MAX(rowid) FROM message) - ?", (KEEP,))
    return uuid
