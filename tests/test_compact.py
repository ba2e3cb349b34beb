"""Compaction of an output's small part files (``ocr_actors.io.compact``, ``ocr-batch compact``):
real Parquet files on a local disk, read back with DuckDB; the crash state a killed compaction
leaves, finished by the next one; the output's lease respected. And ``ocr-batch status``, which
reads all of that back."""

from __future__ import annotations

import io
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from ocr_actors import cli
from ocr_actors.config import load_config
from ocr_actors.io.compact import PartFile, compact, merge_group, plan_groups, read_part_sizes
from ocr_actors.io.lease import OutputLease
from ocr_actors.io.parquet import list_parts, part_name, write_part
from ocr_actors.job_config import JobConfig
from ocr_actors.pipeline.job import compact_output
from tests.conftest import part_row


def test_small_files_are_packed_in_path_order_up_to_rows_per_file():
    parts = [PartFile(f"out/part-{i}", rows) for i, rows in enumerate([3, 12, 4, 2, 5, 1, 4, 9])]
    groups = plan_groups(parts, rows_per_file=10)
    # small: fewer than 5 rows (3, 4, 2, 1, 4); 12, 5 and 9 stay; 3+4+2+1 = 10 fits, the last 4 is alone
    assert [[p.rows for p in g] for g in groups] == [[3, 4, 2, 1]]
    assert plan_groups(parts, rows_per_file=6) == [[parts[3], parts[5]]]  # small: fewer than 3 rows
    assert plan_groups([PartFile("a", 1)], 10) == []  # one small file: nothing to merge
    assert plan_groups(parts, rows_per_file=1) == []  # nothing is below half of 1 row


def write_small_parts(out: Path, sizes: list[int]) -> list[dict]:
    """Part files of ``sizes`` rows (each a page of its own document, with its own text);
    returns every row written."""
    rows = []
    for index, size in enumerate(sizes):
        part = []
        for page in range(size):
            row = part_row(f"s3://scans/doc{index:02d}.pdf", page, size)
            row["text"] = f"page {page} of document {index}"
            part.append(row)
        write_part(part, str(out), {})
        rows.extend(part)
    return rows


def output_rows(out: Path) -> list[tuple]:
    return duckdb.sql(
        f"select source_uri, page_index, text from read_parquet('{out}/part-*.parquet') order by 1, 2"
    ).fetchall()


def test_compaction_merges_small_files_and_keeps_every_row_once(tmp_path):
    out = tmp_path / "out"
    written = write_small_parts(out, [2, 1, 3, 8, 1, 2])
    before = output_rows(out)
    assert len(before) == len(written) == 17 and len(list_parts(str(out), {})) == 6

    summary = compact(str(out), {}, rows_per_file=10)
    assert summary.as_dict() == {
        "files_before": 6,
        "files_after": 2,  # the 8-row file stays; 2+1+3+1+2 = 9 rows in one
        "files_merged": 5,
        "rows_moved": 9,
        "files_written": 1,
        "journals_finished": 0,
        "footers_read": 6,
    }
    assert output_rows(out) == before  # every row once, texts unchanged
    sizes = sorted(p.rows for p in read_part_sizes(str(out), {}))
    assert sizes == [8, 9]
    merged = next(p for p in read_part_sizes(str(out), {}) if p.rows == 9)
    table = pq.read_table(merged.path)
    keys = list(zip(table["source_uri"].to_pylist(), table["page_index"].to_pylist(), strict=True))
    assert keys == sorted(keys)  # sorted by (source_uri, page_index)
    assert pq.ParquetFile(merged.path).metadata.num_row_groups == 1
    assert Path(merged.path).name == part_name([{"source_uri": u, "page_index": p} for u, p in keys])
    assert not list((out / "_jobs" / "_compact").iterdir())  # no journal left
    assert list((out / "_tmp").iterdir()) == []
    assert compact(str(out), {}, rows_per_file=10).files_merged == 0  # nothing left to merge


