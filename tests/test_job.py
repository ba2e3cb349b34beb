"""The batch job on a local Ray with real models: rows, error rows, resume, incremental,
manifests, the error budget, the CLI, and a driver killed with SIGKILL midway."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ocr_actors.config import load_config
from ocr_actors.io.lease import OutputLease
from ocr_actors.io.parquet import PAGE_SCHEMA, list_parts
from ocr_actors.job_config import JobConfig
from ocr_actors.pipeline import run_job
from ocr_actors.pipeline.job import ErrorBudgetExceeded, plan_only
from ocr_actors.synth import render_page
from tests.conftest import page_cer

RAY = {"ray.num_cpus": 2, "ray.object_store_memory": 512 << 20, "progress_interval_s": 1}


def job_config(source: str, output: Path, **overrides: object) -> JobConfig:
    values: dict[str, object] = {"source.uri": source, "output.uri": str(output), "max_error_rate": 1.0, **RAY}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(JobConfig, None, values)


def write_pdf(path: Path, pages: list) -> None:
    grey = [Image.fromarray(cv2.cvtColor(p.image, cv2.COLOR_BGR2GRAY)) for p in pages]
    grey[0].save(path, "PDF", resolution=144, save_all=True, append_images=grey[1:])


def rows_of(output: Path) -> list[dict]:
    return (
        duckdb.sql(f"select * from '{output}/*.parquet' order by source_uri, page_index").to_arrow_table().to_pylist()
    )


def assert_pages_read(rows: list[dict], truth: dict[tuple[str, int], str], ok_pages: int) -> None:
    """``ok_pages`` rows are ok, and each reads its page's truth with CER < 2%."""
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == ok_pages
    for row in ok:
        assert page_cer(row["text"].splitlines(), truth[(row["source_uri"], row["page_index"])].splitlines()) < 0.02


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("job_inputs")
    truth: dict[tuple[str, int], str] = {}
    for i in range(2):
        page = render_page(seed=400 + i, lines_per_column=5)
        path = folder / f"page{i}.png"
        cv2.imwrite(str(path), page.image)
        truth[(str(path), 0)] = page.text
    pdf_pages = [render_page(seed=410 + i, lines_per_column=4) for i in range(3)]
    write_pdf(folder / "doc.pdf", pdf_pages)
    for i, page in enumerate(pdf_pages):
        truth[(str(folder / "doc.pdf"), i)] = page.text
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "notes.pdf").write_bytes(b"this is a text file, not a PDF")
    (folder / "README.txt").write_text("not a source: left out of the listing, and counted")
    return folder, truth


def test_job_writes_one_row_per_page_plus_error_rows(inputs, tmp_path):
    folder, truth = inputs
    summary = run_job(job_config(str(folder), tmp_path / "out"))
    assert summary.status == "succeeded"
    assert summary.sources_total == 6
    assert summary.rows_written == 5 + 3  # pages in + failed files
    assert summary.errors_by_type == {"corrupt": 1, "empty": 1, "unsupported_type": 1}
    assert (summary.sources_left_out, summary.left_out_by_reason) == (1, {"not an image or PDF: .txt": 1})
    assert set(summary.seconds_per_stage) >= {"load", "detect", "crop", "recognize"}
    assert summary.seconds_per_stage["crop"] > 0  # cropping ran (in the detection actors: crop_in_detect)
    # CPU time per stage beside wall time: same stages; the models' stages cost real CPU
    assert set(summary.cpu_seconds_per_stage) == set(summary.seconds_per_stage)
    cpu = summary.cpu_seconds_per_stage
    assert cpu["load"] > 0.01 and cpu["detect"] > 0.05 and cpu["recognize"] > 0.05

    table = pq.read_table(next((tmp_path / "out").glob("part-*.parquet")))
    assert table.schema.remove_metadata().equals(PAGE_SCHEMA.remove_metadata())
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 8
    assert len({(r["source_uri"], r["page_index"]) for r in rows}) == 8
    for row in rows:
        key = (row["source_uri"], row["page_index"])
        if row["status"] == "ok":
            assert page_cer(row["text"].splitlines(), truth[key].splitlines()) < 0.02, row["text"]
            assert row["page_count"] == (3 if row["source_uri"].endswith("doc.pdf") else 1)
            assert len(row["lines"]) == len(truth[key].splitlines())
            first = row["lines"][0]
            assert len(first["poly"]) == 4 and all(len(p) == 2 for p in first["poly"])
            assert first["box"][0] <= first["poly"][0][0] and first["angle"] == -1
            if row["source_uri"].endswith(".png"):
                assert (row["width"], row["height"], row["dpi"]) == (1240, 1754, None)
            else:
                assert row["dpi"] == 144.0 and row["width"] > 0 and row["height"] > 0
            assert row["det_model"] == "PP-OCRv6_tiny_det" and row["job_id"] == summary.job_id
        else:
            assert row["page_index"] is None and row["text"] is None
            assert row["error_type"] in {"corrupt", "empty", "unsupported_type"}
            assert Path(row["source_uri"]).name in {"corrupt.png", "empty.pdf", "notes.pdf"}
            assert row["error_message"]

    # DuckDB answers the README's example queries on the output.
    by_status = dict(duckdb.sql(f"select status, count(*) from '{tmp_path}/out/*.parquet' group by 1").fetchall())
    assert by_status == {"ok": 5, "error": 3}
    lines = duckdb.sql(
        f"select count(*) from (select unnest(lines) as l from '{tmp_path}/out/*.parquet') where l.score > 0.5"
    ).fetchall()
    assert lines[0][0] == sum(len(t.splitlines()) for t in truth.values())
    # So does Polars (the README's scan), reading the nested lines column.
    frame = (
        pl.scan_parquet(f"{tmp_path}/out/*.parquet")
        .filter(pl.col("status") == "ok")
        .explode("lines")
        .select(pl.col("lines").struct.field("text").alias("line"), "source_uri", "page_index")
        .collect()
    )
    assert frame.height == lines[0][0]
    expected_lines = {line for t in truth.values() for line in t.splitlines()}
    assert len(set(frame["line"].to_list()) & expected_lines) >= 0.9 * len(expected_lines)

    job_dir = tmp_path / "out" / "_jobs" / summary.job_id
    saved = json.loads((job_dir / "summary.json").read_text())
    assert saved["rows_written"] == 8
    assert "source:" in (job_dir / "config.yaml").read_text()
    assert sorted(p.name for p in job_dir.iterdir()) == ["config.yaml", "summary.json"]  # work files removed


