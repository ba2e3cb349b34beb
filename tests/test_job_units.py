"""Pure parts of the batch job: page ranges, redaction, planning, file names, crop packing,
stage adapters called directly (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from ocr_actors.config import ConfigError, InputConfig, load_config, to_dict
from ocr_actors.io.parquet import DoneIndex, part_name
from ocr_actors.job_config import JobConfig, parse_page_ranges, redact
from ocr_actors.pipeline.job import check_cpu_budget
from ocr_actors.pipeline.plan import plan_work
from ocr_actors.stages.common import concat_batches, pack_crops, ragged, unpack_crops
from ocr_actors.stages.crop import crop_text_lines
from ocr_actors.stages.load import LoadThen, load_pages, load_work


def test_parse_page_ranges():
    assert parse_page_ranges("") is None
    assert parse_page_ranges("0-2, 5,3") == [0, 1, 2, 3, 5]
    with pytest.raises(ConfigError, match="invalid page range"):
        parse_page_ranges("3-1")
    with pytest.raises(ConfigError, match="invalid page range"):
        parse_page_ranges("a")


def test_redact_hides_secrets_and_url_credentials():
    config = load_config(
        JobConfig,
        None,
        {
            "source.uri": "https://user:hunter2@example.com/scans/",
            "source.storage_options": {"key": "AKIA123", "secret": "s3cr3t", "client_kwargs": {"region_name": "x"}},
        },
    )
    text = json.dumps(redact(to_dict(config)))
    assert "s3cr3t" not in text and "AKIA123" not in text and "hunter2" not in text
    assert '"region_name": "x"' in text and "example.com/scans/" in text


@pytest.mark.parametrize(
    "module", ["ocr_actors.pipeline.job", "ocr_actors.io.lease", "ocr_actors.io.objectlist", "ocr_actors.service.app"]
)
def test_every_module_logger_redacts_credentials_in_messages_and_tracebacks(module, caplog):
    import importlib
    import logging

    log = importlib.import_module(module).log
    output = "s3://AKIAXYZ:hunter2@bucket/out?X-Amz-Signature=abc123"
    with caplog.at_level(logging.INFO, logger=log.name):
        log.warning("could not renew the lease of %s (%s)", output, "TimeoutError")
        try:
            raise OSError(f"403 for {output}")
        except OSError:
            log.exception("request %s failed", "r1")
    text = caplog.text
    assert "hunter2" not in text and "AKIAXYZ" not in text and "abc123" not in text
    assert "could not renew the lease of s3://***@bucket/out?X-Amz-Signature=*** (TimeoutError)" in text
    assert "request r1 failed" in text and "OSError: 403 for s3://***@bucket/out" in text


def test_partial_section_overrides_keep_the_sections_defaults():
    config = load_config(JobConfig, None, {"resources.detect.batch_size": 1, "resources.recognize.threads": 2})
    assert (config.resources.detect.batch_size, config.resources.detect.num_cpus) == (1, 0.5)
    assert (config.resources.recognize.min_actors, config.resources.recognize.threads) == (2, 2)


def test_cpu_budget_refuses_layouts_that_would_hang():
    every_stage = load_config(
        JobConfig,
        None,
        {
            "ocr.doc_preprocessor.use_doc_orientation_classify": True,
            "ocr.textline_orientation.use_textline_orientation": True,
        },
    )
    check_cpu_budget(every_stage, 2.0)  # the defaults fit 2 CPUs with every optional stage on
    greedy = load_config(JobConfig, None, {"resources.recognize.num_cpus": 1.0})
    with pytest.raises(ConfigError, match=r"reserve 2\.5 of the cluster's 2 CPUs"):
        check_cpu_budget(greedy, 2.0)
    # with the load in the actors (the default), no load task needs a CPU: only the write task's 0.2
    tight = {"resources.load.num_cpus": 1.0}
    check_cpu_budget(load_config(JobConfig, None, tight), 2.0)
    with pytest.raises(ConfigError, match="leaving less than the 1 a load/crop/write task needs"):
        check_cpu_budget(load_config(JobConfig, None, {**tight, "resources.load_in_actors": False}), 2.0)


def test_gpu_budget_refuses_pools_that_ask_for_more_gpus_than_a_local_cluster_has():
    from ocr_actors.pipeline.job import check_gpu_budget

    gpu_yaml = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "job_gpu.yaml"
    check_gpu_budget(load_config(JobConfig, gpu_yaml, {"resources.detect.min_actors": 3}), 1.0)  # 3 x 0.33
    check_gpu_budget(load_config(JobConfig, None, {}), 0.0)  # the CPU defaults ask for none
    wide = load_config(JobConfig, gpu_yaml, {"resources.detect.min_actors": 4})
    with pytest.raises(ConfigError, match=r"ask for 1\.32 GPUs at least .* but the cluster has 1: lower"):
        check_gpu_budget(wide, 1.0)
    check_gpu_budget(wide, 2.0)


def test_plan_skips_done_finishes_partial_and_respects_modes():
    done = DoneIndex(
        pages={"a.pdf": {0, 1, 2}, "b.pdf": {0, 2}, "c.png": {0}},
        page_counts={"a.pdf": 3, "b.pdf": 4, "c.png": 1},
        failed_files={"bad.png"},
    )
    sources = ["a.pdf", "b.pdf", "c.png", "bad.png", "new.png"]
    plan = plan_work(sources, done, "resume", None)
    assert [(i.source_uri, i.todo_pages) for i in plan.items] == [("b.pdf", "[1, 3]"), ("new.png", "")]
    assert (plan.sources_skipped, plan.sources_partial) == (3, 1)
    incremental = plan_work(sources, done, "incremental", None)
    assert [i.source_uri for i in incremental.items] == ["new.png"]
    limited = plan_work(sources, done, "resume", [0, 1, 2])
    assert [(i.source_uri, i.todo_pages) for i in limited.items] == [("b.pdf", "[1]"), ("new.png", "")]
    # source.pdf_pages applies to PDFs by content: a key without a suffix and a signed URL too,
    # but not a multi-frame TIFF, whose frames it never limits.
    odd = {"s3://b/doc-0001": {0, 2}, "https://h/b.pdf?X-Amz-Signature=***": {0, 2}, "scan.tif": {0, 2}}
    named = DoneIndex(pages=odd, page_counts=dict.fromkeys(odd, 4))
    limited = plan_work(list(odd), named, "resume", [0, 1, 2])
    assert [(i.source_uri, i.todo_pages) for i in limited.items] == [
        ("s3://b/doc-0001", "[1]"),
        ("https://h/b.pdf?X-Amz-Signature=***", "[1]"),
        ("scan.tif", "[1, 3]"),
    ]
    assert plan_work(["s3://b/doc-0001"], named, "resume", [0, 2]).items == []  # every wanted page is in: done


def test_part_names_are_deterministic_and_order_free():
    rows = [{"source_uri": "s3://b/x.pdf", "page_index": i} for i in range(3)]
    assert part_name(rows) == part_name(list(reversed(rows)))
    assert part_name(rows) != part_name(rows[:2])
    assert part_name(rows).startswith("part-") and part_name(rows).endswith(".parquet")


def test_pack_and_unpack_crops_round_trip():
    rng = np.random.default_rng(0)
    sizes = ((5, 9, 3), (1, 1, 3), (48, 200, 1), (7, 3, 1))  # colour and grey crops of one page batch
    crops = [rng.integers(0, 255, size, dtype=np.uint8) for size in sizes]
    pixels, shapes = pack_crops(crops)
    assert shapes.tolist() == [list(size) for size in sizes]
    assert pixels.size == sum(h * w * c for h, w, c in sizes)
    assert all(np.array_equal(a, b) for a, b in zip(unpack_crops(pixels, shapes), crops, strict=True))
    empty_pixels, empty_shapes = pack_crops([])
    assert unpack_crops(empty_pixels, empty_shapes) == [] and empty_shapes.shape == (0, 3)


def test_load_stage_rows_for_good_and_bad_files(tmp_path):
    from ocr_actors.config import InputConfig

    grey = np.full((20, 30, 3), 200, np.uint8)  # a grey page stored as colour: one channel on
    colour = grey.copy()
    colour[5, 5] = (0, 0, 255)
    for name, image, channels in (("g.png", grey, 1), ("c.png", colour, 3)):
        cv2.imwrite(str(tmp_path / name), image)
        (row,) = load_pages(str(tmp_path / name), InputConfig(), {}, None)
        assert row["status"] == "ok" and row["image"].shape == (20, 30, channels)
        assert (row["width"], row["height"]) == (30, 20)

    (tmp_path / "e.png").write_bytes(b"")
    rows = list(load_pages(str(tmp_path / "e.png"), InputConfig(), {}, None))
    assert len(rows) == 1 and rows[0]["status"] == "error" and rows[0]["error_type"] == "empty"
    assert rows[0]["page_index"] == -1
    missing = list(load_pages(str(tmp_path / "nope.png"), InputConfig(), {}, None))
    assert missing[0]["error_type"] == "not_found"


def test_concat_batches_keeps_row_order_and_ragged_columns():
    a = {"status": np.array(["ok"]), "page_index": np.array([0]), "image": ragged([np.zeros((2, 3, 1), np.uint8)])}
    b = {
        "status": np.array(["error", "ok"]),
        "page_index": np.array([-1, 4]),
        "image": ragged([np.zeros((1, 1, 3), np.uint8), np.ones((5, 4, 3), np.uint8)]),
    }
    out = concat_batches([a, b])
    assert out["status"].tolist() == ["ok", "error", "ok"] and out["page_index"].tolist() == [0, -1, 4]
    assert out["image"].dtype == object and [im.shape for im in out["image"]] == [(2, 3, 1), (1, 1, 3), (5, 4, 3)]
    with pytest.raises(ValueError):
        concat_batches([])


class _RecordingStage:
    """A stand-in model stage: records the pages of each batch it gets, adds a column."""

    calls: ClassVar[list[list[tuple[str, int, str]]]] = []

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __call__(self, batch):  # type: ignore[no-untyped-def]
        _RecordingStage.calls.append(
            [
                (str(u).rsplit("/", 1)[-1], int(p), str(s))
                for u, p, s in zip(batch["source_uri"], batch["page_index"], batch["status"], strict=True)
            ]
        )
        return {**batch, "tagged": np.array([self.tag] * len(batch["status"]))}


def test_a_model_stage_that_loads_its_own_pages_gets_the_load_stages_rows_in_batches(tmp_path):
    """``LoadThen`` (``resources.load_in_actors``): work ranges in; the stage gets the pages
    :func:`load_work` gives (a PDF fanned out, error rows included, same order), in batches of
    at most ``page_batch_size``, and its outputs come out one batch at a time."""
    import pyarrow as pa
    from PIL import Image

    from ocr_actors.config import InputConfig
    from ocr_actors.io.workfiles import WorkSpool, work_ranges

    pages = [Image.fromarray(np.full((40, 30), 90 + 40 * i, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "doc.pdf", "PDF", resolution=72, save_all=True, append_images=pages[1:])
    cv2.imwrite(str(tmp_path / "a.png"), np.full((20, 30, 3), 200, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    spool = WorkSpool(str(tmp_path / "out"), "job1", {})
    names = ["doc.pdf", "bad.png", "a.png"]
    spool.append(pa.table({"source_uri": [str(tmp_path / n) for n in names], "todo_pages": ["", "", ""]}))
    (work,) = work_ranges(spool.files, max_tasks=1)
    batch = {
        "work_path": np.array([work.path]),
        "work_start": np.array([work.start]),
        "work_stop": np.array([work.stop]),
    }
    load_kwargs = {"work_storage_options": {}, "config": InputConfig(), "storage_options": {}}

    _RecordingStage.calls = []
    stage = LoadThen(_RecordingStage, ("t",), page_batch_size=2, load_kwargs=load_kwargs)
    outputs = list(stage(batch))
    expected = [
        ("doc.pdf", 0, "ok"),
        ("doc.pdf", 1, "ok"),
        ("doc.pdf", 2, "ok"),
        ("bad.png", -1, "error"),
        ("a.png", 0, "ok"),
    ]
    assert _RecordingStage.calls == [expected[0:2], expected[2:4], expected[4:5]]
    assert [len(o["tagged"]) for o in outputs] == [2, 2, 1] and outputs[0]["tagged"][0] == "t"
    # the same rows, images and timing columns as the load tasks give
    loaded = concat_batches(list(load_work(batch, **load_kwargs)))
    merged = concat_batches(outputs)
    assert set(merged) == set(loaded) | {"tagged"}
    for column in ("source_uri", "page_index", "status", "error_type", "width", "height"):
        assert merged[column].tolist() == loaded[column].tolist()
    assert all(np.array_equal(x, y) for x, y in zip(merged["image"], loaded["image"], strict=True))
    with pytest.raises(ValueError, match="page_batch_size"):
        LoadThen(_RecordingStage, ("t",), page_batch_size=0, load_kwargs=load_kwargs)


def test_an_actor_that_loads_takes_enough_small_ranges_for_one_page_batch():
    from ocr_actors.io.workfiles import WorkRange
    from ocr_actors.pipeline.job import ranges_per_call

    small = [WorkRange("w.parquet", i, i + 1) for i in range(10)]  # a small job: one source a range
    large = [WorkRange("w.parquet", 0, 1000), WorkRange("w.parquet", 1000, 1500)]
    assert ranges_per_call(small, 16) == 16 and ranges_per_call(small, 1) == 1
    assert ranges_per_call(large, 16) == 1
    assert ranges_per_call([WorkRange("w.parquet", 0, 4)], 16) == 4
    assert ranges_per_call([], 8) == 8


def test_crop_stage_packs_crops_and_drops_the_image():
    image = np.full((100, 200, 3), 255, np.uint8)
    quad = np.array([[[10, 10], [110, 10], [110, 40], [10, 40]]], np.float32)
    batch = {
        "image": np.array([image, None], dtype=object)[:1],
        "quads": np.array([quad, None], dtype=object)[:1],
        "status": np.array(["ok"]),
        "error_type": np.array([""]),
        "error_message": np.array([""]),
    }
    out = crop_text_lines(batch)
    assert "image" not in out
    assert out["crop_shapes"][0].tolist() == [[30, 100, 3]]
    assert out["crop_pixels"][0].size == 30 * 100 * 3
    assert (out["upright_height"][0], out["upright_width"][0]) == (100, 200)
    assert out["t_crop"].shape == (1,)


def test_cpu_fallback_keeps_the_ocr_and_drops_the_gpu_tuning():
    from pathlib import Path

    from ocr_actors.job_config import cpu_fallback, needs_gpus

    root = Path(__file__).resolve().parent.parent
    gpu = load_config(
        JobConfig,
        root / "jobs" / "configs" / "job_gpu.yaml",
        {"ocr.text_detection.thresh": 0.25, "source.uri": "s3://b/", "ocr.engine.precision": "f16"},
    )
    assert needs_gpus(gpu)
    cpu = cpu_fallback(gpu)
    assert not needs_gpus(cpu)
    defaults = JobConfig()
    assert cpu.resources == defaults.resources
    assert cpu.ocr.engine.device == "cpu" and cpu.ocr.engine.threads == 0
    assert cpu.ocr.engine.precision == "f32"  # f16 only pays on GPUs
    assert cpu.ocr.text_recognition.batch_size == defaults.ocr.text_recognition.batch_size
    assert cpu.ocr.text_recognition.width_multiple == 1 and cpu.ocr.text_detection.batch_pad_multiple == 32
    assert gpu.ocr.text_recognition.pad_batch and gpu.ocr.text_recognition.warmup
    assert cpu.ocr.text_recognition.width_buckets == () and not cpu.ocr.text_recognition.pad_batch
    assert not cpu.ocr.text_recognition.warmup
    assert gpu.ocr.text_recognition.batch_by_bucket and not cpu.ocr.text_recognition.batch_by_bucket
    assert gpu.ocr.text_detection.batch_canvases and cpu.ocr.text_detection.batch_canvases == ()
    assert cpu.ocr.page_batch_size == defaults.ocr.page_batch_size
    # What the user chose for the OCR itself, and where data comes from and goes, stays.
    assert cpu.ocr.text_detection.thresh == 0.25 and cpu.source.uri == "s3://b/"
    assert cpu.output == gpu.output and cpu.max_error_rate == gpu.max_error_rate
    big = cpu_fallback(gpu, 64.0).resources  # actor pools may grow with the cluster, in the defaults' ratio
    assert (big.detect.min_actors, big.detect.max_actors) == (1, 32)
    assert (big.recognize.min_actors, big.recognize.max_actors) == (2, 64)
    assert big.load == defaults.resources.load
    assert not needs_gpus(defaults)
    assert needs_gpus(load_config(JobConfig, None, {"ocr.engine.device": "gpu"}))
    assert needs_gpus(load_config(JobConfig, None, {"resources.recognize.num_gpus": 0.5}))


@pytest.mark.parametrize("job_id", ["..", "../x", "a/b", "a\\b", "-x", ".hidden", "x..y", "a b"])
def test_a_job_id_that_is_not_a_plain_folder_name_is_refused(job_id):
    with pytest.raises(ConfigError, match="invalid job_id"):
        load_config(JobConfig, None, {"job_id": job_id})


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"output.compression": "bogus"}, r"output\.compression \(one of zstd, snappy, gzip, brotli, lz4, none\)"),
        ({"progress_interval_s": 0}, r"progress_interval_s \(seconds, above 0\): 0"),
        ({"progress_interval_s": -1}, r"progress_interval_s"),
        ({"resources.write.batch_size": 8}, r"resources\.write\.batch_size \(.*set output\.rows_per_file\): 8"),
    ],
)
def test_settings_that_would_fail_late_are_refused_at_load(overrides, fragment):
    """Each of these used to pass loading and fail after Ray started (a bad codec at the first
    part file, after all the OCR work), flood stderr (a zero progress interval), or be ignored."""
    with pytest.raises(ConfigError, match=fragment):
        load_config(JobConfig, None, overrides)
    assert load_config(JobConfig, None, {"output.compression": "SNAPPY"}).output.compression == "SNAPPY"


def test_keys_left_empty_in_yaml_are_unset_not_the_string_none(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("output:\n  uri:\nray:\n  address:\njob_id:\n")
    config = load_config(JobConfig, path)
    assert (config.output.uri, config.ray.address, config.job_id) == ("", "", "")


def test_every_model_switched_on_is_resolved_before_ray_starts(tmp_path):
    """A misspelt model name fails in the driver (exit 2 from the CLI), before the listing, the
    lease or Ray, for each model the configuration switches on; one switched off is not looked at."""
    from ocr_actors.io.decode import InputNotFoundError
    from ocr_actors.pipeline import run_job
    from ocr_actors.runtime.models import ModelNotFoundError

    out = tmp_path / "out"
    base = {"source.uri": str(tmp_path / "nothing"), "output.uri": str(out)}
    for key, switch in [
        ("ocr.text_recognition.model", None),
        ("ocr.text_detection.model", None),
        ("ocr.textline_orientation.model", "ocr.textline_orientation.use_textline_orientation"),
        ("ocr.doc_preprocessor.orientation_model", "ocr.doc_preprocessor.use_doc_orientation_classify"),
    ]:
        overrides = {**base, key: "PP-OCRv6_tiny_recx"}
        if switch is not None:
            with pytest.raises(InputNotFoundError, match="input not found"):  # off: the name is never looked at
                run_job(load_config(JobConfig, None, overrides), progress=None)
            overrides[switch] = True
        with pytest.raises(ModelNotFoundError, match="PP-OCRv6_tiny_recx"):
            run_job(load_config(JobConfig, None, overrides), progress=None)
    assert not out.exists()


def test_plain_job_ids_are_accepted():
    assert load_config(JobConfig, None, {"job_id": "backfill-2026.11_run7"}).job_id == "backfill-2026.11_run7"


def test_timed_records_wall_and_cpu_seconds_per_row():
    import time

    from ocr_actors.stages.common import timed

    batch = {"status": np.array(["ok", "ok"], dtype=object)}
    with timed(batch, "detect"):
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:  # busy: CPU time
            pass
        time.sleep(0.4)  # idle: wall time only
    wall, cpu = batch["t_detect"], batch["c_detect"]
    assert wall.shape == cpu.shape == (2,)
    assert wall[0] == wall[1] and cpu[0] == cpu[1]  # split evenly over the rows
    # the sleep is wall time, not CPU time; other threads of this process (Ray's, when an
    # earlier test left it running) add CPU time, which also ends the busy loop sooner
    assert 2 * wall[0] >= 0.4 and 0.05 <= 2 * cpu[0] < 0.3


def test_model_stages_may_run_batches_in_threads_with_onnxruntime_only():
    from ocr_actors.job_config import StageResources
    from ocr_actors.pipeline.job import actor_pool

    plain = actor_pool(StageResources(min_actors=1, max_actors=3))
    assert (plain.min_size, plain.max_size) == (1, 3)
    assert not plain.enable_true_multi_threading
    threaded = actor_pool(StageResources(min_actors=2, max_actors=2, concurrent_calls=3))
    assert threaded.enable_true_multi_threading and threaded.max_concurrent_calls_per_actor == 3
    assert threaded.max_tasks_in_flight_per_actor == 6  # work queued for every thread
    assert (
        load_config(JobConfig, None, {"resources.recognize.concurrent_calls": 2}).resources.recognize.concurrent_calls
        == 2
    )
    with pytest.raises(ConfigError, match="concurrent_calls > 1 needs engine onnxruntime"):
        load_config(JobConfig, None, {"resources.detect.concurrent_calls": 2, "ocr.engine.engine": "openvino"})
    with pytest.raises(ConfigError, match="concurrent_calls"):
        load_config(JobConfig, None, {"resources.detect.concurrent_calls": 0})


def test_stall_guard_passes_items_reports_waits_and_stops_a_silent_source():
    import time

    import pytest

    from ocr_actors.pipeline.job import JobStalled, stall_guarded

    def slow(items, pause_s):
        for item in items:
            time.sleep(pause_s)
            yield item

    waits: list[float] = []
    assert list(stall_guarded(slow([1, 2, 3], 0.3), 5.0, 0.1, waits.append)) == [1, 2, 3]
    assert waits and max(waits) < 0.5  # called while waiting, with the seconds since the last item

    closed: list[bool] = []

    def silent():
        try:
            yield "first"
            time.sleep(3.0)  # no item for longer than the limit
            yield "late"
        finally:
            closed.append(True)

    got: list[str] = []
    left: list[float] = []
    started = time.monotonic()
    with pytest.raises(JobStalled, match="no part file written for 1 s"):
        for item in stall_guarded(silent(), 1.0, 0.1, lambda seconds: None, lambda: left.append(time.monotonic())):
            got.append(item)
    assert got == ["first"] and 1.0 <= left[0] - started < 2.0  # on_leave: at the limit
    assert closed == [True]  # then its thread, free again, closed the source before the error came out

    def failing():
        yield 1
        raise OSError("storage went away")

    with pytest.raises(OSError, match="storage went away"):
        list(stall_guarded(failing(), 5.0, 0.1, lambda seconds: None))

    def lease_lost(seconds: float) -> None:
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):  # on_wait may stop the run
        list(stall_guarded(slow([1], 1.0), 0.0, 0.1, lease_lost))


EXAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def example_pages() -> dict[str, np.ndarray]:
    """The bundled examples as the job loads them: the PNG, then the PDF's two pages."""
    from ocr_actors.stages.load import load_documents

    batches = [
        b
        for name in ("two_column_page.png", "scanned_report.pdf")
        for b in load_documents(
            {"source_uri": np.array([str(EXAMPLES / name)]), "todo_pages": np.array([""])},
            config=InputConfig(),
            storage_options={},
        )
    ]
    merged = concat_batches(batches)
    assert merged["status"].tolist() == ["ok", "ok", "ok"]
    return merged


