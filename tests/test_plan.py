"""Planning at archive scale: the compact URI set, the streamed listing, and the chunked
planner (duplicates across chunks, resume of partial and replaced documents)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ocr_actors.io.listing import iter_sources, list_sources, read_manifest
from ocr_actors.io.parquet import DoneIndex, scan_done, write_part
from ocr_actors.io.uriset import UriSet, first_occurrences, uri_digests
from ocr_actors.pipeline.plan import WORK_SCHEMA, Planner, plan_chunks, plan_work
from tests.conftest import part_row


def test_uri_set_membership_in_bulk_and_one_by_one():
    added = [f"s3://bucket/scans/{i:07d}.tif" for i in range(30_000)]
    uris = UriSet()
    for start in range(0, len(added), 1_700):  # many small adds: runs must merge
        uris.add(added[start : start + 1_700] + added[:5])  # repeats are ignored
    assert len(uris) == len(added)
    assert uris.nbytes == 16 * len(added)
    assert uris.contains(added).all()
    strangers = [f"s3://bucket/scans/{i:07d}.tiff" for i in range(30_000)] + ["", "s3://bucket/scans/"]
    assert not uris.contains(strangers).any()
    assert added[12_345] in uris and "s3://bucket/scans/x" not in uris and 3 not in uris
    assert not UriSet().contains(added[:3]).any() and len(UriSet()) == 0


def test_uri_digests_are_fixed_size_and_distinguish_near_names():
    digests = uri_digests(["a.png", "a.png ", "A.png", "a.png"])
    assert digests.shape == (4, 2) and digests.dtype == np.uint64
    assert (digests[0] == digests[3]).all() and len({tuple(d) for d in digests[:3].tolist()}) == 3
    assert first_occurrences(digests).tolist() == [True, True, True, False]


def test_uri_set_tells_apart_digests_that_share_the_high_word():
    uris = UriSet()
    uris.add_digests(np.array([[7, 1], [7, 3], [5, 9], [7, 2]], dtype=np.uint64))
    probe = np.array([[7, 2], [7, 4], [5, 9], [5, 8], [6, 1]], dtype=np.uint64)
    assert uris.contains_digests(probe).tolist() == [True, False, True, False, False] and len(uris) == 4


def _done_from_rows(tmp_path, *parts):
    for rows in parts:
        write_part([part_row(*r) for r in rows], str(tmp_path), {})
    return scan_done(str(tmp_path), {})


def test_planner_drops_repeats_across_chunks_and_keeps_listing_order(tmp_path):
    done = _done_from_rows(tmp_path, [("done-1.png", 0, 1), ("done-2.png", 0, 1)], [("half.pdf", 1, 3)])
    chunks = [
        ["new-1.png", "done-1.png", "half.pdf", "new-1.png"],
        ["new-2.png", "half.pdf", "done-2.png"],
        [],
        ["new-1.png", "new-3.png"],
    ]
    items, counts = plan_chunks(chunks, done, "resume", None)
    assert items.schema == WORK_SCHEMA
    assert items.to_pylist() == [
        {"source_uri": "new-1.png", "todo_pages": ""},
        {"source_uri": "half.pdf", "todo_pages": "[0, 2]"},
        {"source_uri": "new-2.png", "todo_pages": ""},
        {"source_uri": "new-3.png", "todo_pages": ""},
    ]
    assert (counts.sources_total, counts.sources_skipped, counts.sources_partial) == (6, 2, 1)
    assert (counts.items, counts.duplicates) == (4, 3)
    # the same listing as one chunk gives the same plan
    whole = plan_work([u for chunk in chunks for u in chunk], done, "resume", None)
    assert [(i.source_uri, i.todo_pages) for i in whole.items] == [tuple(r.values()) for r in items.to_pylist()]
    incremental, _ = plan_chunks(chunks, done, "incremental", None)
    assert incremental.column("source_uri").to_pylist() == ["new-1.png", "new-2.png", "new-3.png"]


def test_a_source_replaced_by_a_longer_document_still_gets_its_missing_pages(tmp_path):
    # page 0 of 1 from the old file, pages 0 and 1 of 3 from its replacement
    done = _done_from_rows(tmp_path, [("scan.pdf", 0, 1)], [("scan.pdf", 0, 3), ("scan.pdf", 1, 3)])
    assert "scan.pdf" in done.complete and done.pages["scan.pdf"] == {0, 1}
    assert done.missing_pages("scan.pdf") == [2] and not done.is_complete("scan.pdf")
    plan = plan_work(["scan.pdf"], done, "resume", None)
    assert [(i.source_uri, i.todo_pages) for i in plan.items] == [("scan.pdf", "[2]")]
    # once page 2 is written too, nothing is left
    done = _done_from_rows(tmp_path / "after", [("scan.pdf", 0, 1)], [("scan.pdf", p, 3) for p in range(3)])
    assert done.is_complete("scan.pdf") and plan_work(["scan.pdf"], done, "resume", None).items == []
    # the old file's page 0 row says nothing of the new page 0: it is still to do
    done = _done_from_rows(tmp_path / "gap", [("scan.pdf", 0, 1)], [("scan.pdf", 1, 3), ("scan.pdf", 2, 3)])
    assert done.missing_pages("scan.pdf") == [0]
    assert [i.todo_pages for i in plan_work(["scan.pdf"], done, "resume", None).items] == ["[0]"]


def test_a_fresh_output_plans_every_source_whole():
    items, counts = plan_chunks([[f"p{i}.png" for i in range(1000)]], DoneIndex(), "overwrite", None)
    assert items.num_rows == 1000 and set(items.column("todo_pages").to_pylist()) == {""}
    assert (counts.sources_total, counts.sources_skipped, counts.duplicates) == (1000, 0, 0)
    empty, counts = plan_chunks([], DoneIndex(), "resume", None)
    assert empty.num_rows == 0 and empty.schema == WORK_SCHEMA and counts.items == 0


@pytest.mark.parametrize("kind", ["txt", "csv", "parquet"])
def test_manifests_stream_in_chunks(tmp_path, kind):
    entries = [f"/data/scans/{i:05d}.png" for i in range(2_345)] + ["relative/one.png"]
    path = tmp_path / f"list.{kind}"
    if kind == "txt":
        path.write_text("# a comment\n\n" + "\n".join(entries) + "\n")
    elif kind == "csv":
        path.write_text("id,uri\n" + "".join(f"{i},{e}\n" for i, e in enumerate(entries)) + "9999,\n")
    else:
        pq.write_table(pa.table({"uri": [*entries, None, ""]}), path, row_group_size=500)
    chunks = list(iter_sources(str(path), "uri", {}, chunk_size=1_000))
    assert [len(c) for c in chunks] == [1_000, 1_000, 346]
    flat = [u for chunk in chunks for u in chunk]
    assert flat[:2] == ["/data/scans/00000.png", "/data/scans/00001.png"]
    assert flat[-1] == f"{tmp_path}/relative/one.png"
    assert read_manifest(str(path), "uri", {}) == flat


def test_a_local_file_named_alone_is_a_source_by_its_absolute_path(tmp_path, monkeypatch):
    """Rows are keyed by ``source_uri``: ``--input scan.png`` run from its folder and from
    elsewhere is one source, the same as the folder's listing names it."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "in")
    assert list_sources("scan.png", "uri", {}) == [f"{tmp_path}/in/scan.png"]
    monkeypatch.chdir(tmp_path)
    assert list_sources("in/./scan.png", "uri", {}) == list_sources("in", "uri", {}) == [f"{tmp_path}/in/scan.png"]
    monkeypatch.setenv("HOME", str(tmp_path))  # "~/…" as a YAML source.uri gives it (no shell expands it)
    assert list_sources("~/in/scan.png", "uri", {}) == [f"{tmp_path}/in/scan.png"]
    # however the folder is spelt ("..", "./", doubled slashes, a glob through them), the same
    # key: a rerun spelt otherwise resumes instead of writing every page again
    for spelling in ("in/../in/", f"{tmp_path}/./in", f"{tmp_path}//in/../in/*.png", f"/{tmp_path}/in/scan.png"):
        assert list_sources(spelling, "uri", {}) == [f"{tmp_path}/in/scan.png"], spelling
    (tmp_path / "list.txt").write_text(f"{tmp_path}/in/../in/scan.png\n./in/scan.png\n")
    assert list_sources("list.txt", "uri", {}) == [f"{tmp_path}/in/scan.png"]  # one source, not two