def test_progress_lines_count_sources_and_the_summary_times_the_files_written(inputs, tmp_path):
    folder, _ = inputs
    said = io.StringIO()
    config = job_config(str(folder), tmp_path / "out", output__rows_per_file=1, progress_interval_s=0.1)
    summary = run_job(config, progress=said)
    lines = said.getvalue().splitlines()
    assert all(re.match(rf"\[ocr-batch {summary.job_id} \d\d:\d\d:\d\d\] ", line) for line in lines)
    counts = [tuple(map(int, m.groups())) for m in (re.search(r"\] (\d+)/(\d+) sources", x) for x in lines) if m]
    assert counts and all(total == 6 for _, total in counts)  # 6 sources planned: 3 images, a PDF, 2 bad files
    assert [done for done, _ in counts] == sorted(done for done, _ in counts) and counts[-1][0] <= 6
    assert counts[-1] == (6, 6)  # the last line: every source done
    # Timed by the files' own write times: the first one within the run, the rate from it on
    # consistent with the rest of the run.
    assert 0 < summary.first_output_seconds < summary.wall_seconds and summary.files_written == 8
    assert summary.steady_pages_per_second > 0
    assert summary.first_output_seconds + 7 / summary.steady_pages_per_second <= summary.wall_seconds + 0.5


def test_rerun_skips_done_work_and_finishes_a_partial_document(inputs, tmp_path):
    folder, _ = inputs
    out = tmp_path / "out"
    first = run_job(job_config(str(folder), out, output__rows_per_file=1))
    assert first.files_written == 8
    again = run_job(job_config(str(folder), out, output__rows_per_file=1))
    assert (again.sources_skipped, again.rows_written) == (6, 0)
    assert first.settings_changed == again.settings_changed == {}
    # Another recogniser: a dry run says the rows were read otherwise, by the newest run that
    # wrote rows (the second wrote none), and how to read them again.
    said = io.StringIO()
    small_rec = {"ocr.text_recognition.model": "PP-OCRv6_small_rec", "ocr.text_detection.box_thresh": 0.5}
    plan = plan_only(job_config(str(folder), out, **small_rec), progress=said)
    assert plan["settings_changed"] == {
        "since_job": first.job_id,
        "changes": {
            "text_detection.box_thresh": [None, 0.5],
            "text_recognition.model": ["PP-OCRv6_tiny_rec", "PP-OCRv6_small_rec"],
        },
    }
    assert "text_recognition.model PP-OCRv6_tiny_rec -> PP-OCRv6_small_rec" in said.getvalue()
    assert "--mode overwrite" in said.getvalue() and plan["sources_skipped"] == 6
    # Lose the file holding page 1 of the PDF: the rerun redoes that page alone.
    lost = duckdb.sql(
        f"select filename from read_parquet('{out}/*.parquet', filename=true) "
        "where source_uri like '%doc.pdf' and page_index = 1"
    ).fetchall()
    assert len(lost) == 1
    Path(lost[0][0]).unlink()
    healed = run_job(job_config(str(folder), out, output__rows_per_file=1))
    assert (healed.sources_partial, healed.rows_written) == (1, 1) and healed.settings_changed == {}
    recorded = json.loads((out / "_jobs" / "_settings.json").read_text())  # the newest run that wrote rows
    assert recorded["job_id"] == healed.job_id and recorded["ocr"]["text_recognition"]["model"] == "PP-OCRv6_tiny_rec"
    rows = rows_of(out)
    assert len(rows) == 8
    assert sorted(r["page_index"] for r in rows if r["source_uri"].endswith("doc.pdf")) == [0, 1, 2]


def test_the_gpu_config_runs_on_a_machine_without_gpus(inputs, tmp_path):
    folder, truth = inputs
    config = load_config(
        JobConfig,
        Path(__file__).resolve().parent.parent / "jobs" / "configs" / "job_gpu.yaml",
        {"source.uri": str(folder), "output.uri": str(tmp_path / "out"), "max_error_rate": 1.0, **RAY},
    )
    progress = io.StringIO()
    summary = run_job(config, progress=progress)
    assert summary.status == "succeeded" and summary.gpu_fallback
    assert "no GPU in the cluster: detection and recognition run on CPU" in progress.getvalue()
    ok = [r for r in rows_of(tmp_path / "out") if r["status"] == "ok"]
    assert len(ok) == 5
    for row in ok:
        assert page_cer(row["text"].splitlines(), truth[(row["source_uri"], row["page_index"])].splitlines()) < 0.02
    saved = (tmp_path / "out" / "_jobs" / summary.job_id / "config.yaml").read_text()
    assert "device: cpu" in saved and "num_gpus: 0.25" not in saved  # the config that ran


GPU_SHAPES = {  # job_gpu.yaml's bounded shapes, smaller: one detector canvas, four recognition widths
    "ocr.text_detection.batch_pad_multiple": 960,
    "ocr.text_recognition.batch_size": 16,
    "ocr.text_recognition.pad_batch": True,
    "ocr.text_recognition.width_buckets": [320, 640, 1280, 3200],
    "ocr.text_recognition.warmup": True,
}