def _with_row(batch: dict[str, np.ndarray], column: str, index: int, value: object) -> dict[str, np.ndarray]:
    """A copy of ``batch`` whose object column ``column`` holds ``value`` at row ``index``."""
    items = list(batch[column])
    items[index] = value
    return {**batch, column: ragged(items)}


def _assert_only_row_failed(out: dict[str, np.ndarray], index: int, message_start: str) -> None:
    assert [s == "error" for s in out["status"]] == [i == index for i in range(len(out["status"]))]
    assert out["error_type"][index] == "ocr_failed"
    assert str(out["error_message"][index]).startswith(message_start)


def test_a_page_the_detector_cannot_take_fails_alone(example_pages):
    from ocr_actors.config import OCRConfig
    from ocr_actors.stages.detect import DetectText

    stage = DetectText(OCRConfig(), crop=True)
    reference = stage(example_pages)
    assert reference["status"].tolist() == ["ok", "ok", "ok"]
    assert all(len(q) >= 10 for q in reference["quads"])  # every example page has many lines

    out = stage(_with_row(example_pages, "image", 1, np.zeros((0, 10, 3), np.uint8)))
    _assert_only_row_failed(out, 1, "text detection failed: ValueError('image has an empty side")
    assert len(out["quads"][1]) == 0 and out["crop_shapes"][1].shape == (0, 3)
    for i in (0, 2):  # the other pages: the same lines as in the whole batch
        np.testing.assert_allclose(out["quads"][i], reference["quads"][i], atol=0.5)
        assert out["crop_shapes"][i].tolist() == reference["crop_shapes"][i].tolist()


