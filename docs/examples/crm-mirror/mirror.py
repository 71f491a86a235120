#!/usr/bin/env python3
"""Mirrors one account of a callers server into a local SQLite file from its change feed.

An example consumer of `callers.v1.ChangeService` (proto/callers/v1/changes.proto), written to
be read: README.md beside it explains the procedure. In short:

* Without a saved cursor, or when the server answers FAILED_PRECONDITION with reason
  `CURSOR_EXPIRED`, it resyncs: `GetChangeCursor` first, then every contact, call note and the
  call-handling settings, written to SQLite in one transaction together with that cursor.
* Then it follows `WatchChanges` from the saved cursor (or, with `--once`, reads `ListChanges`
  until `caught_up` and exits). Each change is applied in one SQLite transaction that also saves
  the change's cursor, so a crash never loses a change or applies one twice.
* When the stream ends (server shutdown, maximum stream age) or breaks, it reconnects from the
  saved cursor, with backoff.

Logs carry ids, counts and change types only: never names, numbers or texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
DEFAULT_PROTO_DIR = HERE.parents[2] / "proto"
PROTO_FILES = [
    "callers/v1/contacts.proto",
    "callers/v1/identification.proto",
    "callers/v1/call_notes.proto",
    "callers/v1/call_handling.proto",
    "callers/v1/changes.proto",
]
# Unary calls; the watch stream has no deadline (the server ends it after its maximum age).
CALL_TIMEOUT_S = 30
PAGE_SIZE_LISTS = 500
PAGE_SIZE_CHANGES = 1000
# In `--once` mode a server that stays unavailable this long ends the run with an error.
ONCE_PATIENCE_S = 60

log = logging.getLogger("crm-mirror")


# --- generated code -------------------------------------------------------------------------


def load_stubs(proto_dir: Path, stubs_dir: Path):
    """Generates the Python modules of the contract (once per proto content) and imports them.

    The folder is named after a hash of the proto files, so a changed contract gets new stubs and
    two runs starting together never read a half-written folder.
    """
    digest = hashlib.sha256()
    for name in PROTO_FILES:
        digest.update(name.encode())
        digest.update((proto_dir / name).read_bytes())
    target = stubs_dir / digest.hexdigest()[:16]
    if not target.is_dir():
        from grpc_tools import protoc
        import importlib.resources

        stubs_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".gen-", dir=stubs_dir))
        well_known = importlib.resources.files("grpc_tools") / "_proto"
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{proto_dir}",
                f"-I{well_known}",
                f"--python_out={work}",
                f"--grpc_python_out={work}",
                *PROTO_FILES,
            ]
        )
        if code != 0:
            raise SystemExit(f"crm-mirror: generating the stubs from {proto_dir} failed")
        try:
            work.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            # Another run made the same stubs first.
    sys.path.insert(0, str(target))
    from callers.v1 import (  # noqa: E402  (generated above)
        call_handling_pb2,
        call_handling_pb2_grpc,
        call_notes_pb2,
        call_notes_pb2_grpc,
        changes_pb2,
        changes_pb2_grpc,
        contacts_pb2,
        contacts_pb2_grpc,
    )

    return argparse.Namespace(
        ch=call_handling_pb2,
        ch_grpc=call_handling_pb2_grpc,
        notes=call_notes_pb2,
        notes_grpc=call_notes_pb2_grpc,
        changes=changes_pb2,
        changes_grpc=changes_pb2_grpc,
        contacts=contacts_pb2,
        contacts_grpc=contacts_pb2_grpc,
    )


# --- the SQLite mirror ----------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    contact_id           TEXT PRIMARY KEY,
    etag                 TEXT NOT NULL,
    categories           TEXT NOT NULL,  -- JSON array
    salutation           TEXT NOT NULL,
    title                TEXT NOT NULL,
    first_name           TEXT NOT NULL,
    last_name            TEXT NOT NULL,
    company              TEXT NOT NULL,
    email                TEXT NOT NULL,
    phone_numbers        TEXT NOT NULL,  -- JSON array of {number, e164, type}
    caller_message       TEXT,           -- JSON {message_id, text, create_time}; NULL when none
    handling_instruction TEXT NOT NULL,
    keep_permanently     INTEGER NOT NULL,
    origin               TEXT NOT NULL,
    create_time          TEXT,
    update_time          TEXT,
    last_activity_time   TEXT,
    purge_time           TEXT            -- NULL unless subject to automatic deletion
);
CREATE TABLE IF NOT EXISTS call_notes (
    call_note_id      TEXT PRIMARY KEY,
    contact_id        TEXT,              -- NULL when unlinked
    employee_id       TEXT NOT NULL,
    agent_id          TEXT NOT NULL,
    caller_first_name TEXT NOT NULL,
    caller_last_name  TEXT NOT NULL,
    caller_company    TEXT NOT NULL,
    caller_number     TEXT NOT NULL,
    subject           TEXT NOT NULL,
    text              TEXT NOT NULL,
    call_time         TEXT,
    create_time       TEXT,
    deliveries        TEXT NOT NULL      -- JSON array of {message_id, text, deliver_time, agent_id}
);
CREATE INDEX IF NOT EXISTS call_notes_contact ON call_notes (contact_id);
CREATE TABLE IF NOT EXISTS call_handling (
    account_id             TEXT PRIMARY KEY,
    etag                   TEXT NOT NULL,
    conversation_style     TEXT NOT NULL,
    caller_id_transmission INTEGER NOT NULL,
    phone_region           TEXT NOT NULL,
    employees              TEXT NOT NULL,  -- JSON array of {employee_id, conversation_style,
                                           -- caller_id_transmission (true, false or null)}
    update_time            TEXT
);
-- One row: the account this file mirrors and the cursor of the last change applied.
CREATE TABLE IF NOT EXISTS state (
    account_id  TEXT PRIMARY KEY,
    cursor      TEXT NOT NULL,
    resync_time TEXT NOT NULL,
    save_time   TEXT NOT NULL
);
"""