def test_known_row_counts_spare_the_footer_reads_and_only_listed_files_count(tmp_path):
    """The job passes the counts it read at its start and those it wrote: those files' footers
    are not read again (a made-up count shows it is used), a known name no longer listed is
    ignored, and a file not known is read."""
    out = tmp_path / "out"
    write_small_parts(out, [2, 1, 3])
    listed = list_parts(str(out), {})
    true_rows = {Path(p.path).name: p.rows for p in read_part_sizes(str(out), {})}
    names = [Path(p).name for p in listed]
    assert sorted(true_rows.values()) == [1, 2, 3]
    known = {names[0]: 99, names[1]: true_rows[names[1]], "part-gone.parquet": 7}
    sizes = read_part_sizes(str(out), {}, known)
    assert [p.path for p in sizes] == listed  # the listing decides which files exist
    assert [p.rows for p in sizes] == [99, true_rows[names[1]], true_rows[names[2]]]  # a known count is taken

    before = output_rows(out)
    summary = compact(str(out), {}, rows_per_file=10, known_rows={n: true_rows[n] for n in names[:2]})
    assert (summary.footers_read, summary.files_merged, summary.rows_moved) == (1, 3, 6)
    assert output_rows(out) == before


def test_an_interrupted_compaction_is_finished_by_the_next_one(tmp_path):
    """A compaction killed after moving the merged file into place and before deleting the
    files it replaces: the rows are there twice until the next compaction (or job), which
    finishes the journal first."""
    out = tmp_path / "out"
    write_small_parts(out, [1, 2, 1])
    before = output_rows(out)

    def killed() -> None:
        raise KeyboardInterrupt

    group = read_part_sizes(str(out), {})[:2]
    with pytest.raises(KeyboardInterrupt):
        merge_group(str(out), {}, group, before_delete=killed)
    doubled = output_rows(out)
    assert len(doubled) == len(before) + sum(p.rows for p in group)  # the crash state
    assert len(list((out / "_jobs" / "_compact").glob("*.json"))) == 1

    summary = compact(str(out), {}, rows_per_file=10)
    assert summary.journals_finished == 1
    assert output_rows(out) == before  # each row once again
    assert len(list_parts(str(out), {})) == 1 and summary.files_after == 1


def test_a_journal_whose_merged_file_never_moved_is_dropped(tmp_path):
    """Killed before the move: the replaced files are the only copy and must stay."""
    out = tmp_path / "out"
    write_small_parts(out, [1, 2])
    before = output_rows(out)
    journals = out / "_jobs" / "_compact"
    journals.mkdir(parents=True)
    names = [Path(p).name for p in list_parts(str(out), {})]
    (journals / "part-000000000000000000000000.parquet.json").write_text(
        json.dumps({"merged": "part-000000000000000000000000.parquet", "replaced": names})
    )
    assert compact(str(out), {}, rows_per_file=100).journals_finished == 1
    assert output_rows(out) == before and not list(journals.iterdir())


def test_a_journal_cut_off_while_being_written_is_dropped(tmp_path):
    """Killed (or out of disk) while writing the journal, before the merged file moved: an
    empty or half-written journal is dropped and every row stays; it used to stop every later
    run and compaction with a JSON error."""
    out = tmp_path / "out"
    write_small_parts(out, [1, 2])
    before = output_rows(out)
    journals = out / "_jobs" / "_compact"
    journals.mkdir(parents=True)
    (journals / "part-000000000000000000000000.parquet.json").write_text("")
    (journals / "part-111111111111111111111111.parquet.json").write_text('{"merged": "part-1111')
    summary = compact(str(out), {}, rows_per_file=100)
    assert summary.journals_finished == 2 and summary.files_merged == 2
    assert output_rows(out) == before and not list(journals.iterdir())