@pytest.fixture(scope="module")
def cropped_pages(example_pages) -> dict[str, np.ndarray]:
    from ocr_actors.config import OCRConfig
    from ocr_actors.stages.detect import DetectText

    return DetectText(OCRConfig(), crop=True)(example_pages)


def _with_empty_first_crop(batch: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
    """Row ``index`` gets an extra crop of height 0 in front (no pixels, so the packing holds)."""
    shapes = np.concatenate([np.array([[0, 40, 3]], np.int32), batch["crop_shapes"][index]])
    return _with_row(batch, "crop_shapes", index, shapes)


def test_a_page_the_recognizer_cannot_take_fails_alone(cropped_pages):
    from ocr_actors.config import OCRConfig
    from ocr_actors.stages.recognize import RecognizeText

    stage = RecognizeText(OCRConfig())
    reference = stage(cropped_pages)
    texts = [json.loads(t) for t in reference["rec_texts"]]
    assert "Digital Archive Annual Report" in texts[0] and "No. 24601-54 dated 20/03/2018" in texts[1]

    out = stage(_with_empty_first_crop(cropped_pages, 0))
    _assert_only_row_failed(out, 0, "text recognition failed: error(")
    assert json.loads(out["rec_texts"][0]) == [] and out["rec_scores"][0].shape == (0,)
    for i in (1, 2):  # recognised alone, the other pages keep every line
        assert len(json.loads(out["rec_texts"][i])) == len(texts[i])
        assert out["line_angles"][i].tolist() == [-1] * len(texts[i])
    upright = json.loads(out["rec_texts"][1])  # and the upright one reads as in the whole batch
    assert sum(a == b for a, b in zip(upright, texts[1], strict=True)) >= 0.95 * len(texts[1])


def test_a_page_the_line_classifier_cannot_take_fails_alone(cropped_pages):
    from ocr_actors.config import OCRConfig, load_config
    from ocr_actors.stages.lineori import ClassifyTextlines

    stage = ClassifyTextlines(load_config(OCRConfig, None, {"textline_orientation.use_textline_orientation": True}))
    reference = stage(cropped_pages)
    out = stage(_with_empty_first_crop(cropped_pages, 2))
    _assert_only_row_failed(out, 2, "text-line orientation failed: error(")
    assert out["line_cls"][2].shape == (0, 2)
    for i in (0, 1):
        np.testing.assert_allclose(out["line_cls"][i], reference["line_cls"][i], atol=1e-4)
        assert set(out["line_cls"][i][:, 0].tolist()) <= {0.0, 180.0}


def test_a_page_that_cannot_be_cropped_fails_alone(example_pages):
    quads = np.array([[[10, 10], [110, 10], [110, 40], [10, 40]]], np.float32)
    batch = {**example_pages, "quads": ragged([quads, np.full((1, 4, 2), np.nan, np.float32), quads])}
    out = crop_text_lines(batch)
    _assert_only_row_failed(out, 1, "cropping failed: ValueError('cannot convert float NaN")
    assert [s.tolist() for s in out["crop_shapes"]] == [[[30, 100, 3]], [], [[30, 100, 3]]] or [
        s.tolist() for s in out["crop_shapes"]
    ] == [[[30, 100, 1]], [], [[30, 100, 1]]]


def test_a_progress_line_gives_sources_rows_rate_and_time_left():
    from ocr_actors.pipeline.job import JobSummary, Progress

    summary = JobSummary(job_id="j", output="o", mode="resume", rows_written=12, pages_ok=11, error_rows=1)
    summary.files_written = 5
    progress = Progress(planned=10, sources_done=4, first_written_at=100.0, first_rows=2, last_written_at=108.0)
    assert progress.line(summary, now=110.0) == (
        "4/10 sources (40%); 12 rows (11 pages ok, 1 errors) in 5 files; "
        "1.00 rows/s since the first file, about 15 s left"
    )
    assert Progress(planned=3).line(JobSummary(job_id="j", output="o", mode="resume"), now=5.0) == (
        "0/3 sources (0%); 0 rows (0 pages ok, 0 errors) in 0 files"
    )
    long = Progress(planned=1000, sources_done=10, first_written_at=1.0, first_rows=0, last_written_at=60.0)
    assert long.line(summary, now=601.0).endswith("about 16.5 h left")  # 990 sources at 60 s each


def test_the_settings_a_run_compares_with_come_from_the_newest_run_that_wrote_rows(tmp_path):
    """Without ``_jobs/_settings.json`` (an output of an older version) the newest run by name
    whose summary says it wrote rows is the baseline; garbled summaries and configs are passed
    over; with the file, its run is the baseline whatever the job ids. A model given by a signed
    URL is compared redacted, as saved, so it is no change; nothing here ever fails a run."""
    from dataclasses import replace

    import yaml

    from ocr_actors.config import load_config, to_dict
    from ocr_actors.job_config import JobConfig, redact
    from ocr_actors.pipeline.job import record_result_settings, settings_changes_since_last_run

    signed = "https://models.example.com/rec.onnx?X-Amz-Signature=abc123"
    config = load_config(JobConfig, None, {"output.uri": str(tmp_path), "ocr.text_recognition.model": signed})
    jobs = tmp_path / "_jobs"

    def run_folder(name: str, summary: object, model: str | None) -> None:
        (jobs / name).mkdir(parents=True)
        (jobs / name / "summary.json").write_text(json.dumps(summary))
        if model is not None:
            ocr = to_dict(load_config(JobConfig, None, {"ocr.text_recognition.model": model}))
            (jobs / name / "config.yaml").write_text(yaml.safe_dump(redact(ocr)))

    assert settings_changes_since_last_run(config) == {}  # no earlier run
    run_folder("20261101T000000Z-aaaa", {"rows_written": 5}, "PP-OCRv6_tiny_rec")
    run_folder("20261102T000000Z-bbbb", {"rows_written": 0}, "PP-OCRv6_small_rec")  # wrote nothing
    run_folder("20261103T000000Z-cccc", [], "PP-OCRv6_small_rec")  # garbled summary
    run_folder("20261104T000000Z-dddd", {"rows_written": 3}, None)  # killed before its config
    assert settings_changes_since_last_run(config) == {
        "since_job": "20261101T000000Z-aaaa",
        "changes": {"text_recognition.model": ["PP-OCRv6_tiny_rec", redact(signed)]},
    }
    assert "abc123" not in json.dumps(settings_changes_since_last_run(config))
    record_result_settings(replace(config, job_id="nightly-a"))  # a job id that sorts anywhere
    assert settings_changes_since_last_run(config) == {}  # the same model, redacted alike
    assert sorted(p.name for p in jobs.iterdir() if p.name.startswith("_")) == ["_settings.json"]  # moved in place
    assert json.loads((jobs / "_settings.json").read_text())["job_id"] == "nightly-a"
    (jobs / "_settings.json").write_text("{not json")
    assert settings_changes_since_last_run(config)["since_job"] == "20261101T000000Z-aaaa"
    (jobs / "_settings.json").unlink()
    (jobs / "20261101T000000Z-aaaa" / "config.yaml").write_text("ocr: [unclosed")
    assert settings_changes_since_last_run(config) == {}  # nothing readable left: no comparison


def test_the_error_budget_leaves_out_retried_error_rows_that_fail_again_and_only_those():
    """Error rows retried from earlier runs (the same source and page) that fail again are not
    held against ``max_error_rate``; new sources' error rows are, and so are other pages of a
    retried source (a missing object that turns up as a PDF whose pages all fail)."""
    from collections import Counter, defaultdict

    from ocr_actors.pipeline.job import STAGES, JobSummary, _count_file

    retried = {("s3://b/missing.png", None), ("s3://b/part.pdf", 2)}

    def counted(rows: int, errors: list[tuple[str, int | None]]) -> JobSummary:
        batch = {
            "path": np.array(["out/part-x.parquet"], dtype=object),
            "rows": np.array([rows]),
            "ok_pages": np.array([rows - len(errors)]),
            "error_rows": np.array([len(errors)]),
            "errors_by_type": np.array([json.dumps({"not_found": len(errors)} if errors else {})], dtype=object),
            "error_pages": np.array([json.dumps(errors)], dtype=object),
            "lines": np.array([0]),
            "sources_done": np.array([rows]),
            "written_at": np.array([0.0]),
        } | {f"{t}_{s}": np.array([0.0]) for s in STAGES for t in "tc"}
        summary = JobSummary(job_id="j", output="o", mode="resume")
        _count_file(batch, summary, Counter(), defaultdict(float), defaultdict(float), None, None, retried)
        return summary

    again = counted(2, [("s3://b/missing.png", None), ("s3://b/part.pdf", 2)])
    assert (again.error_rows, again.errors_again, again.budget_rate()) == (2, 2, 0.0)
    new = counted(4, [("s3://b/new1.png", None), ("s3://b/new2.png", None)])  # the retried rows passed
    assert (new.errors_again, new.budget_rate()) == (0, 0.5)
    assert new.budget_message(0.2) == "error rate 50.0% above the budget of 20.0%"
    turned_up = counted(3, [("s3://b/missing.png", 0), ("s3://b/missing.png", 1), ("s3://b/part.pdf", 0)])
    assert (turned_up.errors_again, turned_up.budget_rate()) == (0, 1.0)  # pages never tried before count
    mixed = counted(5, [("s3://b/missing.png", None), ("s3://b/new1.png", None)])
    assert mixed.budget_rate() == 0.25 and mixed.budget_message(0.2).endswith(
        "not counting 1 retried rows that failed again"
    )