def test_listing_errors(tmp_path):
    with pytest.raises(ValueError, match="no input given"):
        iter_sources("", "uri", {})
    pq.write_table(pa.table({"path": ["a.png"]}), tmp_path / "list.parquet")
    with pytest.raises(ValueError, match=r"has no column 'uri' \(columns: \['path'\]\)"):
        list_sources(str(tmp_path / "list.parquet"), "uri", {})
    (tmp_path / "list.csv").write_text("path\na.png\n")
    with pytest.raises(ValueError, match="has no column 'uri'"):
        list_sources(str(tmp_path / "list.csv"), "uri", {})
    (tmp_path / "twice.txt").write_text("/x/a.png\n/x/b.png\n/x/a.png\n")
    assert list_sources(str(tmp_path / "twice.txt"), "uri", {}) == ["/x/a.png", "/x/b.png"]


def test_planner_counts_accumulate_over_chunks():
    planner = Planner(DoneIndex(), "resume", None)
    assert planner.plan_chunk(["a.png", "b.png"]).num_rows == 2
    assert planner.plan_chunk(["b.png", "c.png"]).column("source_uri").to_pylist() == ["c.png"]
    assert (planner.counts.sources_total, planner.counts.duplicates, planner.counts.items) == (3, 1, 3)


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 1 << 20])
def test_text_manifest_lines_survive_any_block_boundary(block_size):
    import io

    from ocr_actors.io.listing import _text_lines

    data = "\ufeffs3://b/a.png\r\ns3://b/é.png\n\n# note\rs3://b/ü/c.png\ns3://b/last.png".encode()
    lines = [line for line in _text_lines(io.BytesIO(data), block_size) if line]
    assert lines == ["s3://b/a.png", "s3://b/é.png", "# note", "s3://b/ü/c.png", "s3://b/last.png"]
    # every line break str.splitlines knows, also when a block ends right after it
    exotic = "a.png\x0cb.png\u2028c.png\x85d.png\x1ce.png\n".encode()
    assert [line for line in _text_lines(io.BytesIO(exotic), block_size) if line] == [
        "a.png",
        "b.png",
        "c.png",
        "d.png",
        "e.png",
    ]


