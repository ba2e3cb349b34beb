"""The batch job against a real S3 server (SeaweedFS ``weed mini``, SigV4 auth): inputs and
output in a bucket, read back with Arrow's own S3 client and DuckDB; rerun, incremental
mode, secrets kept out of outputs and logs, wrong credentials, and credentials and endpoint
from the AWS environment variables alone."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from ocr_actors.config import load_config
from ocr_actors.io.parquet import JOBS_DIR, PAGE_SCHEMA, doc_id_for
from ocr_actors.io.sources import SourceAccessError
from ocr_actors.job_config import JobConfig
from ocr_actors.pipeline import JobSummary, run_job
from ocr_actors.synth import SyntheticPage, render_page
from tests.conftest import page_cer, part_row
from tests.s3_server import S3Server, running_s3_server

REPO = Path(__file__).resolve().parents[1]
RAY = {"ray.num_cpus": 2, "ray.object_store_memory": 512 << 20}
MAX_CER = 0.02


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server("ocr-jobs", tmp_path_factory.mktemp("s3")) as server:
        yield server


pytestmark = pytest.mark.usefixtures("ray_per_module")


def small_page(seed: int) -> SyntheticPage:
    """4 lines fit in 640 px: small pages keep OCR quick on 2 CPUs."""
    return render_page(seed=seed, lines_per_column=4, height=640)


def png_bytes(page: SyntheticPage) -> bytes:
    ok, encoded = cv2.imencode(".png", page.image)
    assert ok
    return encoded.tobytes()


def pdf_bytes(pages: list[SyntheticPage]) -> bytes:
    """A PDF of the pages, lossless: greyscale as a palette image (Pillow writes mode "L"
    as JPEG, mode "P" uncompressed), 144 dpi so the job's 144 dpi rasterisation gives the
    same pixels."""
    images = [Image.fromarray(cv2.cvtColor(p.image, cv2.COLOR_BGR2GRAY)).convert("P") for p in pages]
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=144, save_all=True, append_images=images[1:])
    return buf.getvalue()


@dataclass
class Inputs:
    prefix: str  # s3://bucket/in/
    truth: dict[tuple[str, int], str]  # (source_uri, page_index) -> page text
    failed: dict[str, str]  # source_uri -> expected error_type
    page_counts: dict[str, int]

    @property
    def sources(self) -> int:
        return len(self.page_counts) + len(self.failed)


@pytest.fixture(scope="module")
def inputs(s3_server: S3Server) -> Inputs:
    fs = s3_server.filesystem()
    prefix = s3_server.url("in") + "/"
    truth: dict[tuple[str, int], str] = {}
    counts: dict[str, int] = {}
    for i in range(2):
        page = small_page(700 + i)
        uri = f"{prefix}page{i}.png"
        fs.pipe(uri, png_bytes(page))
        truth[(uri, 0)] = page.text
        counts[uri] = 1
    pdf_pages = [small_page(710 + i) for i in range(2)]
    uri = f"{prefix}docs/report.pdf"  # a nested "folder" too
    fs.pipe(uri, pdf_bytes(pdf_pages))
    for i, page in enumerate(pdf_pages):
        truth[(uri, i)] = page.text
    counts[uri] = 2
    whole = png_bytes(small_page(720))
    # Content is sniffed, not the suffix: bytes of no known format are "unsupported_type",
    # a PNG signature followed by junk is "corrupt".
    failed = {
        f"{prefix}x.png": "unsupported_type",
        f"{prefix}bad.png": "corrupt",
        f"{prefix}e.pdf": "empty",
        f"{prefix}cut.png": "truncated",
    }
    fs.pipe(f"{prefix}x.png", b"garbage")
    fs.pipe(f"{prefix}bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    fs.pipe(f"{prefix}e.pdf", b"")
    fs.pipe(f"{prefix}cut.png", whole[: len(whole) // 2])
    fs.pipe(f"{prefix}notes.txt", b"not a document suffix: not listed")
    return Inputs(prefix, truth, failed, counts)


def job_config(server: S3Server | Any, source: str, output: str, **overrides: Any) -> JobConfig:
    """A job on ``server`` (any test store with ``storage_options``: S3, GCS), local Ray."""
    values: dict[str, Any] = {
        "source.uri": source,
        "source.storage_options": server.storage_options,
        "output.uri": output,
        "max_error_rate": 1.0,
        "progress_interval_s": 0.5,
        **RAY,
    }
    values.update(overrides)
    return load_config(JobConfig, None, values)


@contextlib.contextmanager
def captured_output(path: Path) -> Iterator[None]:
    """Everything written to fds 1/2 and to sys.stdout/sys.stderr, into ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(path, "ab", buffering=0) as raw, open(path, "a", encoding="utf-8") as text:
        for fd in (1, 2):
            os.dup2(raw.fileno(), fd)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            text.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def arrow_s3(server: S3Server) -> pafs.S3FileSystem:
    """Arrow's own S3 client (not s3fs), to read what the job wrote."""
    return pafs.S3FileSystem(
        access_key=server.key,
        secret_key=server.secret,
        endpoint_override=server.endpoint_url.removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )


def read_output(server: S3Server, output: str) -> tuple[pa.Table, list[pa.Schema]]:
    """Every part file under ``output`` (not ``_jobs/``/``_tmp/``), and each file's schema."""
    s3 = arrow_s3(server)
    base = output.removeprefix("s3://").rstrip("/")
    infos = s3.get_file_info(pafs.FileSelector(base, recursive=False))
    paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.startswith("part-"))
    assert paths, f"no part files under {output}"
    tables = [pq.read_table(p, filesystem=s3) for p in paths]
    return pa.concat_tables(tables), [t.schema for t in tables]


def query(table: pa.Table, sql: str) -> list[tuple]:
    con = duckdb.connect()
    con.register("pages", table)
    return con.sql(sql).fetchall()


def row_count(server: S3Server, output: str) -> int:
    table, _ = read_output(server, output)
    return table.num_rows


def job_files(server: S3Server, output: str, job_id: str) -> dict[str, str]:
    fs = server.filesystem()
    folder = f"{output.rstrip('/')}/{JOBS_DIR}/{job_id}"
    return {name: fs.cat(f"{folder}/{name}").decode() for name in ("summary.json", "config.yaml")}


def cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m ocr_actors.cli`` in a subprocess with a clean AWS/Ray environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    base.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ocr_actors.cli", *args],
        cwd=REPO,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class FirstRun:
    summary: JobSummary
    output: str
    progress: str
    captured: str