def test_gpu_shape_settings_in_the_job_read_the_same_pages(inputs, tmp_path):
    """The bounded shapes of job_gpu.yaml (one detector page shape; recognition batches of a
    fixed row count and bucketed widths, warmed at actor start) through the Ray actors, on CPU;
    here, as in job_gpu.yaml, with load tasks before the actors (``load_in_actors: false``) and
    with cropping in CPU tasks between them (``crop_in_detect: false``)."""
    folder, truth = inputs
    config = job_config(
        str(folder),
        tmp_path / "out",
        resources__load_in_actors=False,
        resources__crop_in_detect=False,
        **GPU_SHAPES,
    )
    summary = run_job(config, progress=io.StringIO())
    assert summary.status == "succeeded" and summary.seconds_per_stage["crop"] > 0
    assert_pages_read(rows_of(tmp_path / "out"), truth, ok_pages=5)


def test_one_model_pool_as_in_job_gpu_yaml_reads_the_same_pages(inputs, tmp_path):
    """``resources.models_in_one_actor`` with job_gpu.yaml's other settings, on CPU: one actor
    detects (runs of powers of two on one warmed canvas), crops, classifies line orientation
    and recognises (bucketed, padded, warmed batches), two calls at once, after load tasks;
    every page once, each stage timed, pages read right."""
    folder, truth = inputs
    config = job_config(
        str(folder),
        tmp_path / "out",
        resources__models_in_one_actor=True,
        resources__load_in_actors=False,
        resources__detect__concurrent_calls=2,
        resources__detect__batch_size=3,
        ocr__textline_orientation__use_textline_orientation=True,
        ocr__text_detection__batch_size=2,
        ocr__text_detection__warmup=True,
        **GPU_SHAPES,
    )
    summary = run_job(config, progress=io.StringIO())
    assert summary.status == "succeeded" and summary.rows_written == 8
    assert all(summary.seconds_per_stage[stage] > 0 for stage in ("load", "detect", "crop", "lineori", "recognize"))
    rows = rows_of(tmp_path / "out")
    assert len({(r["source_uri"], r["page_index"]) for r in rows}) == 8
    angles = [line["angle"] for r in rows if r["status"] == "ok" for line in r["lines"]]
    assert len(angles) >= 20 and set(angles) <= {0, 180}  # the orientation stage ran on every line
    assert_pages_read(rows, truth, ok_pages=5)


def test_model_actors_running_batches_in_threads_read_the_same_pages(inputs, tmp_path):
    """``resources.<stage>.concurrent_calls``: one detection and one recognition actor, each
    running two one-page batches at once on its sessions, write every page once, read alike."""
    folder, truth = inputs
    config = job_config(
        str(folder),
        tmp_path / "out",
        resources__detect__concurrent_calls=2,
        resources__detect__batch_size=1,
        resources__recognize__concurrent_calls=2,
        resources__recognize__batch_size=1,
        resources__recognize__min_actors=1,
        resources__recognize__max_actors=1,
    )
    summary = run_job(config, progress=io.StringIO())
    assert summary.status == "succeeded" and summary.rows_written == 8
    rows = rows_of(tmp_path / "out")
    assert len({(r["source_uri"], r["page_index"]) for r in rows}) == 8
    assert_pages_read(rows, truth, ok_pages=5)


def test_detection_actors_that_load_their_own_pages_give_the_same_rows(inputs, tmp_path):
    """``resources.load_in_actors``: no load tasks; the detection actors (two calls at once
    each) read and decode their work ranges, a PDF fanning out and bad files becoming the same
    error rows as with load tasks; every page once, read right."""
    folder, truth = inputs
    config = job_config(
        str(folder),
        tmp_path / "out",
        resources__load_in_actors=True,
        resources__detect__concurrent_calls=2,
        resources__detect__batch_size=2,
    )
    summary = run_job(config, progress=io.StringIO())
    assert summary.status == "succeeded" and summary.rows_written == 8
    assert summary.errors_by_type == {"corrupt": 1, "empty": 1, "unsupported_type": 1}
    assert (summary.sources_left_out, summary.left_out_by_reason) == (1, {"not an image or PDF: .txt": 1})
    assert summary.cpu_seconds_per_stage["load"] > 0.01 and summary.seconds_per_stage["crop"] > 0
    rows = rows_of(tmp_path / "out")
    assert len({(r["source_uri"], r["page_index"]) for r in rows}) == 8
    assert sorted(r["page_count"] for r in rows if r["status"] == "ok") == [1, 1, 3, 3, 3]
    assert_pages_read(rows, truth, ok_pages=5)


@pytest.mark.parametrize(
    ("overrides", "operators"),
    [
        ({}, ["LoadThen", "RecognizeText", "write_parquet"]),  # detection loads and crops
        (
            {"ocr.doc_preprocessor.use_doc_orientation_classify": True},
            ["LoadThen", "DetectText", "RecognizeText", "write_parquet"],  # document preprocessing loads
        ),
        ({"resources.load_in_actors": False}, ["load_work", "DetectText", "RecognizeText", "write_parquet"]),
        (
            {"resources.load_in_actors": False, "resources.crop_in_detect": False},
            ["load_work", "DetectText", "crop_text_lines", "RecognizeText", "write_parquet"],
        ),
        (  # one model pool (job_gpu.yaml): detection, cropping and recognition in one actor
            {"resources.load_in_actors": False, "resources.models_in_one_actor": True},
            ["load_work", "StageChain", "write_parquet"],
        ),
        ({"resources.models_in_one_actor": True}, ["LoadThen", "write_parquet"]),  # ... which loads too
    ],
)
def test_the_operator_chain_follows_the_layout_settings(overrides, operators):
    """Which Ray Data operators a job builds: the first model actor loads (detection, or
    document preprocessing when it is on) unless ``load_in_actors`` is false; crop tasks only
    without ``crop_in_detect``."""
    import ray

    from ocr_actors.io.workfiles import WorkRange
    from ocr_actors.pipeline.job import build_dataset

    config = load_config(JobConfig, None, {"output.uri": "/tmp/unused", **overrides})
    ray.shutdown()
    ray.init(address="local", num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False)
    try:
        chain = repr(build_dataset(config, [WorkRange("/tmp/unused/work.parquet", 0, 1)], "job"))
    finally:
        ray.shutdown()
    names = (
        "load_work",
        "LoadThen",
        "DocPreprocess",
        "DetectText",
        "crop_text_lines",
        "StageChain",
        "RecognizeText",
        "write_parquet",
    )
    found = [name for name in names if f"MapBatches({name})" in chain]
    # the repr lists the operators from the last to the first
    assert sorted(found, key=lambda name: -chain.index(f"MapBatches({name})")) == operators


