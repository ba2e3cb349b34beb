"""One run at a time per output: a lease under ``<output>/_jobs/_lease/``.

Two runs on one output would each plan the pages the other is doing (duplicate rows), and the
second run's start-up clean of ``_tmp/`` would delete the first run's files in flight. A
scheduled backfill whose previous run is still going is the usual way this happens. So a run
takes the output's lease before it reads or cleans anything, renews it while it runs, checks it
as it goes (a run that lost it stops), and gives it back at the end.

**Numbered lease objects, only ever created.** The lease is the highest-numbered
``NNNNNNNNNN.json`` in the folder. Every change of it creates the next number *exclusively*:
taking a free lease (the top record says "released"), taking over an abandoned one, and each
renewal by the holder. Two runs that race for a number cannot both get it, so a takeover and a
renewal (even one whose request lands late) have exactly one winner, and no run ever
overwrites or deletes another run's record. Numbers never restart: release writes a "released"
record over the holder's own top number. Lower numbers are deleted (best effort) by whoever
created the number above them. Exclusive create: a hard link on local disks (``link`` fails if
the name exists, and a reader never sees a half-written file; ``O_EXCL`` where links are not
supported), S3 ``If-None-Match: *`` (AWS; SeaweedFS, tested here), GCS ``ifGenerationMatch=0``.
A store that refuses conditional writes gets write-then-read-back, which catches most races
but not all.

**Renewal and fencing.** A driver thread renews every ``ttl_s / 4`` seconds.
:meth:`OutputLease.check` raises :class:`LeaseLostError` once another run has taken over, or
once the lease could not be renewed for most of ``ttl_s`` (another run may take it over at
``ttl_s``); the job calls it between chunks and batches. :meth:`OutputLease.verify` renews on
the spot and raises the same way; the job calls it right before it deletes anything.

**Staleness.** A lease not renewed for ``ttl_s`` seconds (default 300) belongs to a driver that
is gone. A lease whose holder was a process of this very machine (same boot, same PID
namespace: containers sharing a hostname do not count) that no longer runs (the PID is gone or
now belongs to a process started later) is stale at once: the common case of a cron job run again
after a kill. ``take_over=True`` takes a live lease too (the user knows its driver is gone).
Times are the holder's wall clock (UTC seconds): hosts that share an output should run NTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from ocr_actors.io.objectlist import is_local
from ocr_actors.io.parquet import JOBS_DIR
from ocr_actors.redaction import redacting_logger

log = redacting_logger(__name__)

LEASE_DIR = "_lease"
_ENTRY = re.compile(r"(\d{10,})\.json")
RENEWALS_PER_TTL = 4
FENCE_SHARE = 0.8
"""A holder stops trusting its lease once this share of the TTL has passed without a renewal."""


class LeaseError(RuntimeError):
    """The run cannot hold (or no longer holds) the output's lease."""


class OutputBusyError(LeaseError):
    """Another run holds the output's lease."""

    def __init__(self, output: str, holder: LeaseRecord, now: float) -> None:
        self.holder = holder
        super().__init__(
            f"the output {output} is in use by job {holder.job_id} (host {holder.host}, pid {holder.pid}, "
            f"lease renewed {max(now - holder.renewed_at, 0):.0f} s ago, expires after {holder.ttl_s:.0f} s "
            "without renewal); wait for it to finish, or set output.take_over_lease=true if its driver is gone"
        )