def test_a_manifest_that_is_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"/x/a.png\n/x/b\xff.png\n")
    with pytest.raises(ValueError, match=r"manifest .*list\.txt is not UTF-8 text"):
        list_sources(str(tmp_path / "list.txt"), "uri", {})


def test_overwrite_keeps_the_old_output_when_the_listing_fails_past_its_first_chunk(tmp_path):
    from ocr_actors.config import load_config
    from ocr_actors.io.listing import CHUNK_SIZE
    from ocr_actors.job_config import JobConfig
    from ocr_actors.pipeline.job import run_job

    output = tmp_path / "out"
    _done_from_rows(output, [("old.png", 0, 1)])
    manifest = tmp_path / "list.txt"
    # a full first chunk, then a long comment: the bad byte lies past the reader's first 8 MiB block
    good = "".join(f"/nowhere/{i}.png\n" for i in range(CHUNK_SIZE + 10)) + "#" + "x" * (9 << 20) + "\n"
    manifest.write_bytes(good.encode() + b"/nowhere/bad\xff.png\n")
    config = load_config(
        JobConfig, None, {"source.uri": str(manifest), "output.uri": str(output), "output.mode": "overwrite"}
    )
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        run_job(config, progress=None)
    assert [p.name for p in output.glob("part-*.parquet")] != [] and scan_done(str(output), {}).rows == 1


def test_done_index_from_part_files(tmp_path):
    done = _done_from_rows(
        tmp_path,
        [("one.png", 0, 1), ("whole.pdf", 0, 3), ("half.pdf", 2, 4)],
        [("whole.pdf", 1, 3), ("whole.pdf", 2, 3), ("whole.pdf", 2, 3)],
        [("bad.png", None, None), ("half.pdf", 0, 4)],
    )
    assert done.rows == 8
    assert len(done.complete) == 2 and "one.png" in done.complete and "whole.pdf" in done.complete
    assert done.failed_files == {"bad.png"}
    assert done.pages == {"half.pdf": {0, 2}} and done.page_counts == {"half.pdf": 4}
    assert done.missing_pages("half.pdf") == [1, 3] and done.missing_pages("whole.pdf") == []
    assert done.missing_pages("new.png") is None
    assert all(done.holds(u) for u in ("one.png", "whole.pdf", "half.pdf", "bad.png")) and not done.holds("new.png")
    plan = plan_work(["one.png", "whole.pdf", "half.pdf", "bad.png", "new.png"], done, "resume", None)
    assert [(i.source_uri, i.todo_pages) for i in plan.items] == [("half.pdf", "[1, 3]"), ("new.png", "")]
    assert scan_done(str(tmp_path / "nothing"), {}).rows == 0