def test_the_embedded_ray_keeps_an_idle_task_worker_for_the_next_task(tmp_path):
    """Tasks seconds apart while actors hold the other workers (the write tasks of a job) reuse
    one warm worker process instead of starting one, seconds of imports, per task (Ray ends
    workers idle for 1 s by default)."""
    import ray

    from ocr_actors.pipeline.job import _ensure_ray

    @ray.remote(num_cpus=0.5)
    class Holder:
        def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0.5)
    def task_pid() -> int:
        return os.getpid()

    ray.shutdown()
    _ensure_ray(job_config(str(tmp_path), tmp_path / "out"))
    try:
        holders = [Holder.remote() for _ in range(3)]  # more workers than the CPUs Ray keeps idle
        ray.get([h.pid.remote() for h in holders])
        pids = []
        for _ in range(3):
            pids.append(ray.get(task_pid.remote()))
            time.sleep(2.5)  # well past Ray's default of 1 s idle
        assert len(set(pids)) == 1, pids
    finally:
        ray.shutdown()


def test_grey_and_colour_pages_share_batches_and_read_alike(tmp_path):
    """Grey pages move through the job with one channel (grey PNG stored as RGB, a greyscale
    JPEG), colour ones with three; in the same batches of every stage (document orientation and
    text-line orientation on too) both read right. The document-orientation actors load their
    own pages here (``resources.load_in_actors``: the first model stage loads)."""
    folder = tmp_path / "in"
    folder.mkdir()
    truth: dict[tuple[str, int], str] = {}
    pages = [render_page(seed=470 + i, lines_per_column=5) for i in range(3)]
    cv2.imwrite(str(folder / "grey_as_rgb.png"), pages[0].image)
    tinted = pages[1].image.copy()
    tinted[:, :, 0] = (tinted[:, :, 0] * 0.8).astype("uint8")  # yellowish paper, dark text
    cv2.imwrite(str(folder / "colour.png"), tinted)
    Image.fromarray(cv2.cvtColor(pages[2].image, cv2.COLOR_BGR2GRAY), "L").save(folder / "grey.jpg", quality=95)
    for name, page in zip(("grey_as_rgb.png", "colour.png", "grey.jpg"), pages, strict=True):
        truth[(str(folder / name), 0)] = page.text
    config = job_config(
        str(folder),
        tmp_path / "out",
        resources__detect__batch_size=4,
        resources__load_in_actors=True,
        ocr__doc_preprocessor__use_doc_orientation_classify=True,
        ocr__textline_orientation__use_textline_orientation=True,
    )
    summary = run_job(config, progress=io.StringIO())
    assert summary.status == "succeeded" and summary.error_rows == 0
    rows = rows_of(tmp_path / "out")
    assert [(r["width"], r["height"], r["doc_angle"]) for r in rows] == [(1240, 1754, 0)] * 3
    assert_pages_read(rows, truth, ok_pages=3)


def copy_sources(folder: Path, target: Path, names: tuple[str, ...] = ("page0.png", "doc.pdf")) -> Path:
    """``target`` made with copies of the named input files (a prefix that grows between runs)."""
    target.mkdir(exist_ok=True)
    for name in names:
        (target / name).write_bytes((folder / name).read_bytes())
    return target


def test_incremental_processes_only_new_objects_and_overwrite_redoes_all(inputs, tmp_path):
    folder, _ = inputs
    source = copy_sources(folder, tmp_path / "src")
    out = tmp_path / "out"
    assert run_job(job_config(str(source), out)).rows_written == 4
    copy_sources(folder, source, ("page1.png",))
    files_before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    plan = plan_only(job_config(str(source), out, output__mode="incremental"), progress=None)  # --dry-run
    assert (plan["sources_total"], plan["sources_skipped"], plan["sources_processed"]) == (3, 2, 1)
    assert plan["rows_in_output"] == 4 and plan["error_rows_to_retry"] == 0
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == files_before  # no writes
    new = run_job(job_config(str(source), out, output__mode="incremental"))
    assert (new.sources_skipped, new.sources_processed, new.rows_written) == (2, 1, 1)
    said = io.StringIO()  # a dry run of overwrite says what it would remove
    plan = plan_only(job_config(str(source), out, output__mode="overwrite"), progress=said)
    parts = len(list_parts(str(out), {}))
    assert (plan["sources_processed"], plan["rows_in_output"], plan["part_files_to_remove"]) == (3, 5, parts)
    assert f"overwrite would remove the output's {parts} part files and their 5 rows first" in said.getvalue()
    redo = run_job(job_config(str(source), out, output__mode="overwrite"))
    assert redo.rows_written == 5
    assert len(rows_of(out)) == 5


