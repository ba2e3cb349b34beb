"""The output lease (ocr_actors.io.lease): one run at a time per output, on a local disk and on
a real S3 server (SeaweedFS, whose ``If-None-Match: *`` makes the create exclusive). Races are
real: threads with their own leases start together behind a barrier."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from ocr_actors.io.lease import (
    LeaseError,
    LeaseLostError,
    LeaseRecord,
    OutputBusyError,
    OutputLease,
    is_create_conflict,
    is_stale,
    is_unsupported,
    lease_folder,
    machine_id,
    process_start,
)
from tests.s3_server import running_s3_server


class Clock:
    """A settable wall clock (UTC seconds)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def finished_pid() -> int:
    """The pid of a process of this machine that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def entries(output: str) -> list[str]:
    folder = Path(lease_folder(output))
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def holder_on_disk(output: str) -> dict[str, Any]:
    return dict(json.loads((Path(lease_folder(output)) / entries(output)[-1]).read_text()))


def plant(output: str, sequence: int = 1, raw: bytes | None = None, **fields: Any) -> LeaseRecord:
    """Write lease ``sequence`` as another run would have left it."""
    record = LeaseRecord(
        **{
            "job_id": "old-run",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": "t" * 32,
            "acquired_at": time.time(),
            "renewed_at": time.time(),
            "ttl_s": 300.0,
            "machine": machine_id(),
            "pid_start": process_start(os.getpid()) or 0,
            **fields,
        }
    )
    path = Path(lease_folder(output)) / f"{sequence:010d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(record.to_json() if raw is None else raw)
    return record


def race(make: Callable[[int], OutputLease], runs: int = 8) -> tuple[list[OutputLease], list[BaseException]]:
    """``runs`` leases acquiring at the same instant: (winners, errors of the others)."""
    leases = [make(i) for i in range(runs)]
    barrier = threading.Barrier(runs)
    winners: list[OutputLease] = []
    errors: list[BaseException] = []

    def run(lease: OutputLease) -> None:
        barrier.wait()
        try:
            lease.acquire()
            winners.append(lease)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return winners, errors


# --------------------------------------------------------------------------- pure rules


def test_stale_when_not_renewed_within_the_ttl_or_its_process_on_this_machine_is_gone() -> None:
    record = LeaseRecord("j", "hostA", 123, "t", 0.0, 1000.0, 300.0, machine="boot1/ns1", pid_start=5)
    alive = lambda pid, start: True  # noqa: E731
    dead = lambda pid, start: False  # noqa: E731
    assert not is_stale(record, 1299.0, "boot2/ns1", alive)
    assert is_stale(record, 1300.5, "boot2/ns1", alive)
    assert not is_stale(record, 1001.0, "boot1/ns1", alive)
    assert is_stale(record, 1001.0, "boot1/ns1", dead)
    assert not is_stale(record, 1001.0, "boot1/ns2", dead), "a pid of another PID namespace says nothing"
    assert not is_stale(record, 1001.0, "", dead), "an unknown machine says nothing"


def test_a_record_round_trips_and_junk_is_refused() -> None:
    record = LeaseRecord("job-1", "h", 7, "abc", 1.5, 2.5, 60.0, "b/n", 99)
    assert LeaseRecord.from_json(record.to_json()) == record
    for junk in (b"", b"{}", b"[1]", b'{"job_id": 1}', b"\xff", b"null"):
        with pytest.raises(ValueError):
            LeaseRecord.from_json(junk)


def test_store_errors_are_told_apart() -> None:
    def client_error(code: str, status: int) -> OSError:
        error = OSError(5, "wrapped by s3fs")
        error.__cause__ = botocore.exceptions.ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
        )
        return error

    assert is_create_conflict(FileExistsError("x"))
    assert is_create_conflict(client_error("PreconditionFailed", 412))
    assert is_create_conflict(client_error("ConditionalRequestConflict", 409))
    assert not is_create_conflict(client_error("AccessDenied", 403))
    assert is_unsupported(client_error("NotImplemented", 501))
    assert is_unsupported(TypeError("pipe_file() got an unexpected keyword argument 'mode'"))
    assert not is_unsupported(client_error("AccessDenied", 403))


def test_process_start_tells_a_reused_pid_apart() -> None:
    assert process_start(os.getpid()) == process_start(os.getpid()) is not None
    assert process_start(finished_pid()) is None


# --------------------------------------------------------------------------- local disk


def test_acquire_then_release(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    lease = OutputLease(output, "run-1", {})
    assert lease.acquire() is None
    assert entries(output) == ["0000000001.json"]
    on_disk = holder_on_disk(output)
    assert on_disk["job_id"] == "run-1" and on_disk["pid"] == os.getpid() and on_disk["host"] == socket.gethostname()
    lease.check()
    lease.release()
    assert entries(output) == ["0000000001.json"] and holder_on_disk(output)["released"] is True
    lease.release()  # idempotent
    again = OutputLease(output, "run-2", {})
    assert again.acquire() is None  # a released lease is free; numbers go on, never restart
    assert entries(output) == ["0000000002.json"]
    again.release()


def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    first = OutputLease(output, "run-1", {})
    first.acquire()
    try:
        with pytest.raises(OutputBusyError, match=r"in use by job run-1 \(host .*, pid \d+, lease renewed \d+ s ago"):
            OutputLease(output, "run-2", {}).acquire()
        assert holder_on_disk(output)["job_id"] == "run-1"
    finally:
        first.release()
    second = OutputLease(output, "run-2", {})
    assert second.acquire() is None  # free again once released
    second.release()


def test_a_lease_of_another_machine_is_kept_until_its_ttl_passes(tmp_path: Path) -> None:
    clock = Clock()
    output = str(tmp_path)
    plant(output, host="elsewhere", machine="other-boot/1", pid=1, renewed_at=clock.now - 299, ttl_s=300)
    with pytest.raises(OutputBusyError, match="in use by job old-run"):
        OutputLease(output, "new-run", {}, clock=clock).acquire()
    clock.now += 2  # 301 s without renewal
    lease = OutputLease(output, "new-run", {}, clock=clock)
    taken = lease.acquire()
    assert taken is not None and taken.job_id == "old-run" and taken.host == "elsewhere"
    assert entries(output) == ["0000000002.json"] and holder_on_disk(output)["job_id"] == "new-run"
    lease.release()


def test_a_lease_of_a_dead_process_of_this_machine_is_taken_over_at_once(tmp_path: Path) -> None:
    plant(str(tmp_path), pid=finished_pid())
    lease = OutputLease(str(tmp_path), "new-run", {})
    taken = lease.acquire()
    assert taken is not None and taken.job_id == "old-run"
    lease.release()


def test_a_reused_pid_does_not_keep_a_dead_lease_alive(tmp_path: Path) -> None:
    # The pid runs (it is ours), but it started later than the lease's holder did.
    plant(str(tmp_path), pid=os.getpid(), pid_start=(process_start(os.getpid()) or 0) - 1)
    lease = OutputLease(str(tmp_path), "new-run", {})
    assert lease.acquire() is not None
    lease.release()


def test_a_dead_pid_of_another_pid_namespace_proves_nothing(tmp_path: Path) -> None:
    # Same hostname (a container on the host network), another PID namespace.
    plant(str(tmp_path), pid=finished_pid(), machine="another-boot/4026531836")
    with pytest.raises(OutputBusyError):
        OutputLease(str(tmp_path), "new-run", {}).acquire()


def test_take_over_takes_a_live_lease_and_the_old_holder_stops(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    first = OutputLease(output, "run-1", {})
    first.acquire()
    second = OutputLease(output, "run-2", {}, take_over=True)
    taken = second.acquire()
    assert taken is not None and taken.job_id == "run-1"
    assert entries(output) == ["0000000002.json"]
    assert first.renew() is False and first.lost
    with pytest.raises(LeaseLostError, match="another run took over"):
        first.check()
    first.release()  # must not touch the new holder's lease
    assert holder_on_disk(output)["job_id"] == "run-2"
    assert second.renew() is True  # renewal creates the next number and drops the last
    assert entries(output) == ["0000000003.json"]
    second.check()
    second.release()
    assert entries(output) == ["0000000003.json"] and holder_on_disk(output)["released"] is True


def test_a_late_renewal_cannot_win_back_a_lease_taken_over(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    holder = OutputLease(output, "run-1", {})
    holder.acquire()
    taker = OutputLease(output, "run-2", {}, take_over=True)
    taker.acquire()  # number 2
    assert taker.renew() is True  # number 3; number 2 is free again
    assert holder.renew() is False and holder.lost  # its create of 2 lands, but 3 is above it
    assert entries(output) == ["0000000003.json"], "the loser must take its late record back"
    with pytest.raises(LeaseLostError):
        holder.verify()
    holder.release()
    taker.verify()
    taker.release()


def test_a_failure_right_after_taking_the_lease_gives_it_back(tmp_path: Path) -> None:
    output = str(tmp_path)
    plant(output, pid=finished_pid())
    lease = OutputLease(output, "new-run", {})

    def fail(sequence: int, numbers: list[int]) -> None:
        raise KeyboardInterrupt

    lease._remove_below = fail  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        lease.acquire()
    assert entries(output) == ["0000000001.json"], "no lease may be left that nobody renews"


def test_other_entries_in_the_lease_folder_are_ignored(tmp_path: Path) -> None:
    output = str(tmp_path)
    folder = Path(lease_folder(output))
    (folder / "0000000009.json").mkdir(parents=True)  # a folder with a lease-like name
    (folder / "notes.txt").write_text("x")
    lease = OutputLease(output, "run-1", {})
    assert lease.acquire() is None
    assert (folder / "0000000001.json").is_file()
    lease.release()


def test_an_unreadable_lease_is_treated_as_abandoned(tmp_path: Path) -> None:
    plant(str(tmp_path), raw=b"\x00 not a lease")
    lease = OutputLease(str(tmp_path), "new-run", {})
    taken = lease.acquire()
    assert taken is not None and taken.token == ""
    assert entries(str(tmp_path)) == ["0000000002.json"]
    lease.release()


def test_the_holder_renews_in_the_background(tmp_path: Path) -> None:
    clock = Clock()
    lease = OutputLease(str(tmp_path), "run-1", {}, ttl_s=0.4, clock=clock)
    lease.acquire()
    try:
        clock.now += 100
        deadline = time.time() + 10
        while time.time() < deadline and holder_on_disk(str(tmp_path))["renewed_at"] != clock.now:
            time.sleep(0.02)
        assert holder_on_disk(str(tmp_path))["renewed_at"] == clock.now
        lease.check()
    finally:
        lease.release()


def test_a_lease_not_renewed_for_most_of_its_ttl_stops_the_run(tmp_path: Path) -> None:
    lease = OutputLease(str(tmp_path), "run-1", {}, ttl_s=300)
    lease.acquire()
    try:
        lease._renewed_monotonic -= 0.81 * 300  # as if the store had been unreachable for 243 s
        with pytest.raises(LeaseLostError, match="could not be renewed for 243 s"):
            lease.check()
    finally:
        lease.release()


def test_of_runs_starting_together_exactly_one_gets_the_lease(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    winners, errors = race(lambda i: OutputLease(output, f"run-{i}", {}))
    assert len(winners) == 1 and len(errors) == 7
    assert all(isinstance(e, OutputBusyError) for e in errors), errors
    assert entries(output) == ["0000000001.json"] and holder_on_disk(output)["job_id"] == winners[0].record.job_id
    winners[0].release()


def test_of_runs_taking_over_an_abandoned_lease_together_exactly_one_wins(tmp_path: Path) -> None:
    output = str(tmp_path / "out")
    plant(output, sequence=7, pid=finished_pid())
    winners, errors = race(lambda i: OutputLease(output, f"run-{i}", {}))
    assert len(winners) == 1 and all(isinstance(e, OutputBusyError) for e in errors), errors
    assert entries(output) == ["0000000008.json"]
    winners[0].release()


class NoConditionalWrites:
    """A filesystem that, like some S3-compatible stores, refuses conditional writes."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs

    def pipe_file(self, path: str, data: bytes, mode: str = "overwrite") -> None:
        if mode == "create":
            error = OSError(5, "A header you provided implies functionality that is not implemented")
            error.__cause__ = botocore.exceptions.ClientError(
                {"Error": {"Code": "NotImplemented"}, "ResponseMetadata": {"HTTPStatusCode": 501}}, "PutObject"
            )
            raise error
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self._fs.pipe_file(path, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


def test_a_store_without_conditional_writes_gets_write_and_read_back(tmp_path: Path) -> None:
    output = str(tmp_path / "out")

    def lease(job_id: str) -> OutputLease:
        made = OutputLease(output, job_id, {})
        made._fs, made._local = NoConditionalWrites(made._fs), False  # the object-store code path
        return made

    first = lease("run-1")
    assert first.acquire() is None
    assert holder_on_disk(output)["job_id"] == "run-1"
    with pytest.raises(OutputBusyError, match="in use by job run-1"):
        lease("run-2").acquire()
    first.release()
    assert holder_on_disk(output)["released"] is True


# --------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with running_s3_server("leases") as server:
        yield server


def test_s3_lease_is_exclusive_and_given_back(s3: Any) -> None:
    output = s3.url("out")
    first = OutputLease(output, "run-1", s3.storage_options)
    first.acquire()
    try:
        racer = OutputLease(output, "run-2", s3.storage_options)
        assert racer._create(1, racer.record) is False, "If-None-Match must refuse a second create"
        with pytest.raises(OutputBusyError, match="in use by job run-1"):
            racer.acquire()
        assert first.renew() is True  # number 2
        assert first.renew() is True  # number 3
    finally:
        first.release()
    fs = s3.filesystem()
    folder = lease_folder(output)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(folder, refresh=True)) == ["0000000003.json"]
    assert LeaseRecord.from_json(fs.cat_file(f"{folder}/0000000003.json")).released
    second = OutputLease(output, "run-2", s3.storage_options)
    assert second.acquire() is None
    assert second.sequence == 4
    second.release()