def test_work_ranges_give_small_jobs_one_item_per_task_and_large_ones_bounded_ranges():
    from ocr_actors.io.workfiles import WorkFile, WorkRange, work_ranges

    small = work_ranges([WorkFile("a", 3), WorkFile("b", 2)])
    assert [(r.path, r.start, r.stop) for r in small] == [
        ("a", 0, 1),
        ("a", 1, 2),
        ("a", 2, 3),
        ("b", 0, 1),
        ("b", 1, 2),
    ]
    assert small[0] == WorkRange("a", 0, 1)
    middle = work_ranges([WorkFile("a", 50_000), WorkFile("b", 20_000)])  # 70 items a range
    assert {r.stop - r.start for r in middle[:-1]} <= {70, 20} and sum(r.stop - r.start for r in middle) == 70_000
    assert len(middle) <= 1_002 and all(r.stop <= 50_000 for r in middle if r.path == "a")
    huge = work_ranges([WorkFile(f"f{i}", 50_000) for i in range(40)])  # 2M items: capped at 1000 a range
    assert {r.stop - r.start for r in huge} == {1_000} and len(huge) == 2_000
    assert work_ranges([]) == []
    # resources.sources_per_range (job_gpu.yaml: 16): small jobs in ranges of at least that many,
    # never across files; large ones as before
    gpu = work_ranges([WorkFile("a", 40), WorkFile("b", 5)], min_items=16)
    assert [(r.path, r.start, r.stop) for r in gpu] == [("a", 0, 16), ("a", 16, 32), ("a", 32, 40), ("b", 0, 5)]
    assert work_ranges([WorkFile("a", 50_000), WorkFile("b", 20_000)], min_items=16) == middle


def test_work_spool_round_trip_reads_only_its_ranges(tmp_path):
    from ocr_actors.io.workfiles import WorkSpool, read_work_range, work_ranges

    spool = WorkSpool(str(tmp_path), "job-1", {})
    stale = tmp_path / "_jobs" / "job-1" / "work" / "work-00007.plan"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a killed run with the same job id")
    planner = Planner(DoneIndex(), "resume", None)
    spool.append(planner.plan_chunk([f"s3://b/{i}.png" for i in range(2_500)]))
    spool.append(planner.plan_chunk([]))  # nothing to do: no file
    spool.append(planner.plan_chunk(["s3://b/0.png", "s3://b/last.png"]))
    assert [f.rows for f in spool.files] == [2_500, 1] and spool.rows == 2_501 and not stale.exists()
    ranges = work_ranges(spool.files, max_tasks=3, max_items=1_000)
    assert [(r.start, r.stop) for r in ranges] == [(0, 834), (834, 1668), (1668, 2500), (0, 1)]
    uris = [u for r in ranges for u in read_work_range(r, {}).column("source_uri").to_pylist()]
    assert uris == [f"s3://b/{i}.png" for i in range(2_500)] + ["s3://b/last.png"]
    spool.remove()
    assert not (tmp_path / "_jobs" / "job-1" / "work").exists()
    spool.remove()  # idempotent