@pytest.fixture(scope="module")
def first_run(s3_server: S3Server, inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    output = s3_server.url("out") + "/"
    progress = io.StringIO()
    log = tmp_path_factory.mktemp("first_run") / "output.txt"
    with captured_output(log):
        summary = run_job(job_config(s3_server, inputs.prefix, output), progress=progress)
    return FirstRun(summary, output, progress.getvalue(), log.read_text(errors="replace"))


# --------------------------------------------------------------------------- tests


def test_job_reads_and_writes_s3(s3_server: S3Server, inputs: Inputs, first_run: FirstRun) -> None:
    summary = first_run.summary
    pages = len(inputs.truth)
    assert summary.status == "succeeded", summary.message
    assert summary.sources_total == inputs.sources == 7  # notes.txt is not listed
    assert summary.sources_processed == 7 and summary.sources_skipped == 0
    assert summary.rows_written == pages + len(inputs.failed) == 8
    assert summary.pages_ok == pages and summary.error_rows == 4
    assert summary.errors_by_type == {"unsupported_type": 1, "corrupt": 1, "empty": 1, "truncated": 1}
    assert summary.files_written >= 1 and summary.lines >= 4 * pages

    table, schemas = read_output(s3_server, first_run.output)
    # Exactly the declared schema: names, types, nullability and the schema's own metadata.
    for schema in schemas:
        assert schema.remove_metadata().equals(PAGE_SCHEMA.remove_metadata()), schema
        assert schema.names == PAGE_SCHEMA.names
        assert [f.type for f in schema] == [f.type for f in PAGE_SCHEMA]
        assert {k: v for k, v in (schema.metadata or {}).items() if k in PAGE_SCHEMA.metadata} == PAGE_SCHEMA.metadata

    # One row per (source_uri, page_index): no duplicates, nothing missing.
    assert query(table, "select count(*), count(distinct (source_uri, page_index)) from pages") == [(8, 8)]
    assert query(table, "select source_uri, page_index from pages group by all having count(*) > 1") == []
    keys = query(table, "select source_uri, page_index from pages where page_index is not null")
    assert set(keys) == set(inputs.truth)
    assert query(table, "select distinct job_id from pages") == [(summary.job_id,)]

    # Recognised text against the rendered lines; page counts and ids.
    ok = query(
        table, "select source_uri, page_index, page_count, doc_id, text, width, height from pages where status = 'ok'"
    )
    assert len(ok) == pages
    for uri, index, count, doc_id, text, width, height in ok:
        truth = inputs.truth[(uri, index)]
        cer = page_cer(text.split("\n"), truth.split("\n"))
        assert cer <= MAX_CER, (uri, index, cer, text, truth)
        assert count == inputs.page_counts[uri]
        assert doc_id == doc_id_for(uri)
        assert (width, height) == (1240, 640)

    # Error rows: one per failed file, null page index and OCR columns, type and message.
    errors = query(
        table,
        "select source_uri, error_type, error_message, page_index, page_count, text, lines "
        "from pages where status = 'error' order by source_uri",
    )
    assert {row[0]: row[1] for row in errors} == inputs.failed
    for uri, _, message, page_index, page_count, text, lines in errors:
        assert message and isinstance(message, str), uri
        assert page_index is None and page_count is None and text is None and lines is None, uri
    assert query(table, "select count(*) from pages where status = 'ok' and error_type is not null") == [(0,)]

    # Lines: 4-point polygons of 2 coordinates, boxes of 4, in reading order joined as text.
    assert query(
        table,
        "select min(len(l.poly)), max(len(l.poly)), min(len(l.box)), max(len(l.box)), "
        "bool_and(list_bool_and([len(p) = 2 for p in l.poly])) "
        "from (select unnest(lines) as l from pages where status = 'ok')",
    ) == [(4, 4, 4, 4, True)]
    assert query(
        table,
        "select count(*) from pages where status = 'ok' and text != array_to_string([l.text for l in lines], chr(10))",
    ) == [(0,)]


def test_rerun_processes_nothing(s3_server: S3Server, inputs: Inputs, first_run: FirstRun) -> None:
    before = row_count(s3_server, first_run.output)
    progress = io.StringIO()
    summary = run_job(job_config(s3_server, inputs.prefix, first_run.output), progress=progress)
    assert summary.status == "succeeded"
    assert summary.sources_total == inputs.sources
    assert summary.sources_skipped == summary.sources_total
    assert summary.sources_processed == 0 and summary.sources_partial == 0
    assert summary.rows_written == 0 and summary.files_written == 0
    assert row_count(s3_server, first_run.output) == before == first_run.summary.rows_written
    assert f"{inputs.sources} already done" in progress.getvalue()


def test_incremental_processes_only_new_objects(s3_server: S3Server, inputs: Inputs, first_run: FirstRun) -> None:
    before, _ = read_output(s3_server, first_run.output)
    page = small_page(730)
    new_uri = f"{inputs.prefix}later/new.png"
    # Uploaded by another client, as a separate producer would: the job must not rely on a
    # listing cached by an earlier run in this process.
    s3_server.filesystem().pipe(new_uri, png_bytes(page))

    summary = run_job(
        job_config(s3_server, inputs.prefix, first_run.output, **{"output.mode": "incremental"}), progress=None
    )
    assert summary.status == "succeeded"
    assert summary.sources_total == inputs.sources + 1
    assert summary.sources_skipped == inputs.sources
    assert summary.sources_processed == 1
    assert summary.rows_written == 1 and summary.pages_ok == 1 and summary.error_rows == 0

    after, _ = read_output(s3_server, first_run.output)
    assert after.num_rows == before.num_rows + 1
    new_rows = query(after, f"select job_id, page_index, text from pages where source_uri = '{new_uri}'")
    assert len(new_rows) == 1
    job_id, page_index, text = new_rows[0]
    assert job_id == summary.job_id and page_index == 0
    assert page_cer(text.split("\n"), [line.text for line in page.lines]) <= MAX_CER
    # Earlier rows untouched (same job id, same count).
    assert query(after, f"select count(*) from pages where job_id = '{first_run.summary.job_id}'") == [
        (before.num_rows,)
    ]


def test_credentials_never_reach_outputs_or_logs(s3_server: S3Server, first_run: FirstRun) -> None:
    files = job_files(s3_server, first_run.output, first_run.summary.job_id)
    config = yaml.safe_load(files["config.yaml"])
    options = config["source"]["storage_options"]
    assert options["key"] == "***" and options["secret"] == "***"
    assert options["endpoint_url"] == s3_server.endpoint_url
    assert json.loads(files["summary.json"])["job_id"] == first_run.summary.job_id
    job_folder = f"{first_run.output.rstrip('/')}/{JOBS_DIR}/{first_run.summary.job_id}"
    assert sorted(p.rsplit("/", 1)[-1] for p in s3_server.filesystem().ls(job_folder)) == [
        "config.yaml",
        "summary.json",
    ]
    table, _ = read_output(s3_server, first_run.output)
    settings = s3_server.filesystem().cat(f"{first_run.output.rstrip('/')}/{JOBS_DIR}/_settings.json").decode()
    assert json.loads(settings)["ocr"]["text_recognition"]["model"] == config["ocr"]["text_recognition"]["model"]
    texts = {
        "summary.json": files["summary.json"],
        "config.yaml": files["config.yaml"],
        "_settings.json": settings,
        "progress": first_run.progress,
        "stdout/stderr": first_run.captured,
        "parquet": json.dumps(table.to_pylist(), default=str),
    }
    assert "summary in s3://" in first_run.progress
    for name, text in texts.items():
        assert s3_server.secret not in text, name
        assert s3_server.key not in text, name


def test_wrong_secret_fails_fast_with_access_error(s3_server: S3Server, inputs: Inputs) -> None:
    wrong = "wrong-" + s3_server.secret[::-1]
    options = {**s3_server.storage_options, "secret": wrong}
    config = job_config(s3_server, inputs.prefix, s3_server.url("out-denied"), **{"source.storage_options": options})
    start = time.monotonic()
    with pytest.raises(SourceAccessError) as caught:
        run_job(config, progress=None)
    assert time.monotonic() - start < 30
    message = str(caught.value)
    assert "access denied" in message and inputs.prefix in message
    assert isinstance(caught.value.__cause__, PermissionError)
    for secret in (wrong, s3_server.secret):
        assert secret not in message and secret not in repr(caught.value.__cause__)
    assert not s3_server.filesystem().exists(s3_server.url("out-denied"))


def test_cli_wrong_secret_exits_2_without_the_secret(s3_server: S3Server, inputs: Inputs) -> None:
    wrong = "wrong-" + s3_server.secret[::-1]
    result = cli(
        [
            "run",
            "--input",
            inputs.prefix,
            "--output",
            s3_server.url("out-cli-denied"),
            f"source.storage_options.key={s3_server.key}",
            f"source.storage_options.secret={wrong}",
            f"source.storage_options.endpoint_url={s3_server.endpoint_url}",
            "source.storage_options.client_kwargs.region_name=us-east-1",
            "ray.num_cpus=2",
        ],
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "access denied" in result.stderr
    assert "Traceback" not in result.stderr
    for secret in (wrong, s3_server.secret):
        assert secret not in result.stderr and secret not in result.stdout


def test_cli_endpoint_and_credentials_from_aws_environment(s3_server: S3Server) -> None:
    """No storage options at all: AWS_ENDPOINT_URL (honoured by botocore >= 1.31) and the
    key variables reach s3fs in the driver and in the Ray workers."""
    fs = s3_server.filesystem()
    page = small_page(740)
    source = s3_server.url("env-in", "scan.png")
    fs.pipe(source, png_bytes(page))
    output = s3_server.url("env-out") + "/"
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret,
    }
    result = cli(
        [
            "run",
            "--input",
            s3_server.url("env-in") + "/",
            "--output",
            output,
            "ray.num_cpus=2",
            f"ray.object_store_memory={512 << 20}",
            "progress_interval_s=0.5",
        ],
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert summary["sources_total"] == 1 and summary["pages_ok"] == 1 and summary["error_rows"] == 0
    table, _ = read_output(s3_server, output)
    rows = query(table, "select source_uri, page_index, text from pages")
    assert [(uri, index) for uri, index, _ in rows] == [(source, 0)]
    assert page_cer(rows[0][2].split("\n"), [line.text for line in page.lines]) <= MAX_CER
    saved = job_files(s3_server, output, summary["job_id"])
    for text in (result.stdout, result.stderr, *saved.values()):
        assert s3_server.secret not in text


@pytest.mark.parametrize("case", ["manifest", "output", "no-credentials"])
def test_cli_access_errors_beyond_the_source_listing(s3_server: S3Server, inputs: Inputs, case: str) -> None:
    wrong = "wrong-" + s3_server.secret[::-1]
    endpoint = f"source.storage_options.endpoint_url={s3_server.endpoint_url}"
    good = [f"source.storage_options.key={s3_server.key}", f"source.storage_options.secret={s3_server.secret}"]
    bad = [f"source.storage_options.key={s3_server.key}", f"source.storage_options.secret={wrong}"]
    if case == "manifest":
        manifest = s3_server.url("manifests", "inputs.txt")
        s3_server.filesystem().pipe(manifest, f"{inputs.prefix}page0.png\n".encode())
        args = ["--input", manifest, "--output", s3_server.url("out-gap-manifest"), endpoint, *bad]
    elif case == "output":
        output_bad = [
            f"output.storage_options.key={s3_server.key}",
            f"output.storage_options.secret={wrong}",
            f"output.storage_options.endpoint_url={s3_server.endpoint_url}",
        ]
        args = ["--input", inputs.prefix, "--output", s3_server.url("out-gap-output"), endpoint, *good, *output_bad]
    else:
        args = ["--input", inputs.prefix, "--output", s3_server.url("out-gap-anon"), endpoint]
    result = cli(["run", *args, "ray.num_cpus=2"], timeout=120)
    for secret in (wrong, s3_server.secret):
        assert secret not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    expected = "no credentials found" if case == "no-credentials" else "access denied"
    assert result.returncode == 2 and expected in result.stderr, result.stderr[-600:]


def test_retried_error_rows_leave_s3_part_files_in_place(s3_server: S3Server) -> None:
    """``output.retry_errors`` on S3: the part file holding a retried error row is rewritten
    under its own key (a copy over the old object), the others untouched."""
    from ocr_actors.io.parquet import drop_retried_rows, list_parts, scan_done, write_part
    from ocr_actors.pipeline.plan import Planner

    output = s3_server.url("retry-out")
    options = s3_server.storage_options

    mixed = write_part(
        [part_row("s3://b/a.png", 0, 1), part_row("s3://b/net.png", None, None, "read_failed")], output, options
    )
    final = write_part([part_row("s3://b/bad.png", None, None, "corrupt")], output, options)
    done = scan_done(output, options, ("read_failed",))
    planner = Planner(done, "resume", None)
    assert planner.plan_chunk(["s3://b/a.png", "s3://b/net.png", "s3://b/bad.png"]).column(0).to_pylist() == [
        "s3://b/net.png"
    ]
    assert drop_retried_rows(output, options, done, planner.retried) == 1
    assert sorted(list_parts(output, options)) == sorted([mixed, final])
    fs = s3_server.filesystem()
    with fs.open(mixed, "rb") as fh:
        assert pq.read_table(fh).column("source_uri").to_pylist() == ["s3://b/a.png"]
    with fs.open(final, "rb") as fh:
        assert pq.read_table(fh).column("error_type").to_pylist() == ["corrupt"]
    assert [p for p in fs.find(f"{output}/_tmp") if not p.endswith("/_tmp")] == []  # the folder marker stays


def test_a_key_with_double_colons_is_listed_and_read_whole(s3_server: S3Server, tmp_path: Path) -> None:
    """``::`` chains fsspec filesystems; inside a key or file name it is just a name."""
    from ocr_actors.io.sources import expand_inputs, read_bytes

    data = png_bytes(small_page(730))
    prefix = s3_server.url("colons")
    s3_server.filesystem().pipe(f"{prefix}/scan::v2.png", data)
    listed = list(expand_inputs(prefix + "/", s3_server.storage_options))
    assert listed == [f"{prefix}/scan::v2.png"]
    assert read_bytes(listed[0], s3_server.storage_options) == data
    local = tmp_path / "a::b.png"
    local.write_bytes(data)
    assert list(expand_inputs(str(tmp_path))) == [str(local)] and read_bytes(str(local)) == data


def test_cli_compact_on_s3_finishes_an_interrupted_compaction_and_merges(s3_server: S3Server) -> None:
    """``ocr-batch compact`` against the S3 server (credentials from the environment): the
    doubled rows of a compaction killed after its move are single again, the small part
    files merged into one object, and nothing else is left under ``_tmp/`` or the journals."""
    from ocr_actors.io.compact import merge_group, read_part_sizes
    from ocr_actors.io.parquet import list_parts, write_part

    output = s3_server.url("compact-out")
    options = s3_server.storage_options
    for index, size in enumerate([2, 1, 3]):
        write_part([part_row(f"s3://scans/doc{index}.pdf", page, size) for page in range(size)], output, options)

    def killed() -> None:
        raise KeyboardInterrupt

    group = read_part_sizes(output, options)[:2]
    with pytest.raises(KeyboardInterrupt):
        merge_group(output, options, group, before_delete=killed)
    assert row_count(s3_server, output) == 6 + sum(p.rows for p in group)  # the group's rows twice

    result = cli(["compact", "--output", output, "output.rows_per_file=10"], env=s3_server.env())
    assert result.returncode == 0, result.stderr[-800:]
    summary = json.loads(result.stdout)
    assert summary["journals_finished"] == 1 and summary["files_after"] == 1
    table, _ = read_output(s3_server, output)
    keys = query(table, "select source_uri, page_index from pages order by 1, 2")
    assert keys == [(f"s3://scans/doc{i}.pdf", p) for i, size in enumerate([2, 1, 3]) for p in range(size)]
    assert len(list_parts(output, options)) == 1
    fs = s3_server.filesystem()
    assert not [p for p in fs.find(f"{output}/_jobs/_compact") if p.endswith(".json")]  # no journal left
    assert fs.find(f"{output}/_tmp") == []
    assert s3_server.secret not in result.stdout + result.stderr
    status = cli(["status", "--output", output], env=s3_server.env())  # read-only, from S3
    assert status.returncode == 0, status.stderr[-800:]
    state = json.loads(status.stdout)
    assert (state["rows"], state["sources"], state["part_files"], state["pending_compactions"]) == (6, 3, 1, 0)
    assert state["lease"] is None and "no run holds the output" in status.stderr