def test_scheduled_incremental_runs_with_compact_keep_few_files_and_finish_an_interrupted_compaction(inputs, tmp_path):
    """``output.compact``: an incremental run finishes the compaction a killed run left (its
    rows were there twice), processes the new object, then merges the small part files; each
    page ends in the output once, read by DuckDB."""
    from ocr_actors.io.compact import merge_group, read_part_sizes

    folder, truth = inputs
    source = copy_sources(folder, tmp_path / "src")
    out = tmp_path / "out"
    first = run_job(job_config(str(source), out, output__rows_per_file=1))
    assert first.rows_written == 4 and len(list_parts(str(out), {})) == 4

    def killed() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # the state a compaction killed midway leaves
        merge_group(str(out), {}, read_part_sizes(str(out), {})[:2], before_delete=killed)
    assert len(rows_of(out)) == 6

    copy_sources(folder, source, ("page1.png",))
    progress = io.StringIO()
    config = job_config(str(source), out, output__mode="incremental", output__rows_per_file=20, output__compact=True)
    second = run_job(config, progress=progress)
    assert (second.sources_skipped, second.rows_written) == (2, 1)  # the doubled rows did not confuse the plan
    assert "finished 1 compactions that an interrupted run left" in progress.getvalue()
    assert second.compaction["files_after"] == 1 and second.compaction["rows_moved"] == 5
    assert second.compaction["footers_read"] == 0  # every count known from the run's start and its writes
    assert "compaction: 4 small part files (5 rows) merged into 1; 1 part files now (were 4)" in progress.getvalue()
    rows = rows_of(out)
    assert len(list_parts(str(out), {})) == 1 and len(rows) == 5
    assert len({(r["source_uri"], r["page_index"]) for r in rows}) == 5
    copied = {(str(source / Path(uri).name), page): text for (uri, page), text in truth.items()}
    assert_pages_read(rows, copied, ok_pages=5)
    summary = json.loads((out / "_jobs" / second.job_id / "summary.json").read_text())
    assert summary["compaction"]["files_merged"] == 4
    from ocr_actors.pipeline.status import output_status

    status = output_status(str(out), {}, rows_per_file=20)
    assert (status.rows, status.sources, status.pages_ok, status.part_files, status.mergeable_files) == (5, 3, 5, 1, 0)
    assert [r["job_id"] for r in status.runs] == [second.job_id, first.job_id]  # newest first
    assert status.runs[0]["status"] == "succeeded" and status.lease is None and status.pending_compactions == 0

    # A compaction that fails (its journal folder cannot be made) leaves the run succeeded.
    (out / "_jobs" / "_compact").rmdir()
    (out / "_jobs" / "_compact").write_text("in the way")
    copy_sources(folder, source, ("corrupt.png",))
    progress = io.StringIO()
    third = run_job(config, progress=progress)
    assert third.status == "succeeded" and third.rows_written == 1 and third.compaction == {}
    assert "compaction failed (" in progress.getvalue() and "every row is in the output" in progress.getvalue()
    assert len(rows_of(out)) == 6 and len(list_parts(str(out), {})) == 2  # nothing lost, nothing merged


def test_manifests_in_text_csv_and_parquet(inputs, tmp_path):
    folder, _ = inputs
    (tmp_path / "list.txt").write_text(f"# scans\n{folder}/page0.png\n\n{folder}/doc.pdf\n{folder}/page0.png\n")
    (tmp_path / "list.csv").write_text(f"id,uri\n1,{folder}/page1.png\n")
    pq.write_table(pa.table({"path": [f"{folder}/page0.png"]}), tmp_path / "list.parquet")
    listed = run_job(job_config(str(tmp_path / "list.txt"), tmp_path / "o1"))
    assert (listed.rows_written, listed.sources_total, listed.duplicate_sources) == (4, 2, 1)
    assert run_job(job_config(str(tmp_path / "list.csv"), tmp_path / "o2")).rows_written == 1
    parquet = job_config(str(tmp_path / "list.parquet"), tmp_path / "o3", source__manifest_column="path")
    assert run_job(parquet).rows_written == 1


def test_unreadable_entries_and_credentials_in_urls_become_redacted_error_rows(inputs, tmp_path):
    """A named pipe (reading it would block forever), a symlink loop, a folder, a refused
    connection, a user:password URL and a signed URL: one error row each, the good page
    read, no secret anywhere in the output, and reruns that know each source."""
    folder, truth = inputs
    odd = tmp_path / "odd"
    odd.mkdir()
    os.mkfifo(odd / "pipe.png")
    (odd / "loop.png").symlink_to(odd / "loop.png")
    (odd / "folder.png").mkdir()
    listed = [
        f"{folder}/page0.png",
        f"{odd}/pipe.png",
        f"{odd}/loop.png",
        f"{odd}/folder.png",
        "http://scanner:SUPERSECRET1@127.0.0.1:1/a.png",
        "http://127.0.0.1:1/b.png?X-Amz-Credential=AKIA&X-Amz-Signature=SUPERSECRET2&X-Amz-Expires=60",
    ]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    summary = run_job(job_config(str(tmp_path / "list.txt"), tmp_path / "out"))
    assert summary.status == "succeeded" and summary.rows_written == 6
    assert summary.errors_by_type == {"unsupported_type": 2, "read_failed": 3}
    rows = {r["source_uri"]: r for r in rows_of(tmp_path / "out")}
    assert_pages_read([rows[f"{folder}/page0.png"]], truth, 1)
    assert rows[f"{odd}/pipe.png"]["error_message"].endswith("is not a regular file (type other)")
    assert rows[f"{odd}/folder.png"]["error_message"].endswith("is not a regular file (type directory)")
    assert "Too many levels of symbolic links" in rows[f"{odd}/loop.png"]["error_message"]
    signed = "http://127.0.0.1:1/b.png?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"
    for uri in ("http://***@127.0.0.1:1/a.png", signed):
        assert rows[uri]["error_type"] == "read_failed" and uri in rows[uri]["error_message"]
        assert rows[uri]["doc_id"] == hashlib.sha1(uri.encode()).hexdigest()[:16]
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert b"SUPERSECRET" not in path.read_bytes(), path
    # A rerun knows every source by its redacted form: the final errors and the page are done;
    # the three read failures (maybe passing) are done again, and each source keeps one row.
    rerun = run_job(job_config(str(tmp_path / "list.txt"), tmp_path / "out"))
    assert (rerun.sources_total, rerun.sources_skipped, rerun.rows_retried, rerun.rows_written) == (6, 3, 3, 3)
    assert sorted(r["source_uri"] for r in rows_of(tmp_path / "out")) == sorted(rows)
    again = run_job(job_config(str(tmp_path / "list.txt"), tmp_path / "out", output__retry_errors=[]))
    assert (again.sources_skipped, again.rows_written) == (6, 0)