def test_work_files_hold_credentials_sealed_and_give_them_back_with_the_runs_key(tmp_path):
    """A user:password URL and a signed URL reach storage redacted and sealed (AES-GCM with the
    run's key); the loaders, given the spool's seal, read the whole URIs back; without it, or
    with another run's key, reading fails with a clear error, never with a wrong URI."""
    from ocr_actors.io.workfiles import SealError, UriSeal, WorkSpool, read_work_range, work_ranges

    secret_uris = [
        "http://scanner:HUNTER2pass@10.0.0.1/a.png",
        "https://h.example/b.pdf?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=S1GNATURE&X-Amz-Expires=60",
    ]
    plain = ["s3://b/plain.png", "/scans/2024-05-01T10:30_alice@corp.com.png"]  # nothing to redact
    spool = WorkSpool(str(tmp_path), "job-1", {})
    spool.append(Planner(DoneIndex(), "resume", None).plan_chunk([plain[0], *secret_uris, plain[1]]))
    (work_file,) = (tmp_path / "_jobs" / "job-1" / "work").iterdir()
    raw = work_file.read_bytes()
    for secret in (b"HUNTER2pass", b"AKIAEXAMPLE", b"S1GNATURE"):
        assert secret not in raw
    stored = pq.read_table(work_file)
    assert stored.column("source_uri").to_pylist() == [
        plain[0],
        "http://***@10.0.0.1/a.png",
        "https://h.example/b.pdf?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        plain[1],
    ]
    assert [v is not None for v in stored.column("sealed_uri").to_pylist()] == [False, True, True, False]
    (whole,) = work_ranges(spool.files, max_tasks=1)
    read = read_work_range(whole, {}, spool.seal)
    assert read.schema.names == ["source_uri", "todo_pages"]
    assert read.column("source_uri").to_pylist() == [plain[0], *secret_uris, plain[1]]
    with pytest.raises(SealError, match="the run's key was not given"):
        read_work_range(whole, {})
    with pytest.raises(SealError, match="sealed with another run's key"):
        read_work_range(whole, {}, UriSeal())
    assert UriSeal().key != UriSeal().key and len(UriSeal().key) == 32


def test_error_rows_of_retried_types_are_planned_again_and_then_removed(tmp_path):
    from ocr_actors.io.parquet import drop_retried_rows

    first = write_part(
        [
            part_row("net.png", None, None, "read_failed"),
            part_row("ok.png", 0, 1),
            part_row("bad.png", None, None, "corrupt"),
        ],
        str(tmp_path),
        {},
    )
    second = write_part(
        [
            part_row("doc.pdf", 0, 3),
            part_row("doc.pdf", 1, 3, "ocr_failed"),
            part_row("doc.pdf", 2, 3),
            part_row("gone.png", None, None, "not_found"),
        ],
        str(tmp_path),
        {},
    )
    kept = scan_done(str(tmp_path), {})  # no types to retry: every error row is final
    assert kept.retry == {} and kept.failed_files == {"net.png", "bad.png", "gone.png"}

    done = scan_done(str(tmp_path), {}, ("read_failed", "not_found", "ocr_failed"))
    assert done.retry == {"net.png": {None}, "doc.pdf": {1}, "gone.png": {None}}
    assert done.failed_files == {"bad.png"} and done.missing_pages("doc.pdf") == [1]
    assert done.retry_parts == {first: 1, second: 2}
    planner = Planner(done, "resume", None)
    work = planner.plan_chunk(["ok.png", "net.png", "bad.png", "doc.pdf"])  # gone.png is no longer listed
    assert work.to_pylist() == [
        {"source_uri": "net.png", "todo_pages": ""},
        {"source_uri": "doc.pdf", "todo_pages": "[1]"},
    ]
    assert planner.retried == {"net.png", "doc.pdf"}
    incremental = Planner(done, "incremental", None)  # sources in the output are skipped, their retry pages not
    assert incremental.plan_chunk(["ok.png", "net.png", "bad.png", "doc.pdf"]).to_pylist() == work.to_pylist()
    assert incremental.retried == {"net.png", "doc.pdf"}

    assert drop_retried_rows(str(tmp_path), {}, done, planner.retried) == 2
    first_rows = pq.read_table(first).to_pylist()
    second_rows = pq.read_table(second).to_pylist()  # the same files, rewritten under their names
    assert [(r["source_uri"], r["page_index"]) for r in first_rows] == [("ok.png", 0), ("bad.png", None)]
    assert [(r["source_uri"], r["page_index"]) for r in second_rows] == [
        ("doc.pdf", 0),
        ("doc.pdf", 2),
        ("gone.png", None),
    ]
    assert not list((tmp_path / "_tmp").iterdir())
    assert scan_done(str(tmp_path), {}, ("read_failed", "not_found", "ocr_failed")).retry == {"gone.png": {None}}

    only = write_part([part_row("alone.png", None, None, "read_failed")], str(tmp_path), {})
    done = scan_done(str(tmp_path), {}, ("read_failed",))
    assert drop_retried_rows(str(tmp_path), {}, done, {"alone.png"}) == 1
    assert not (tmp_path / only.rsplit("/", 1)[-1]).exists()  # no row left: the file goes