def open_db(path: str) -> sqlite3.Connection:
    # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE below.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    # In WAL mode NORMAL may lose the last commits on power loss, never half of one: the cursor
    # rolls back with the change it belongs to, so nothing is skipped or applied twice.
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    return db


class Transaction:
    """`with Transaction(db):` — BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any error."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, _value, _tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        return False


def saved_cursor(db: sqlite3.Connection, account: str) -> str | None:
    rows = db.execute("SELECT account_id, cursor FROM state").fetchall()
    for row_account, cursor in rows:
        if row_account != account:
            raise SystemExit(
                f"crm-mirror: this file mirrors account {row_account!r}, not {account!r}"
            )
        return cursor
    return None


def save_cursor(db: sqlite3.Connection, account: str, cursor: str, resync: bool = False):
    now = utc_now()
    if resync:
        db.execute("DELETE FROM state")
        db.execute(
            "INSERT INTO state (account_id, cursor, resync_time, save_time) VALUES (?, ?, ?, ?)",
            (account, cursor, now, now),
        )
    else:
        updated = db.execute(
            "UPDATE state SET cursor = ?, save_time = ? WHERE account_id = ?",
            (cursor, now, account),
        ).rowcount
        if updated != 1:
            raise RuntimeError("no saved state to advance: the mirror was never synced")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ts(message, field: str) -> str | None:
    """An RFC 3339 string (as protobuf's JSON mapping writes it), or None when unset."""
    if not message.HasField(field):
        return None
    return getattr(message, field).ToJsonString()


class Mirror:
    """The writes into SQLite: upserts and deletes keyed by id, so applying a change again ends
    in the same state (the feed repeats the changes that raced with a resync's reads)."""

    def __init__(self, db: sqlite3.Connection, pb):
        self.db = db
        self.pb = pb

    def upsert_contact(self, c, etag: str = ""):
        enum = self.pb.contacts
        row = {
            "contact_id": c.contact_id,
            "etag": c.etag or etag,
            "categories": json.dumps(list(c.categories)),
            "salutation": c.salutation,
            "title": c.title,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "company": c.company,
            "email": c.email,
            "phone_numbers": json.dumps(
                [
                    {"number": p.number, "e164": p.e164, "type": enum_name(enum.PhoneType, p.type)}
                    for p in c.phone_numbers
                ]
            ),
            "caller_message": (
                json.dumps(
                    {
                        "message_id": c.caller_message.message_id,
                        "text": c.caller_message.text,
                        "create_time": ts(c.caller_message, "create_time"),
                    }
                )
                if c.HasField("caller_message")
                else None
            ),
            "handling_instruction": c.handling_instruction,
            "keep_permanently": int(c.keep_permanently),
            "origin": enum_name(enum.Origin, c.origin),
            "create_time": ts(c, "create_time"),
            "update_time": ts(c, "update_time"),
            "last_activity_time": ts(c, "last_activity_time"),
            "purge_time": ts(c, "purge_time"),
        }
        self._upsert("contacts", "contact_id", row)

    def delete_contact(self, contact_id: str):
        self.db.execute("DELETE FROM contacts WHERE contact_id = ?", (contact_id,))
        # The contact's call notes stay and lose their link; the feed sends no change per note.
        self.db.execute(
            "UPDATE call_notes SET contact_id = NULL WHERE contact_id = ?", (contact_id,)
        )

    def upsert_call_note(self, n):
        row = {
            "call_note_id": n.call_note_id,
            "contact_id": n.contact_id or None,
            "employee_id": n.employee_id,
            "agent_id": n.agent_id,
            "caller_first_name": n.caller_first_name,
            "caller_last_name": n.caller_last_name,
            "caller_company": n.caller_company,
            "caller_number": n.caller_number,
            "subject": n.subject,
            "text": n.text,
            "call_time": ts(n, "call_time"),
            "create_time": ts(n, "create_time"),
            "deliveries": json.dumps(
                [
                    {
                        "message_id": d.message_id,
                        "text": d.text,
                        "deliver_time": ts(d, "deliver_time"),
                        "agent_id": d.agent_id,
                    }
                    for d in n.deliveries
                ]
            ),
        }
        self._upsert("call_notes", "call_note_id", row)

    def delete_call_note(self, call_note_id: str):
        self.db.execute("DELETE FROM call_notes WHERE call_note_id = ?", (call_note_id,))

    def upsert_call_handling(self, h, etag: str = ""):
        style = self.pb.ch.ConversationStyle
        row = {
            "account_id": h.account_id,
            "etag": h.etag or etag,
            "conversation_style": enum_name(style, h.conversation_style),
            "caller_id_transmission": int(h.caller_id_transmission),
            "phone_region": h.phone_region,
            "employees": json.dumps(
                [
                    {
                        "employee_id": e.employee_id,
                        "conversation_style": enum_name(style, e.conversation_style),
                        "caller_id_transmission": (
                            e.caller_id_transmission
                            if e.HasField("caller_id_transmission")
                            else None
                        ),
                    }
                    for e in h.employees
                ]
            ),
            "update_time": ts(h, "update_time"),
        }
        self._upsert("call_handling", "account_id", row)

    def replace_all(self, contacts, call_notes, call_handling):
        self.db.execute("DELETE FROM contacts")
        self.db.execute("DELETE FROM call_notes")
        self.db.execute("DELETE FROM call_handling")
        for c in contacts:
            self.upsert_contact(c)
        for n in call_notes:
            self.upsert_call_note(n)
        if call_handling is not None:
            self.upsert_call_handling(call_handling)

    def apply(self, change) -> None:
        """Applies one change; the caller holds the transaction."""
        T = self.pb.changes.ChangeType
        t = change.type
        kind = change.WhichOneof("resource")
        if t in (T.CHANGE_TYPE_CONTACT_CREATED, T.CHANGE_TYPE_CONTACT_UPDATED):
            self.upsert_contact(self._carried(change, "contact"), change.etag)
        elif t == T.CHANGE_TYPE_CONTACT_DELETED:
            self.delete_contact(change.contact_id)
        elif t in (
            T.CHANGE_TYPE_CALL_NOTE_CREATED,
            T.CHANGE_TYPE_CALL_NOTE_LINKED,
            T.CHANGE_TYPE_CALL_NOTE_REDACTED,
            T.CHANGE_TYPE_MESSAGE_DELIVERED,
        ):
            self.upsert_call_note(self._carried(change, "call_note"))
        elif t == T.CHANGE_TYPE_CALL_NOTE_DELETED:
            self.delete_call_note(change.call_note_id)
        elif t == T.CHANGE_TYPE_CALL_HANDLING_UPDATED:
            self.upsert_call_handling(self._carried(change, "call_handling"), change.etag)
        elif t in (
            T.CHANGE_TYPE_CONTACT_EXPIRING,
            T.CHANGE_TYPE_MESSAGE_EXPIRED,
            T.CHANGE_TYPE_MESSAGE_REPLACED,
            T.CHANGE_TYPE_UNDELIVERED_MESSAGE_REMOVED,
        ):
            # Nothing in the mirror changes: the contact's own change, if any, follows as
            # CONTACT_UPDATED. A CRM could remind the customer here to keep the contact. This
            # example keeps no undelivered-message report; one that does upserts the carried
            # undelivered_message and deletes it on UNDELIVERED_MESSAGE_REMOVED.
            log.info(
                "%s contact_id=%s message_id=%s",
                enum_name(T, t),
                change.contact_id or "-",
                change.message_id or "-",
            )
        elif kind is not None:
            # A change type newer than this consumer: the resource it carries is still the
            # resource as it is now.
            log.warning("unknown change type %d: applying the %s it carries", t, kind)
            getattr(self, f"upsert_{kind}")(getattr(change, kind))
        else:
            log.warning("unknown change type %d without a resource: skipped", t)

    @staticmethod
    def _carried(change, kind: str):
        if change.WhichOneof("resource") != kind:
            raise RuntimeError(f"change type {change.type} carries no {kind}")
        return getattr(change, kind)

    def _upsert(self, table: str, key: str, row: dict):
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != key)
        self.db.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}",
            tuple(row.values()),
        )