def test_s3_runs_starting_together_exactly_one_gets_the_lease(s3: Any) -> None:
    output = s3.url("race")
    winners, errors = race(lambda i: OutputLease(output, f"run-{i}", s3.storage_options), runs=6)
    assert len(winners) == 1 and all(isinstance(e, OutputBusyError) for e in errors), errors
    winners[0].release()
    with pytest.raises(LeaseError):  # a lease that keeps changing hands is an error, not a hang
        flaky = OutputLease(output, "run-x", s3.storage_options)
        flaky._create = lambda sequence, record: False  # type: ignore[method-assign]
        flaky.acquire()


def test_a_listing_that_missed_the_top_number_does_not_make_a_second_holder(tmp_path: Path) -> None:
    """A directory listing is not atomic: one taken while another run creates number N + 1
    and deletes N can show neither. The run that then creates number 1 must see the higher
    number, take its own back and report the live holder."""
    output = str(tmp_path / "out")
    holder = OutputLease(output, "holder", {})
    holder.acquire()
    for _ in range(7):  # each renewal takes the next number: the holder's lease is number 8
        assert holder.renew()
    assert entries(output) == ["0000000008.json"]
    late = OutputLease(output, "late", {})
    real_entries, calls = late.entries, []

    def first_listing_misses_everything() -> list[int]:
        calls.append(1)
        return [] if len(calls) == 1 else real_entries()

    late.entries = first_listing_misses_everything  # type: ignore[method-assign]
    with pytest.raises(OutputBusyError, match="in use by job holder"):
        late.acquire()
    assert entries(output) == ["0000000008.json"]  # its stray number 1 is gone
    holder.release()
