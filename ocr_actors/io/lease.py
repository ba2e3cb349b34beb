"""One run at a time per output: a lease object ``<output>/_jobs/_lease.json``.

Two runs on one output would each plan the pages the other is doing (duplicate rows), and the
second run's start-up clean of ``_tmp/`` would delete the first run's files in flight. A
scheduled backfill whose previous run is still going is the usual way this happens. So a run
takes the output's lease before it reads or cleans anything, renews it while it runs, and
removes it at the end.

- **Create** is exclusive where the store allows it: ``O_EXCL`` on local disks, S3
  ``If-None-Match: *`` (AWS; SeaweedFS, tested), GCS ``ifGenerationMatch=0``. A store that
  rejects or ignores the condition gets write-then-read-back, which catches most races.
- **Renewal**: a driver thread rewrites ``renewed_at`` every ``ttl_s / 4`` seconds, replacing
  the record in one step (a local file is written beside it and renamed over it).
- **Expiry**: a lease not renewed for ``ttl_s`` seconds (default 300) belongs to a driver that
  is gone. A lease held by a process of *this* host that no longer exists is stale at once
  (the common case: a cron job on the same machine after a kill). A stale lease is
  taken over, and the caller removes its run's work folder. ``take_over=True`` takes a live
  lease too (the user knows its driver is dead).

Times are the holder's wall clock (UTC seconds): hosts that share an output should run NTP.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ocr_actors.io.parquet import JOBS_DIR

log = logging.getLogger(__name__)

LEASE_NAME = "_lease.json"


class OutputBusyError(RuntimeError):
    """Another run holds the output's lease."""

    def __init__(self, output: str, holder: LeaseRecord, now: float) -> None:
        self.holder = holder
        super().__init__(
            f"the output {output} is in use by job {holder.job_id} (host {holder.host}, pid {holder.pid}, "
            f"lease renewed {max(now - holder.renewed_at, 0):.0f} s ago, expires after {holder.ttl_s:.0f} s "
            "without renewal); wait for it to finish, or set output.take_over_lease=true if its driver is gone"
        )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What the lease object holds (JSON). Times are UTC epoch seconds."""

    job_id: str
    host: str
    pid: int
    token: str
    acquired_at: float
    renewed_at: float
    ttl_s: float

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
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a lease record: {exc}") from exc


def is_stale(holder: LeaseRecord, now: float, host: str, pid_alive: Callable[[int], bool]) -> bool:
    """True when the lease's driver is gone: not renewed within its TTL, or a process of this
    host (``host``) that no longer runs."""
    if now - holder.renewed_at > holder.ttl_s:
        return True
    return holder.host == host and not pid_alive(holder.pid)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one owned by another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_path(output: str) -> str:
    return f"{output.rstrip('/')}/{JOBS_DIR}/{LEASE_NAME}"


class OutputLease:
    """The lease of one output for one run: :meth:`acquire`, then :meth:`release` (both on the
    driver); renewal runs on a daemon thread in between."""

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
        self._fs, self._path = fsspec.core.url_to_fs(lease_path(output), **dict(storage_options))
        protocols = {self._fs.protocol} if isinstance(self._fs.protocol, str) else set(self._fs.protocol)
        self._local = bool(protocols & {"file", "local"})
        self._clock = clock
        self._take_over = take_over
        now = clock()
        self.record = LeaseRecord(
            job_id=job_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            token=uuid.uuid4().hex,
            acquired_at=now,
            renewed_at=now,
            ttl_s=float(ttl_s),
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # ------------------------------------------------------------------ store access

    def read(self, attempts: int = 5, pause_s: float = 0.2) -> LeaseRecord | None:
        """The lease on storage; None when there is none. A record that stays unreadable over
        ``attempts`` reads (a local file caught between its exclusive create and its write
        reads empty for an instant) is treated as a lease of a run that is gone."""
        for attempt in range(attempts):
            try:
                data = self._fs.cat_file(self._path)
            except FileNotFoundError:
                return None
            try:
                return LeaseRecord.from_json(data)
            except ValueError:
                if attempt + 1 < attempts:
                    time.sleep(pause_s)
        log.warning("the lease %s is not a lease record; treating it as stale", lease_path(self.output))
        return LeaseRecord("unknown", "unknown", 0, "", 0.0, 0.0, 0.0)

    def _overwrite(self, data: bytes) -> None:
        """Replace the lease in one step: object stores replace whole objects; a local file is
        written beside it and renamed over it, so a reader never sees it half written."""
        if self._local:
            temporary = f"{self._path}.{self.record.token}.tmp"
            with open(temporary, "wb") as fh:
                fh.write(data)
            os.replace(temporary, self._path)
        else:
            self._fs.pipe_file(self._path, data)

    def _create(self) -> bool:
        """Write our record only if no lease exists; False if one does."""
        parent = self._path.rsplit("/", 1)[0]
        self._fs.makedirs(parent, exist_ok=True)
        data = self.record.to_json()
        try:
            self._fs.pipe_file(self._path, data, mode="create")
        except FileExistsError:
            return False
        except PermissionError:
            raise
        except (OSError, NotImplementedError, TypeError) as exc:
            text = str(exc).lower()
            if "pre-condition" in text or "precondition" in text or "412" in text:
                return False
            if not any(word in text for word in ("notimplemented", "not implemented", "501", "mode")):
                raise
            # A store without conditional writes: write, then check below that ours stuck.
            log.info("%s has no exclusive create; taking the lease by write and read-back", self.output)
            if self._fs.exists(self._path):
                return False
            self._overwrite(data)
        self._fs.invalidate_cache(self._path)
        current = self.read()
        return current is not None and current.token == self.record.token

    # ------------------------------------------------------------------ life cycle

    def acquire(self) -> LeaseRecord | None:
        """Take the lease and start renewing it. Returns the stale lease taken over (its
        run's leftovers are the caller's to clean), else None.

        Raises:
            OutputBusyError: a live run holds the lease (and ``take_over`` is off).
        """
        taken: LeaseRecord | None = None
        holder = self.read()
        if holder is not None:
            now = self._clock()
            if not self._take_over and not is_stale(holder, now, self.record.host, pid_alive):
                raise OutputBusyError(self.output, holder, now)
            if (current := self.read()) is not None and current.token == holder.token:
                self._fs.rm_file(self._path)
            taken = holder
        if not self._create():  # another run created it first
            holder = self.read()
            if holder is None and self._create():  # ... and has already released it
                return self._start(taken)
            if holder is None:
                raise RuntimeError(f"could not take the lease of {self.output}: it changed hands while trying")
            raise OutputBusyError(self.output, holder, self._clock())
        return self._start(taken)

    def _start(self, taken: LeaseRecord | None) -> LeaseRecord | None:
        self._thread = threading.Thread(target=self._renew_loop, name="ocr-batch-lease", daemon=True)
        self._thread.start()
        return taken

    def renew(self) -> bool:
        """Rewrite ``renewed_at`` if the lease is still ours; False (and :attr:`lost`) if
        another run took it over."""
        current = self.read()
        if current is None or current.token != self.record.token:
            if not self.lost:
                who = current.job_id if current else "nobody"
                log.error("lost the lease of %s (now held by %s): another run may be writing", self.output, who)
            self.lost = True
            return False
        self.record = LeaseRecord(**{**asdict(self.record), "renewed_at": self._clock()})
        self._overwrite(self.record.to_json())
        return True

    def _renew_loop(self) -> None:
        interval = max(self.record.ttl_s / 4, 0.05)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:  # a transient store error: try again next time
                log.warning("could not renew the lease of %s: %s", self.output, type(exc).__name__)

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        current = self.read()
        if current is not None and current.token == self.record.token:
            self._fs.rm_file(self._path)