def enum_name(enum, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)  # a value newer than these stubs


# --- the feed -------------------------------------------------------------------------------


class CursorExpired(Exception):
    pass


class Fatal(Exception):
    """An error that retrying does not cure (bad token, unknown account format, a bug)."""


RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}


def error_reason(err: grpc.RpcError) -> str | None:
    """The `google.rpc.ErrorInfo` reason in the error's `grpc-status-details-bin`, if any."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(err)
    except ValueError:
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None


def reraise(err: grpc.RpcError):
    """Raises CursorExpired, the error itself when retrying may cure it, or else Fatal."""
    code = err.code()
    reason = error_reason(err)
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "CURSOR_EXPIRED":
        raise CursorExpired() from err
    if code in RETRYABLE:
        raise err
    raise Fatal(f"{code.name}{f' ({reason})' if reason else ''}: {err.details()}") from err


class Backoff:
    """Exponential backoff with full jitter, from 0.2 s up to 30 s, reset after progress."""

    def __init__(self, patience_s: float | None = None):
        self.attempt = 0
        self.patience_s = patience_s
        self.failing_since: float | None = None

    def reset(self):
        self.attempt = 0
        self.failing_since = None

    def wait(self, why: str, stop=None):
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        if self.patience_s is not None and now - self.failing_since > self.patience_s:
            raise Fatal(f"still failing after {self.patience_s} s: {why}")
        delay = random.uniform(0, min(30.0, 0.2 * 2**self.attempt))
        self.attempt += 1
        log.warning("%s; retrying in %.1f s", why, delay)
        until = now + delay
        while time.monotonic() < until and not (stop and stop.is_set()):
            time.sleep(min(0.1, max(0.0, until - time.monotonic())))


class Consumer:
    def __init__(self, channel: grpc.Channel, pb, db: sqlite3.Connection, account: str, token):
        self.pb = pb
        self.db = db
        self.mirror = Mirror(db, pb)
        self.account = account
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.changes = pb.changes_grpc.ChangeServiceStub(channel)
        self.contacts = pb.contacts_grpc.ContactServiceStub(channel)
        self.notes = pb.notes_grpc.CallNoteServiceStub(channel)
        self.handling = pb.ch_grpc.CallHandlingServiceStub(channel)
        self.stats = {"resyncs": 0, "changes_applied": 0}

    def _call(self, method, request):
        try:
            return method(request, timeout=CALL_TIMEOUT_S, metadata=self.metadata)
        except grpc.RpcError as err:
            reraise(err)

    def resync(self, why: str) -> str:
        """The documented recovery: cursor first, then everything, then one transaction."""
        log.info("resync (%s)", why)
        cursor = self._call(
            self.changes.GetChangeCursor,
            self.pb.changes.GetChangeCursorRequest(account_id=self.account),
        ).cursor
        contacts = self._all_pages(
            self.contacts.ListContacts,
            lambda token: self.pb.contacts.ListContactsRequest(
                account_id=self.account, page_size=PAGE_SIZE_LISTS, page_token=token
            ),
            "contacts",
        )
        call_notes = self._all_pages(
            self.notes.ListCallNotes,
            lambda token: self.pb.notes.ListCallNotesRequest(
                account_id=self.account, page_size=PAGE_SIZE_LISTS, page_token=token
            ),
            "call_notes",
        )
        try:
            call_handling = self.handling.GetCallHandling(
                self.pb.ch.GetCallHandlingRequest(account_id=self.account),
                timeout=CALL_TIMEOUT_S,
                metadata=self.metadata,
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                reraise(err)
            call_handling = None
        with Transaction(self.db):
            self.mirror.replace_all(contacts, call_notes, call_handling)
            save_cursor(self.db, self.account, cursor, resync=True)
        self.stats["resyncs"] += 1
        log.info(
            "resynced: %d contacts, %d call notes, call handling %s",
            len(contacts),
            len(call_notes),
            "present" if call_handling is not None else "absent",
        )
        return cursor

    def _all_pages(self, method, request_for, field: str) -> list:
        items, token = [], ""
        while True:
            page = self._call(method, request_for(token))
            items.extend(getattr(page, field))
            token = page.next_page_token
            if not token:
                return items

    def apply(self, changes) -> str | None:
        """Applies changes one by one, each in its own transaction with its cursor."""
        last = None
        for change in changes:
            with Transaction(self.db):
                self.mirror.apply(change)
                save_cursor(self.db, self.account, change.cursor)
            self.stats["changes_applied"] += 1
            log.debug(
                "applied %s contact_id=%s call_note_id=%s",
                enum_name(self.pb.changes.ChangeType, change.type),
                change.contact_id or "-",
                change.call_note_id or "-",
            )
            last = change.cursor
        return last

    def start_cursor(self, expired: bool) -> str:
        """The cursor to follow from: the saved one, or a resync's."""
        if expired:
            return self.resync("cursor expired")
        cursor = saved_cursor(self.db, self.account)
        if cursor is None:
            return self.resync("no saved cursor")
        log.info("resuming from the saved cursor")
        return cursor

    def catch_up(self, backoff: Backoff) -> str:
        """`--once`: ListChanges until caught up."""
        cursor, expired = None, False
        while True:
            try:
                if cursor is None:
                    cursor, expired = self.start_cursor(expired), False
                page = self._call(
                    self.changes.ListChanges,
                    self.pb.changes.ListChangesRequest(
                        account_id=self.account, cursor=cursor, page_size=PAGE_SIZE_CHANGES
                    ),
                )
            except CursorExpired:
                cursor, expired = None, True
                continue
            except grpc.RpcError as err:
                backoff.wait(f"catching up failed: {err.code().name}")
                continue
            backoff.reset()
            cursor = self.apply(page.changes) or cursor
            if page.caught_up:
                return cursor

    def follow(self, backoff: Backoff, stop) -> None:
        """WatchChanges forever, reconnecting from the saved cursor."""
        cursor, expired = None, False
        while not stop.is_set():
            try:
                if cursor is None:
                    cursor, expired = self.start_cursor(expired), False
                self._watch(cursor, backoff, stop)
                if stop.is_set():
                    return
                # Ended with OK: server shutdown or maximum stream age. Reopen at once (jitter
                # only, so that a fleet of consumers does not reconnect in the same instant).
                log.info("stream ended by the server; reconnecting")
                time.sleep(random.uniform(0, 0.5))
                cursor = saved_cursor(self.db, self.account)
            except CursorExpired:
                cursor, expired = None, True
            except grpc.RpcError as err:
                backoff.wait(f"watch failed: {err.code().name}", stop)
                cursor = saved_cursor(self.db, self.account) if cursor else None

    def _watch(self, cursor: str, backoff: Backoff, stop) -> None:
        log.info("watching from the saved cursor")
        call = self.changes.WatchChanges(
            self.pb.changes.WatchChangesRequest(account_id=self.account, cursor=cursor),
            metadata=self.metadata,
        )
        stop.call = call
        try:
            for response in call:
                backoff.reset()
                self.apply(response.changes)
                if stop.is_set():
                    call.cancel()
                    return
        except grpc.RpcError as err:
            if stop.is_set() and err.code() == grpc.StatusCode.CANCELLED:
                return
            reraise(err)
        finally:
            stop.call = None