def test_a_signed_url_is_read_while_its_secret_stays_off_storage(inputs, tmp_path):
    """A signed URL the server checks: the page is read (so the loader had the whole URL),
    its row names it redacted, and while the job fetched it the job's own files under the
    output (its work files among them) held no trace of the signature."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    folder, truth = inputs
    page = (folder / "page1.png").read_bytes()
    out = tmp_path / "out"
    seen: list[tuple[str, bool]] = []  # (signature sent, secret found in the output's files then)

    class Signed(BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            signature = parse_qs(urlsplit(self.path).query).get("X-Amz-Signature", [""])[0]
            files = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
            seen.append((signature, any(b"SUPERSECRET4" in p.read_bytes() for p in files)))
            if signature != "SUPERSECRET4":
                self.send_response(403)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if body:
                self.wfile.write(page)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Signed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        signed = f"http://127.0.0.1:{port}/scan.png?X-Amz-Credential=AKIA&X-Amz-Signature=SUPERSECRET4"
        (tmp_path / "list.txt").write_text(f"{signed}\n")
        summary = run_job(job_config(str(tmp_path / "list.txt"), out))
    finally:
        server.shutdown()
    assert summary.status == "succeeded" and summary.pages_ok == 1, summary.errors_by_type
    (row,) = rows_of(out)
    assert row["source_uri"] == f"http://127.0.0.1:{port}/scan.png?X-Amz-Credential=***&X-Amz-Signature=***"
    assert page_cer(row["text"].splitlines(), truth[(str(folder / "page1.png"), 0)].splitlines()) < 0.02
    assert seen and all(signature == "SUPERSECRET4" for signature, _ in seen)
    assert not any(leaked for _, leaked in seen)  # the work files were there, sealed
    for path in out.rglob("*"):
        if path.is_file():
            assert b"SUPERSECRET4" not in path.read_bytes(), path


def test_a_rerun_retries_a_missing_file_once_it_is_there_and_keeps_final_errors(inputs, tmp_path):
    folder, truth = inputs
    later = tmp_path / "later.png"
    listed = [f"{folder}/page0.png", str(later), f"{folder}/corrupt.png"]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    first = run_job(job_config(str(tmp_path / "list.txt"), tmp_path / "out"))
    assert first.errors_by_type == {"not_found": 1, "corrupt": 1} and first.rows_retried == 0

    later.write_bytes((folder / "page1.png").read_bytes())  # the object turns up
    second = run_job(job_config(str(tmp_path / "list.txt"), tmp_path / "out", output__compact=True))
    assert (second.sources_skipped, second.sources_processed, second.rows_retried) == (2, 1, 1)
    assert second.rows_written == 1 and second.pages_ok == 1
    # The compaction knew the new file's rows; the file that lost its error row was read anew.
    assert (second.compaction["rows_moved"], second.compaction["footers_read"]) == (3, 1)
    assert len(list_parts(str(tmp_path / "out"), {})) == 1
    rows = rows_of(tmp_path / "out")
    assert [(r["source_uri"], r["status"], r["error_type"]) for r in rows] == sorted(
        [(listed[0], "ok", None), (str(later), "ok", None), (listed[2], "error", "corrupt")]
    )
    truth_later = {(str(later), 0): truth[(f"{folder}/page1.png", 0)], **truth}
    assert_pages_read(rows, truth_later, 2)

    # asked for: done again, the same answer; a rerun whose only rows are retried errors that
    # fail again is within any budget (the run that first wrote them counted them)
    third = run_job(
        job_config(str(tmp_path / "list.txt"), tmp_path / "out", output__retry_errors=["corrupt"], max_error_rate=0.2)
    )
    assert (third.rows_retried, third.errors_by_type, third.errors_again) == (1, {"corrupt": 1}, 1)
    assert third.status == "succeeded" and third.error_rate == 1.0 and third.budget_rate() == 0.0
    assert len(rows_of(tmp_path / "out")) == 3


def test_error_budget_fails_the_job(inputs, tmp_path):
    folder, _ = inputs
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        (bad / f"b{i}.png").write_bytes(b"not an image")
    (bad / "good.png").write_bytes((folder / "page0.png").read_bytes())
    with pytest.raises(ErrorBudgetExceeded, match=r"error rate 80\.0%"):
        run_job(job_config(str(bad), tmp_path / "out", max_error_rate=0.5, min_rows_for_budget=1000))
    summaries = list((tmp_path / "out" / "_jobs").glob("*/summary.json"))
    assert json.loads(summaries[0].read_text())["status"] == "failed"
    assert not list((tmp_path / "out" / "_jobs").glob("*/work"))  # removed on failure too


def _cli(*args: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ocr_actors.cli", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        **popen,
    )


def test_cli_run_prints_summary_and_exit_codes(inputs, tmp_path):
    folder, _ = inputs
    quiet_env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's default: warns it is on
    args = ("--input", f"{folder}/page*.png", "--output", str(tmp_path / "out"), "ray.num_cpus=2", "--quiet")
    proc = _cli(*args, env=quiet_env)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["rows_written"] == 2
    assert "[ocr-batch" not in stderr and "Execution plan" not in stderr  # --quiet: Ray Data's lines too
    assert "Token authentication" not in stderr  # and Ray's start-up warning
    proc = _cli(
        "--input", str(folder), "--output", str(tmp_path / "o2"), "max_error_rate=0.1", "ray.num_cpus=2", env=quiet_env
    )
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "above the budget" in stderr
    assert "Token authentication" in stderr  # without --quiet Ray says it: the check above can fail
    proc = _cli("--input", str(folder / "missing"), "--output", str(tmp_path / "o3"))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "input not found" in stderr and "Traceback" not in stderr
    # A store that cannot be reached, or a URI that cannot name a bucket: one line, no secret
    store = {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "SECRET3"}
    proc = _cli("--input", "s3://bucket/scans/", "--output", str(tmp_path / "o4"), env={**os.environ, **store})
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: cannot reach the store listing s3://bucket/scans/")
    proc = _cli("--input", "s3://AKIAX:SEC/RET4@bucket/scans/", "--output", str(tmp_path / "o5"))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in stderr and "SEC" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: source.uri: credentials written into a s3:// URI")
    assert "(s3://***@bucket/scans/)" in stderr


def test_a_stalled_run_stops_its_work_says_so_and_a_rerun_resumes_exactly_once(inputs, tmp_path):
    """``stall_timeout_s``: no part file within the limit (here shorter than the model loads)
    stops the run with exit status 4 and a clear line; Ray's work for it stops, so no file
    appears afterwards; a rerun writes every page exactly once."""
    folder, truth = inputs
    out = tmp_path / "out"
    proc = _cli("--input", str(folder), "--output", str(out), "stall_timeout_s=0.5", "ray.num_cpus=2")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 4, stderr
    assert "stalled: no part file written for" in stderr and "a rerun resumes" in stderr
    assert "Traceback" not in stderr
    (summary_file,) = (out / "_jobs").glob("*/summary.json")
    assert json.loads(summary_file.read_text())["status"] == "stalled"
    parts = sorted(out.glob("part-*.parquet"))
    time.sleep(5)  # the stopped run writes nothing more
    assert sorted(out.glob("part-*.parquet")) == parts

    summary = run_job(job_config(str(folder), out), progress=io.StringIO())
    assert summary.status == "succeeded"
    rows = rows_of(out)
    assert len(rows) == 8 and len({(r["source_uri"], r["page_index"]) for r in rows}) == 8
    assert_pages_read(rows, truth, ok_pages=5)


@pytest.mark.parametrize(("sig", "status", "line"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_stopped_run_exits_with_its_signal_says_so_and_a_rerun_resumes(tmp_path, sig, status, line):
    source = tmp_path / "src"
    source.mkdir()
    for i in range(8):
        cv2.imwrite(str(source / f"p{i}.png"), render_page(seed=650 + i, lines_per_column=3).image)
    out = tmp_path / "out"
    args = ("--input", str(source), "--output", str(out), "output.rows_per_file=1", "ray.num_cpus=2")
    args += ("resources.detect.batch_size=1", "resources.recognize.batch_size=1")
    proc = _cli(*args)
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("part-*.parquet")):
        time.sleep(0.1)
    proc.send_signal(sig)  # the driver only, as `ray job stop` or a scheduler does
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ") and line in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr  # (stdout may hold Ray's notes on the actors it stopped)
    (summary_file,) = out.glob("_jobs/*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "interrupted" and line in summary["message"]
    written = rows_of(out)
    # The summary counts the files the output held when it was written, the one seen before the
    # signal too (the driver had often not heard of it yet); files in flight may still land.
    assert 1 <= summary["rows_written"] <= len(written) and 1 <= len(written) < 8, "stopped midway"
    assert summary["files_written"] == summary["rows_written"] and summary["pages_ok"] == summary["rows_written"]
    started = time.time()
    rerun = _cli(*args)  # the lease was given back: no wait for it to expire
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "in use by" not in stderr and time.time() - started < 200
    keys = [(r["source_uri"], r["page_index"]) for r in rows_of(out)]
    assert len(keys) == len(set(keys)) == 8


def test_killed_driver_then_rerun_gives_every_page_exactly_once(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    pages = [render_page(seed=600 + i, lines_per_column=20) for i in range(24)]
    write_pdf(source / "long.pdf", pages[:12])
    for i, page in enumerate(pages[12:]):
        cv2.imwrite(str(source / f"p{i:02d}.png"), page.image)
    out = tmp_path / "out"
    args = (
        "--input",
        str(source),
        "--output",
        str(out),
        "output.rows_per_file=1",
        "resources.detect.batch_size=1",
        "resources.recognize.batch_size=1",
        "ray.num_cpus=2",
    )
    proc = _cli(*args, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("part-*.parquet"))) < 3:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-run
    proc.wait(timeout=30)
    # Ray workers notice their raylet's death within moments; a write in flight may still land.
    count, stable_since = -1, time.time()
    while time.time() - stable_since < 3 and time.time() < deadline + 30:
        now = len(list(out.glob("part-*.parquet")))
        if now != count:
            count, stable_since = now, time.time()
        time.sleep(0.2)
    before = rows_of(out)
    assert 3 <= len(before) < 24, "the kill must land midway"
    assert list(out.glob("_jobs/*/work/work-*.plan"))  # the killed run's plan is still there, yet
    recursive = duckdb.sql(f"select count(*), count(status) from read_parquet('{out}/**/*.parquet')").fetchall()
    assert recursive == [(len(before), len(before))]  # a recursive read of the output sees part files only
    rerun = _cli(*args)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    rows = rows_of(out)
    keys = [(r["source_uri"], r["page_index"]) for r in rows]
    assert len(keys) == len(set(keys)) == 24
    assert summary["rows_written"] == 24 - len(before)
    assert sorted(k[1] for k in keys if k[0].endswith("long.pdf")) == list(range(12))
    assert all(r["status"] == "ok" for r in rows)
    # The killed driver's lease (a dead process of this host) was taken over at once, and its
    # work files went with it.
    assert "took over the output's lease from job" in stderr
    assert not list(out.glob("_jobs/*/work"))
    leases = sorted(out.glob("_jobs/_lease/*.json"))
    assert len(leases) == 1 and json.loads(leases[0].read_text())["released"] is True


def test_a_run_whose_lease_is_taken_over_stops_and_leaves_the_new_holder_alone(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for i in range(16):
        cv2.imwrite(str(source / f"p{i:02d}.png"), render_page(seed=700 + i, lines_per_column=20).image)
    out = tmp_path / "out"
    proc = _cli(
        "--input",
        str(source),
        "--output",
        str(out),
        "output.rows_per_file=1",
        "output.lease_ttl_s=10",  # renewed every 2.5 s
        "resources.detect.batch_size=1",
        "resources.recognize.batch_size=1",
        "ray.num_cpus=2",
    )
    # Take over once the run holds the lease and has planned, before its first part file: it
    # must notice at its next renewal and stop at its first check with exit status 3.
    deadline = time.time() + 240
    while time.time() < deadline and not list(out.glob("_jobs/*/work/*.plan")):
        time.sleep(0.05)
    intruder = OutputLease(str(out), "intruder", {}, take_over=True)
    taken = intruder.acquire()
    try:
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 3, stderr
        assert "error: another run took over the lease of" in stderr and "Traceback" not in stderr
        assert taken is not None and taken.pid == proc.pid
        assert intruder.renew() is True, "the stopped run must leave the new holder's lease alone"
        # (Tasks already running when the driver stops may still finish their part files: the
        # fence acts on the driver, between files.)
    finally:
        intruder.release()


def test_a_second_run_on_a_busy_output_stops_before_touching_it(inputs, tmp_path):
    folder, _ = inputs
    out = tmp_path / "out"
    inflight = out / "_tmp" / "part-inflight.parquet"  # the running job's file in flight
    inflight.parent.mkdir(parents=True)
    inflight.write_bytes(b"PAR1")
    holder = OutputLease(str(out), "nightly-1", {})
    holder.acquire()
    try:
        proc = _cli("--input", str(folder), "--output", str(out), "ray.num_cpus=2")
        _, stderr = proc.communicate(timeout=120)
    finally:
        holder.release()
    assert proc.returncode == 3, stderr
    assert f"error: the output {out} is in use by job nightly-1" in stderr and "Traceback" not in stderr
    assert inflight.exists() and not list(out.glob("part-*.parquet"))


def test_readme_quick_start_on_the_bundled_examples(tmp_path):
    """The README's first command: the job on examples/ with page orientation on."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    proc = _cli(
        "--input",
        str(examples),
        "--output",
        str(tmp_path / "ocr"),
        "ocr.doc_preprocessor.use_doc_orientation_classify=true",
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["pages_ok"] == 3
    rows = {(Path(r["source_uri"]).name, r["page_index"]): r for r in rows_of(tmp_path / "ocr")}
    assert rows[("scanned_report.pdf", 1)]["doc_angle"] == 180
    truth_pages = (examples / "scanned_report.txt").read_text(encoding="utf-8").strip().split("\n\n")
    for page in (0, 1):
        found = rows[("scanned_report.pdf", page)]["text"].splitlines()
        assert page_cer(found, truth_pages[page].splitlines()) < 0.03
    two_column = (examples / "two_column_page.txt").read_text(encoding="utf-8").strip().splitlines()
    assert page_cer(rows[("two_column_page.png", 0)]["text"].splitlines(), two_column) < 0.03