def test_a_folder_listing_counts_what_it_leaves_out(tmp_path):
    from ocr_actors.io.listing import ListingReport, iter_sources

    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.PDF").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "README").write_text("x")
    (tmp_path / "layers.PSD").write_bytes(b"x")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "folder-link").symlink_to(tmp_path / "sub")
    report = ListingReport()
    listed = [u for chunk in iter_sources(str(tmp_path), "", {}, report=report) for u in chunk]
    assert listed == [str(tmp_path / "a.png"), str(tmp_path / "sub" / "b.PDF")]
    assert report.skipped == {
        "not an image or PDF: .txt": 1,
        "not an image or PDF: no suffix": 1,
        "not an image or PDF: .psd": 1,
        "a dangling or looping link": 2,
        "a link to a folder": 1,
    }
    assert report.total == 6 and len(report.examples) == 5
    assert f"{tmp_path}/README (not an image or PDF: no suffix)" in report.examples

    many = ListingReport()
    for i in range(ListingReport.MAX_REASONS + 10):
        many.skip(f"f{i}", f"not an image or PDF: .x{i}")
    assert len(many.skipped) == ListingReport.MAX_REASONS + 1 and many.skipped["other"] == 10


def test_a_manifest_named_by_a_relative_path_resolves_relative_entries_to_absolute_paths(tmp_path, monkeypatch):
    """``--input list.txt`` from the manifest's folder: a relative entry is the manifest's
    neighbour, as an absolute path (workers run in other folders), not ``list.txt/a.png``."""
    (tmp_path / "list.txt").write_text("a.png\nsub/b.png\n")
    monkeypatch.chdir(tmp_path)
    for given in ("list.txt", "./list.txt"):
        assert list_sources(given, "uri", {}) == [f"{tmp_path}/a.png", f"{tmp_path}/sub/b.png"]


def test_an_output_inside_the_input_is_passed_over_without_a_word(tmp_path, monkeypatch):
    """``--input in/ --output in/out/``: the job's own part files and run records under the
    output are not sources and not counted as left out (the count grew with every run);
    other files that are no documents still are."""
    from ocr_actors.io.listing import ListingReport, iter_sources, listing_form

    (tmp_path / "in" / "out" / "_jobs" / "run1").mkdir(parents=True)
    (tmp_path / "in" / "scan.png").write_bytes(b"x")
    (tmp_path / "in" / "notes.txt").write_text("x")
    (tmp_path / "in" / "out" / "part-1.parquet").write_bytes(b"x")
    (tmp_path / "in" / "out" / "_jobs" / "run1" / "summary.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for output in ("in/out/", f"file://{tmp_path}/in/./out", "in/out"):
        for given in ("in", "./in/../in"):
            report = ListingReport(own_output=listing_form(output))
            sources = [u for chunk in iter_sources(given, "uri", {}, report=report) for u in chunk]
            assert sources == [f"{tmp_path}/in/scan.png"]
            assert dict(report.skipped) == {"not an image or PDF: .txt": 1}, (output, given)
    # a glob names every file, the output's own too: those are passed over, the rest stay sources
    report = ListingReport(own_output=listing_form("in/out"))
    assert [u for chunk in iter_sources("in/**", "uri", {}, report=report) for u in chunk] == [
        f"{tmp_path}/in/notes.txt",
        f"{tmp_path}/in/scan.png",
    ]
    # an output that holds the input (input proj/raw, output proj): only its own files pass over
    report = ListingReport(own_output=listing_form(str(tmp_path)))
    assert [u for chunk in iter_sources("in", "uri", {}, report=report) for u in chunk] == [f"{tmp_path}/in/scan.png"]
    assert report.total == 3  # notes.txt, and the inner output's part file and summary: not this output's
    assert listing_form("s3://bucket/out/") == "s3://bucket/out"


def test_a_path_through_a_link_and_up_is_keyed_by_the_folder_it_reads_from(tmp_path):
    """``link/../x.png`` reads from the link target's parent: that is its key, not the
    lexical ``x.png`` beside the link; paths without ``..`` keep their links as named."""
    from ocr_actors.io.listing import local_key

    (tmp_path / "volume" / "scans").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to(tmp_path / "volume" / "scans")
    assert local_key(f"{tmp_path}/data/link/../x.png") == f"{tmp_path}/volume/x.png"
    assert local_key(f"{tmp_path}/data/./link//x.png") == f"{tmp_path}/data/link/x.png"
