"""The output lease (ocr_actors.io.lease): one run at a time per output, on a local disk and on
a real S3 server (SeaweedFS, whose ``If-None-Match: *`` makes the create exclusive)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocr_actors.io.lease import LeaseRecord, OutputBusyError, OutputLease, is_stale, lease_path
from tests.s3_server import running_s3_server


class Clock:
    """A settable wall clock (UTC seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def finished_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def plant(output: Path, **fields: Any) -> LeaseRecord:
    """Write a lease record as another run would have left it."""
    record = LeaseRecord(
        **{
            "job_id": "old-run",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": "t" * 32,
            "acquired_at": time.time(),
            "renewed_at": time.time(),
            "ttl_s": 300.0,
            **fields,
        }
    )
    path = Path(lease_path(str(output)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record.to_json())
    return record


# --------------------------------------------------------------------------- pure rules


def test_stale_when_not_renewed_within_the_ttl_or_its_local_process_is_gone() -> None:
    record = LeaseRecord("j", "hostA", 123, "t", 0.0, 1000.0, 300.0)
    alive = lambda pid: True  # noqa: E731
    dead = lambda pid: False  # noqa: E731
    assert not is_stale(record, 1299.0, "hostB", alive)
    assert is_stale(record, 1300.5, "hostB", alive)
    assert not is_stale(record, 1001.0, "hostA", alive)
    assert is_stale(record, 1001.0, "hostA", dead)
    assert not is_stale(record, 1001.0, "hostB", dead), "a pid of another host says nothing"


def test_a_record_round_trips_and_junk_is_refused() -> None:
    record = LeaseRecord("job-1", "h", 7, "abc", 1.5, 2.5, 60.0)
    assert LeaseRecord.from_json(record.to_json()) == record
    for junk in (b"", b"{}", b"[1]", b'{"job_id": 1}', b"\xff"):
        with pytest.raises(ValueError):
            LeaseRecord.from_json(junk)


# --------------------------------------------------------------------------- local disk


def test_acquire_then_release(tmp_path: Path) -> None:
    lease = OutputLease(str(tmp_path / "out"), "run-1", {})
    assert lease.acquire() is None
    on_disk = json.loads(Path(lease_path(str(tmp_path / "out"))).read_text())
    assert on_disk["job_id"] == "run-1" and on_disk["pid"] == os.getpid() and on_disk["host"] == socket.gethostname()
    lease.release()
    assert not Path(lease_path(str(tmp_path / "out"))).exists()
    lease.release()  # idempotent


def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    first = OutputLease(output, "run-1", {})
    first.acquire()
    try:
        with pytest.raises(OutputBusyError, match=r"in use by job run-1 \(host .*, pid \d+, lease renewed \d+ s ago"):
            OutputLease(output, "run-2", {}).acquire()
        assert json.loads(Path(lease_path(output)).read_text())["job_id"] == "run-1"
    finally:
        first.release()
    second = OutputLease(output, "run-2", {})
    assert second.acquire() is None  # free again once released
    second.release()


def test_a_lease_of_another_host_is_kept_until_its_ttl_passes(tmp_path: Path) -> None:
    clock = Clock()
    plant(tmp_path, host="elsewhere", pid=1, renewed_at=clock.now - 299, ttl_s=300)
    with pytest.raises(OutputBusyError, match="in use by job old-run"):
        OutputLease(str(tmp_path), "new-run", {}, clock=clock).acquire()
    clock.now += 2  # 301 s without renewal
    lease = OutputLease(str(tmp_path), "new-run", {}, clock=clock)
    taken = lease.acquire()
    assert taken is not None and taken.job_id == "old-run" and taken.host == "elsewhere"
    assert json.loads(Path(lease_path(str(tmp_path))).read_text())["job_id"] == "new-run"
    lease.release()


def test_a_lease_of_a_dead_local_process_is_taken_over_at_once(tmp_path: Path) -> None:
    plant(tmp_path, pid=finished_pid())
    lease = OutputLease(str(tmp_path), "new-run", {})
    taken = lease.acquire()
    assert taken is not None and taken.job_id == "old-run"
    lease.release()


def test_take_over_takes_a_live_lease_and_the_old_holder_notices(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    first = OutputLease(output, "run-1", {})
    first.acquire()
    second = OutputLease(output, "run-2", {}, take_over=True)
    taken = second.acquire()
    assert taken is not None and taken.job_id == "run-1"
    assert first.renew() is False and first.lost
    first.release()  # must not delete the new holder's lease
    assert json.loads(Path(lease_path(output)).read_text())["job_id"] == "run-2"
    assert second.renew() is True and not second.lost
    second.release()


def test_an_unreadable_lease_is_treated_as_abandoned(tmp_path: Path) -> None:
    path = Path(lease_path(str(tmp_path)))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00 half a lease")
    lease = OutputLease(str(tmp_path), "new-run", {})
    taken = lease.acquire()
    assert taken is not None and taken.renewed_at == 0.0
    lease.release()


def test_the_holder_renews_in_the_background(tmp_path: Path) -> None:
    clock = Clock()
    lease = OutputLease(str(tmp_path), "run-1", {}, ttl_s=0.4, clock=clock)
    lease.acquire()
    try:
        clock.now += 100
        deadline = time.time() + 10
        while time.time() < deadline:
            if json.loads(Path(lease_path(str(tmp_path))).read_text())["renewed_at"] == clock.now:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the lease was not renewed")
    finally:
        lease.release()


# --------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with running_s3_server("leases") as server:
        yield server


def test_s3_create_is_exclusive_and_a_second_run_is_refused(s3: Any) -> None:
    output = s3.url("out")
    first = OutputLease(output, "run-1", s3.storage_options)
    first.acquire()
    try:
        racer = OutputLease(output, "run-2", s3.storage_options)
        assert racer._create() is False, "If-None-Match must refuse a second create"
        with pytest.raises(OutputBusyError, match="in use by job run-1"):
            racer.acquire()
        stored = LeaseRecord.from_json(s3.filesystem().cat_file(lease_path(output)))
        assert stored.token == first.record.token
    finally:
        first.release()
    assert not s3.filesystem().exists(lease_path(output))
    second = OutputLease(output, "run-2", s3.storage_options)
    assert second.acquire() is None
    second.release()


class NoConditionalWrites:
    """A local filesystem that, like some S3-compatible stores, refuses conditional writes."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs

    def pipe_file(self, path: str, data: bytes, mode: str = "overwrite") -> None:
        if mode == "create":
            raise OSError("501 NotImplemented: A header you provided implies functionality that is not implemented")
        self._fs.pipe_file(path, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


def test_a_store_without_conditional_writes_gets_write_and_read_back(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    first = OutputLease(output, "run-1", {})
    first._fs = NoConditionalWrites(first._fs)
    assert first.acquire() is None
    assert json.loads(Path(lease_path(output)).read_text())["job_id"] == "run-1"
    second = OutputLease(output, "run-2", {})
    second._fs = NoConditionalWrites(second._fs)
    assert second._create() is False
    with pytest.raises(OutputBusyError, match="in use by job run-1"):
        second.acquire()
    first.release()