def test_names_with_colons_at_signs_and_brackets_are_sources_of_their_own(inputs, tmp_path):
    """Names archives really hold: an ISO time and an e-mail address in a file name (``:`` and
    ``@``, which are no credentials outside a URL's authority), brackets in a folder's name (not
    a glob when the folder exists). Each file is its own source, read and named as it is; a PDF
    that has none of the pages ``source.pdf_pages`` asks for gets an ``empty`` error row (not
    no row at all, which every rerun would do again); and an overwrite whose listing finds
    nothing is refused before it deletes anything."""
    folder, truth = inputs
    source = tmp_path / "scans [2024]"
    source.mkdir()
    names = {"2024-05-01T10:30_alice@corp.com.png": "page0.png", "2024-05-01T11:45_bob@corp.com.png": "page1.png"}
    for name, original in {**names, "doc.pdf": "doc.pdf"}.items():
        (source / name).write_bytes((folder / original).read_bytes())
    out = tmp_path / "out"
    summary = run_job(job_config(str(source), out, source__pdf_pages="5"))
    assert (summary.sources_total, summary.rows_written, summary.errors_by_type) == (3, 3, {"empty": 1})
    rows = {r["source_uri"]: r for r in rows_of(out)}
    assert set(rows) == {str(source / name) for name in (*names, "doc.pdf")}
    read = {(str(source / name), 0): truth[(str(folder / original), 0)] for name, original in names.items()}
    assert_pages_read(list(rows.values()), read, ok_pages=2)
    pdf = rows[str(source / "doc.pdf")]
    assert (pdf["status"], pdf["page_index"]) == ("error", None)
    assert pdf["error_message"].endswith("none of the pages asked for (5) is in this 3-page PDF")
    again = run_job(job_config(str(source), out, source__pdf_pages="5"))
    assert (again.sources_skipped, again.rows_written) == (3, 0)

    (tmp_path / "nothing here").mkdir()
    with pytest.raises(FileNotFoundError, match="found no sources: --mode overwrite would delete"):
        run_job(job_config(str(tmp_path / "nothing here"), out, output__mode="overwrite"))
    assert len(rows_of(out)) == 3