class Stop:
    """Set by SIGTERM/SIGINT: the stream is cancelled and the loop ends after the change in
    hand (whose transaction is either committed or rolled back, never half)."""

    def __init__(self):
        self._set = False
        self.call = None

    def set(self, *_):
        self._set = True
        if self.call is not None:
            self.call.cancel()

    def is_set(self) -> bool:
        return self._set


# --- the command line -----------------------------------------------------------------------


def channel_for(args) -> grpc.Channel:
    options = [
        # Notice a dead connection on an idle stream instead of waiting forever.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # grpc's own reconnect backoff grows to 2 minutes by default: after a long outage the
        # mirror would lag that long behind a server that is back.
        ("grpc.max_reconnect_backoff_ms", 10_000),
    ]
    if args.tls or args.ca_file:
        root = Path(args.ca_file).read_bytes() if args.ca_file else None
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
        return grpc.secure_channel(args.target, credentials, options=options)
    return grpc.insecure_channel(args.target, options=options)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Mirror one account of a callers server into SQLite from its change feed."
    )
    p.add_argument(
        "--target",
        default=os.environ.get("CALLERS_TARGET", "127.0.0.1:50051"),
        help="the server, host:port (env CALLERS_TARGET; default 127.0.0.1:50051)",
    )
    p.add_argument(
        "--account",
        default=os.environ.get("CALLERS_ACCOUNT"),
        help="the account to mirror (env CALLERS_ACCOUNT)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("CALLERS_TOKEN"),
        help="bearer token (env CALLERS_TOKEN; prefer the variable: arguments show in ps)",
    )
    p.add_argument("--db", default="mirror.sqlite", help="the SQLite file (default mirror.sqlite)")
    p.add_argument("--tls", action="store_true", help="TLS with the system's root certificates")
    p.add_argument("--ca-file", help="TLS with this CA certificate (PEM); implies --tls")
    p.add_argument("--tls-server-name", help="the name to check the server certificate against")
    p.add_argument(
        "--once",
        action="store_true",
        help="catch up with ListChanges until caught up, print a JSON summary and exit",
    )
    p.add_argument(
        "--proto-dir",
        type=Path,
        default=DEFAULT_PROTO_DIR,
        help="the contract's proto files (default: the repository's proto/)",
    )
    p.add_argument(
        "--stubs-dir",
        type=Path,
        default=HERE / ".gen",
        help="where the generated Python stubs are cached (default .gen/ beside this script)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every change applied")
    args = p.parse_args(argv)
    if not args.account:
        p.error("--account (or CALLERS_ACCOUNT) is required")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    pb = load_stubs(args.proto_dir, args.stubs_dir)
    db = open_db(args.db)
    with channel_for(args) as channel:
        consumer = Consumer(channel, pb, db, args.account, args.token)
        try:
            if args.once:
                cursor = consumer.catch_up(Backoff(patience_s=ONCE_PATIENCE_S))
                print(json.dumps({"account_id": args.account, "cursor": cursor, **consumer.stats}))
                log.info("caught up")
            else:
                stop = Stop()
                signal.signal(signal.SIGTERM, stop.set)
                signal.signal(signal.SIGINT, stop.set)
                consumer.follow(Backoff(), stop)
                log.info("stopped")
        except (Fatal, grpc.RpcError) as err:
            log.error("giving up: %s", err if isinstance(err, Fatal) else err.code().name)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