def test_cli_compact_takes_the_lease_and_refuses_a_busy_output(tmp_path, capsys):
    out = tmp_path / "out"
    write_small_parts(out, [1, 1, 1, 40])
    config = load_config(JobConfig, None, {"output.uri": str(out), "output.rows_per_file": 20})
    holder = OutputLease(str(out), "20261206T000000Z-running", {})
    holder.acquire()
    try:
        assert cli.main(["compact", "--output", str(out), "output.rows_per_file=20"]) == 3
        assert "is in use by job 20261206T000000Z-running" in capsys.readouterr().err
        assert len(list_parts(str(out), {})) == 4  # untouched while a run holds the output
    finally:
        holder.release()
    assert cli.main(["compact", "--output", str(out), "output.rows_per_file=20"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["files_before"], summary["files_after"], summary["rows_moved"]) == (4, 2, 3)
    assert "compaction: 3 small part files (3 rows) merged into 1; 2 part files now (were 4)" in captured.err
    missing = tmp_path / "none"
    assert cli.main(["compact", "--output", str(missing)]) == 2
    assert "error: no part files at" in capsys.readouterr().err and not missing.exists()  # no folder made
    progress = io.StringIO()
    again = compact_output(config, progress)  # the lease was given back: a second one runs
    assert again.files_merged == 0 and "merged into 0" in progress.getvalue()


def test_status_reads_rows_errors_runs_the_lease_and_pending_compactions(tmp_path, capsys):
    from ocr_actors.pipeline.job import JobSummary

    out = tmp_path / "out"
    write_small_parts(out, [2, 1, 30])
    for job_id, status in (("20261201T000000Z-aaaa", "succeeded"), ("20261202T000000Z-bbbb", "failed")):
        folder = out / "_jobs" / job_id
        folder.mkdir(parents=True)
        summary = JobSummary(job_id=job_id, output=str(out), mode="incremental", status=status, rows_written=3)
        (folder / "summary.json").write_text(json.dumps(summary.as_dict()))
    (out / "_jobs" / "20261203T000000Z-cccc").mkdir()  # a run with no summary yet

    def killed() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the 2- and 1-row files: their 3 rows twice until finished
        merge_group(str(out), {}, [p for p in read_part_sizes(str(out), {}) if p.rows < 3], before_delete=killed)
    write_part(
        [part_row("s3://scans/bad.pdf", None, None, "corrupt"), part_row("s3://scans/gone.png", 0, 1, "not_found")],
        str(out),
        {},
    )
    holder = OutputLease(str(out), "20261204T000000Z-dddd", {})
    holder.acquire()
    try:
        assert cli.main(["status", "--output", str(out), "output.rows_per_file=20", "--runs", "1"]) == 0
    finally:
        holder.release()
    captured = capsys.readouterr()
    status = json.loads(captured.out)
    # 2 + 1 + 30 + 2 rows, and the killed merge's copy of the 3 rows of its two files
    assert status["rows"] == 38 and status["part_files"] == 5 and status["pending_compactions"] == 1
    assert status["sources"] == 5 and status["error_rows"] == 2 and status["pages_ok"] == 36
    assert status["mergeable_files"] == 4  # all but the 30-row file (fewer than 10 rows each)
    assert status["errors_by_type"] == {"corrupt": 1, "not_found": 1}
    assert [r["job_id"] for r in status["runs"]] == ["20261202T000000Z-bbbb"]  # newest with a summary
    assert status["runs"][0]["status"] == "failed" and status["runs"][0]["mode"] == "incremental"
    assert status["lease"]["job_id"] == "20261204T000000Z-dddd" and status["lease"]["renewed_s_ago"] < 60
    assert "in use by job 20261204T000000Z-dddd" in captured.err
    assert "1 compactions an interrupted run left" in captured.err

    assert cli.main(["status", "--output", str(out), "--quiet"]) == 0  # the lease was given back
    assert json.loads(capsys.readouterr().out)["lease"] is None
    assert cli.main(["status", "--output", str(tmp_path / "none")]) == 2
    assert "no output at" in capsys.readouterr().err

    # Pages read by other models (the rows' own columns) show as a second entry.
    from ocr_actors.pipeline.status import describe_status, output_status

    small = {"det_model": "PP-OCRv6_small_det", "rec_model": "PP-OCRv6_small_rec"}
    write_part([{**part_row("s3://scans/new.pdf", k, 2), **small} for k in range(2)], str(out), {})
    status = output_status(str(out), {}, rows_per_file=20)
    assert status.pages_by_models == {"m + m": 36, "PP-OCRv6_small_det + PP-OCRv6_small_rec": 2}
    assert "pages read by models: 36 by m + m; 2 by PP-OCRv6_small_det + PP-OCRv6_small_rec" in describe_status(status)