class LeaseLostError(LeaseError):
    """Another run took the lease over (or it could not be renewed in time): this run stops."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a lease object holds (JSON). Times are UTC epoch seconds.

    ``machine`` identifies the holder's kernel boot and PID namespace (Linux; "" elsewhere) and
    ``pid_start`` its process start time in clock ticks since boot, so a PID can be judged dead
    only on the same machine, and a reused PID is not mistaken for the holder.
    """

    job_id: str
    host: str
    pid: int
    token: str
    acquired_at: float
    renewed_at: float
    ttl_s: float
    machine: str = ""
    pid_start: int = 0
    released: bool = False

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseRecord:
        """Raises ValueError on anything that is not a lease record."""
        try:
            raw = json.loads(data)
            return cls(
                job_id=str(raw["job_id"]),
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                token=str(raw["token"]),
                acquired_at=float(raw["acquired_at"]),
                renewed_at=float(raw["renewed_at"]),
                ttl_s=float(raw["ttl_s"]),
                machine=str(raw.get("machine", "")),
                pid_start=int(raw.get("pid_start", 0)),
                released=bool(raw.get("released", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a lease record: {exc}") from exc


ABANDONED = LeaseRecord("unknown", "unknown", 0, "", 0.0, 0.0, 0.0)
"""Stands for an unreadable lease object: treated as a run that is gone."""


# --------------------------------------------------------------------------- this machine


def machine_id() -> str:
    """``<boot id>/<pid namespace inode>`` on Linux, "" where unknown."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux); None if it does not
    exist or is unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name may hold spaces
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, started: int) -> bool:
    """Whether the process ``pid`` that started at ``started`` ticks still runs on this machine."""
    if pid <= 0:
        return False
    now_started = process_start(pid)
    if now_started is not None:
        return started == 0 or now_started == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(holder: LeaseRecord, now: float, machine: str, alive: Callable[[int, int], bool] = pid_alive) -> bool:
    """True when the lease's driver is gone: not renewed within its TTL, or a process of this
    machine (same ``machine`` id) that no longer runs."""
    if now - holder.renewed_at > holder.ttl_s:
        return True
    return bool(machine) and holder.machine == machine and not alive(holder.pid, holder.pid_start)


def lease_folder(output: str) -> str:
    return f"{output.rstrip('/')}/{JOBS_DIR}/{LEASE_DIR}"


# --------------------------------------------------------------------------- store errors


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status(error: BaseException) -> tuple[str, int]:
    """(error code, HTTP status) of a botocore or gcsfs error; ("", 0) for others."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return (
            str(response.get("Error", {}).get("Code", "")),
            int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0),
        )
    code = getattr(error, "code", None)
    return ("", code) if isinstance(code, int) else ("", 0)


def is_create_conflict(exc: BaseException) -> bool:
    """The exclusive create found the name taken (or racing another write of it)."""
    for error in _causes(exc):
        if isinstance(error, FileExistsError):
            return True
        code, status = _status(error)
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return True
    return False


def is_unsupported(exc: BaseException) -> bool:
    """The store (or its fsspec backend) has no conditional create."""
    if isinstance(exc, (TypeError, NotImplementedError)):
        return True
    for error in _causes(exc):
        code, status = _status(error)
        if code == "NotImplemented" or status == 501:
            return True
    return False


# --------------------------------------------------------------------------- the lease


class OutputLease:
    """The lease of one output for one run: :meth:`acquire`, :meth:`check` as the run goes,
    then :meth:`release` (all on the driver); renewal runs on a daemon thread in between."""

    def __init__(
        self,
        output: str,
        job_id: str,
        storage_options: Mapping[str, Any],
        ttl_s: float = 300.0,
        take_over: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import fsspec

        self.output = output
        self._fs, self._folder = fsspec.core.url_to_fs(lease_folder(output), **dict(storage_options))
        self._local = is_local(self._fs)
        self._clock = clock
        self._take_over = take_over
        self.machine = machine_id()
        now = clock()
        self.record = LeaseRecord(
            job_id=job_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            token=uuid.uuid4().hex,
            acquired_at=now,
            renewed_at=now,
            ttl_s=float(ttl_s),
            machine=self.machine,
            pid_start=process_start(os.getpid()) or 0,
        )
        self.sequence = 0
        self.lost = False
        self._renewed_monotonic = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ store access

    def _path(self, sequence: int) -> str:
        return f"{self._folder}/{sequence:010d}.json"

    def entries(self) -> list[int]:
        """Lease numbers present, ascending (a fresh listing, never the fsspec cache).

        Local disks are read with ``os.scandir``: fsspec's detailed local listing stats each
        entry and raises FileNotFoundError for one deleted meanwhile (another run's
        superseded number), which must not read as an empty folder."""
        if self._local:
            try:
                with os.scandir(self._folder) as listing:
                    names = [e.name for e in listing if e.is_file()]
            except FileNotFoundError:
                return []
        else:
            self._fs.invalidate_cache(self._folder)
            try:
                listed = self._fs.ls(self._folder, detail=True)
            except FileNotFoundError:
                return []
            names = [str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in listed if e.get("type") == "file"]
        return sorted(int(m.group(1)) for m in map(_ENTRY.fullmatch, names) if m)

    def read(self, sequence: int) -> LeaseRecord | None:
        """Lease ``sequence``; None if it is gone; :data:`ABANDONED` if it is not a record."""
        for attempt in range(3):
            try:
                data = self._fs.cat_file(self._path(sequence))
            except FileNotFoundError:
                return None
            try:
                return LeaseRecord.from_json(data)
            except ValueError:
                if attempt < 2:
                    time.sleep(0.1)
        log.warning("the lease %s is not a lease record; treating it as abandoned", self._path(sequence))
        return ABANDONED

    def _create(self, sequence: int, record: LeaseRecord) -> bool:
        """Create lease ``sequence`` holding ``record`` only if that number is free."""
        path, data = self._path(sequence), record.to_json()
        if self._local:
            os.makedirs(self._folder, exist_ok=True)
            temporary = f"{self._folder}/.{sequence:010d}.{record.token}.tmp"
            with open(temporary, "wb") as fh:
                fh.write(data)
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here (some network and FUSE mounts)
                try:
                    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(descriptor, "wb") as fh:
                    fh.write(data)
            finally:
                os.unlink(temporary)
            return True
        try:
            self._fs.pipe_file(path, data, mode="create")
        except Exception as exc:
            if is_create_conflict(exc):
                current = self.read(sequence)  # a retried request may have found our own write
                return current is not None and current.token == record.token
            if not is_unsupported(exc):
                raise
            log.info("%s has no conditional create; taking the lease by write and read-back", self.output)
            if self.read(sequence) is not None:
                return False
            self._fs.pipe_file(path, data)
        current = self.read(sequence)
        return current is not None and current.token == record.token

    def _overwrite(self, sequence: int, record: LeaseRecord) -> None:
        """Replace our own lease object in one step (local: write beside it, then rename)."""
        path, data = self._path(sequence), record.to_json()
        if self._local:
            temporary = f"{self._folder}/.{sequence:010d}.{record.token}.renew.tmp"
            with open(temporary, "wb") as fh:
                fh.write(data)
            os.replace(temporary, path)
        else:
            self._fs.pipe_file(path, data)

    def _remove(self, sequence: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._path(sequence))

    def _remove_below(self, sequence: int, numbers: list[int]) -> None:
        """Delete superseded numbers (best effort: the higher number already rules)."""
        for older in (n for n in numbers if n < sequence):
            try:
                self._remove(older)
            except Exception as exc:
                log.warning("could not delete the superseded lease %s: %s", self._path(older), type(exc).__name__)

    # ------------------------------------------------------------------ life cycle

    def acquire(self, attempts: int = 5) -> LeaseRecord | None:
        """Take the lease and start renewing it. Returns the abandoned lease taken over (its
        run's leftovers are the caller's to clean), else None.

        Raises:
            OutputBusyError: a live run holds the lease (and ``take_over`` is off).
            LeaseError: the lease kept changing hands over ``attempts`` tries.
        """
        for _ in range(attempts):
            numbers = self.entries()
            top = numbers[-1] if numbers else 0
            holder = self.read(top) if top else None
            if top and holder is None:  # deleted between the listing and the read: look again
                continue
            if holder is not None and holder.released:
                holder = None
            now = self._clock()
            if holder is not None and not self._take_over and not is_stale(holder, now, self.machine):
                raise OutputBusyError(self.output, holder, now)
            self.record = replace(self.record, acquired_at=now, renewed_at=now)
            started = time.monotonic()
            if self._create(top + 1, self.record):
                if self._above(top + 1):
                    continue
                try:
                    self._remove_below(top + 1, numbers)  # their holders find out when they renew
                    return self._start(top + 1, started, holder)
                except BaseException:  # never leave a lease nobody renews
                    with contextlib.suppress(Exception):
                        self._remove(top + 1)
                    raise
            # Another run took number top + 1 first: look again (it is now the holder).
        raise LeaseError(f"could not take the lease of {self.output}: it kept changing hands")

    def _above(self, sequence: int) -> bool:
        """After creating ``sequence``: True (and ours removed) if a higher number exists, so a
        listing that missed the top number cannot make a second holder. (A directory listing
        is not atomic: one taken while another run creates the next number and deletes the
        one below may show neither.)"""
        numbers = self.entries()
        if numbers and numbers[-1] > sequence:
            self._remove(sequence)
            return True
        return False

    def _start(self, sequence: int, renewed: float, taken: LeaseRecord | None) -> LeaseRecord | None:
        self.sequence = sequence
        self._renewed_monotonic = renewed
        self._thread = threading.Thread(target=self._renew_loop, name="ocr-batch-lease", daemon=True)
        self._thread.start()
        return taken

    def renew(self) -> bool:
        """Renew by creating the next number (so a late renewal cannot beat a takeover); False
        (and :attr:`lost`) once another run holds the lease."""
        with self._lock:
            if self._stop.is_set() or self.lost:
                return not self.lost
            started = time.monotonic()  # the fence counts from before the request
            record = replace(self.record, renewed_at=self._clock())
            following = self.sequence + 1
            created = self._create(following, record)
            numbers = self.entries() if created else []
            if not created or numbers[-1] > following:  # taken over (and maybe renewed since)
                if created:
                    self._remove(following)
                self.lost = True
                log.error("lost the lease of %s: another run took it over", self.output)
                return False
            self._remove_below(following, numbers)
            self.sequence, self.record = following, record
            self._renewed_monotonic = max(self._renewed_monotonic, started)
            return True

    def verify(self) -> None:
        """Renew now and raise :class:`LeaseLostError` unless the lease is still ours: call it
        right before deleting anything."""
        self.check()
        self.renew()
        self.check()

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if this run may no longer write the output."""
        if self.lost:
            raise LeaseLostError(f"another run took over the lease of {self.output}; this run stopped")
        silent = time.monotonic() - self._renewed_monotonic
        if silent > FENCE_SHARE * self.record.ttl_s:
            raise LeaseLostError(
                f"the lease of {self.output} could not be renewed for {silent:.0f} s (another run may take "
                f"it over after {self.record.ttl_s:.0f} s); this run stopped"
            )

    def _renew_loop(self) -> None:
        interval = max(self.record.ttl_s / RENEWALS_PER_TTL, 0.05)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # a transient store error: try again next time
                log.warning("could not renew the lease of %s: %s", self.output, type(exc).__name__)

    def release(self) -> None:
        """Stop renewing and mark our lease released, unless another run took over (idempotent).
        The record stays, so numbers never restart; the next run creates the number above it."""
        if self._lock.acquire(timeout=60):  # a renewal in flight finishes first; none starts after
            self._stop.set()
            self._lock.release()
        else:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.sequence and not self.lost:
            current = self.read(self.sequence)
            if current is not None and current.token == self.record.token:
                self._overwrite(self.sequence, replace(self.record, released=True, renewed_at=self._clock()))
        self.sequence = 0
