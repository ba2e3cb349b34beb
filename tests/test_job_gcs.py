"""The batch job against Google Cloud Storage: a real emulator (``gcp-storage-emulator``)
reached through gcsfs. Pages, a two-page PDF and a corrupt file under ``gs://``, Parquet
written to ``gs://`` and read back through gcsfs; a rerun, a manifest of ``gs://`` URIs, and
the saved config with its ``token`` redacted. See tests/gcs_server.py for what gcsfs needs
to talk to the emulator."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ocr_actors.io.parquet import JOBS_DIR, PAGE_SCHEMA, PART_PREFIX, TMP_DIR, doc_id_for
from ocr_actors.pipeline import JobSummary, run_job
from tests.conftest import page_cer
from tests.gcs_server import GCSServer, running_gcs_server
from tests.test_job_s3 import job_config, pdf_bytes, png_bytes, query, small_page

MAX_CER = 0.02
CORRUPT = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40  # a PNG signature, then junk


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    with running_gcs_server("ocr-gcs-jobs", tmp_path_factory.mktemp("gcs")) as server:
        yield server


pytestmark = pytest.mark.usefixtures("ray_per_module")


@dataclass
class Inputs:
    prefix: str  # gs://bucket/in/
    truth: dict[tuple[str, int], str]  # (source_uri, page_index) -> page text
    page_counts: dict[str, int]
    corrupt: str  # the corrupt file's URI

    @property
    def sources(self) -> int:
        return len(self.page_counts) + 1


@pytest.fixture(scope="module")
def inputs(gcs_server: GCSServer) -> Inputs:
    fs = gcs_server.filesystem()
    prefix = gcs_server.url("in") + "/"
    truth: dict[tuple[str, int], str] = {}
    counts: dict[str, int] = {}
    page = small_page(800)
    uri = f"{prefix}page0.png"
    fs.pipe(uri, png_bytes(page))
    truth[(uri, 0)], counts[uri] = page.text, 1
    pdf_pages = [small_page(810 + i) for i in range(2)]
    uri = f"{prefix}docs/report.pdf"  # a nested "folder" too
    fs.pipe(uri, pdf_bytes(pdf_pages))
    for i, pdf_page in enumerate(pdf_pages):
        truth[(uri, i)] = pdf_page.text
    counts[uri] = 2
    corrupt = f"{prefix}bad.png"
    fs.pipe(corrupt, CORRUPT)
    fs.pipe(f"{prefix}notes.txt", b"not a document suffix: not listed")
    return Inputs(prefix, truth, counts, corrupt)


def part_files(server: GCSServer, output: str) -> list[str]:
    fs = server.filesystem()
    return sorted(p for p in fs.ls(output, detail=False) if p.rsplit("/", 1)[-1].startswith(PART_PREFIX))


def read_output(server: GCSServer, output: str) -> tuple[pa.Table, list[pa.Schema]]:
    """Every part file under ``output`` (not ``_jobs/``/``_tmp/``), read through a fresh
    gcsfs client, and each file's schema."""
    fs = server.filesystem()
    paths = part_files(server, output)
    assert paths, f"no part files under {output}"
    tables = [pq.read_table(path, filesystem=fs) for path in paths]
    return pa.concat_tables(tables), [t.schema for t in tables]


@dataclass
class FirstRun:
    summary: JobSummary
    output: str
    progress: str


@pytest.fixture(scope="module")
def first_run(gcs_server: GCSServer, inputs: Inputs) -> FirstRun:
    output = gcs_server.url("out") + "/"
    progress = io.StringIO()
    summary = run_job(job_config(gcs_server, inputs.prefix, output), progress=progress)
    return FirstRun(summary, output, progress.getvalue())


# --------------------------------------------------------------------------- tests


def test_job_reads_and_writes_gcs(gcs_server: GCSServer, inputs: Inputs, first_run: FirstRun) -> None:
    summary = first_run.summary
    pages = len(inputs.truth)
    assert summary.status == "succeeded", summary.message
    assert summary.sources_total == inputs.sources == 3  # notes.txt is not listed
    assert summary.sources_processed == 3 and summary.sources_skipped == 0
    assert summary.rows_written == pages + 1 == 4
    assert summary.pages_ok == pages and summary.error_rows == 1
    assert summary.errors_by_type == {"corrupt": 1}
    assert summary.files_written >= 1 and summary.lines >= 4 * pages

    table, schemas = read_output(gcs_server, first_run.output)
    for schema in schemas:
        assert schema.remove_metadata().equals(PAGE_SCHEMA.remove_metadata()), schema
    assert len(part_files(gcs_server, first_run.output)) == summary.files_written
    # Every part was moved out of _tmp/ into place.
    assert gcs_server.filesystem().find(f"{first_run.output}{TMP_DIR}") == []

    # One row per page plus the error row, keyed by gs:// URIs as listed.
    assert table.num_rows == pages + 1
    assert query(table, "select count(distinct (source_uri, page_index)) from pages") == [(pages + 1,)]
    keys = query(table, "select source_uri, page_index from pages where page_index is not null")
    assert set(keys) == set(inputs.truth)
    assert query(table, "select distinct job_id from pages") == [(summary.job_id,)]

    # Recognised text against the lines each page was rendered from.
    ok = query(table, "select source_uri, page_index, page_count, doc_id, text from pages where status = 'ok'")
    assert len(ok) == pages
    for uri, index, count, doc_id, text in ok:
        truth = inputs.truth[(uri, index)]
        assert page_cer(text.split("\n"), truth.split("\n")) <= MAX_CER, (uri, index, text, truth)
        assert count == inputs.page_counts[uri] and doc_id == doc_id_for(uri)
    first_page = dict(((u, i), t) for u, i, _, _, t in ok)[(f"{inputs.prefix}page0.png", 0)]
    words = inputs.truth[(f"{inputs.prefix}page0.png", 0)].split()
    assert sum(w in first_page for w in words) >= 0.9 * len(words), (first_page, words)

    # The corrupt file: one file-level error row.
    errors = query(
        table,
        "select source_uri, error_type, error_message, page_index, text from pages where status = 'error'",
    )
    assert len(errors) == 1
    uri, error_type, message, page_index, text = errors[0]
    assert (uri, error_type) == (inputs.corrupt, "corrupt")
    assert message and page_index is None and text is None

    # The job's own files beside the output; the token is redacted in the saved config.
    fs = gcs_server.filesystem()
    folder = f"{first_run.output}{JOBS_DIR}/{summary.job_id}"
    config = yaml.safe_load(fs.cat(f"{folder}/config.yaml"))
    options = config["source"]["storage_options"]
    assert options["token"] == "***" and options["endpoint_url"] == gcs_server.endpoint_url
    assert '"job_id"' in fs.cat(f"{folder}/summary.json").decode()
    assert "summary in gs://" in first_run.progress


def test_rerun_processes_nothing(gcs_server: GCSServer, inputs: Inputs, first_run: FirstRun) -> None:
    before, _ = read_output(gcs_server, first_run.output)
    progress = io.StringIO()
    summary = run_job(job_config(gcs_server, inputs.prefix, first_run.output), progress=progress)
    assert summary.status == "succeeded"
    assert summary.sources_total == inputs.sources
    assert summary.sources_skipped == summary.sources_total
    assert summary.sources_processed == 0 and summary.sources_partial == 0
    assert summary.rows_written == 0 and summary.files_written == 0
    after, _ = read_output(gcs_server, first_run.output)
    assert after.num_rows == before.num_rows == first_run.summary.rows_written
    assert f"{inputs.sources} already done" in progress.getvalue()


def test_manifest_of_gs_uris(gcs_server: GCSServer, inputs: Inputs, first_run: FirstRun) -> None:
    """A manifest in the bucket naming one page already done and one new object: only the
    new one is read and OCR'd, and its row joins the same output; a second run skips both."""
    fs = gcs_server.filesystem()
    before, _ = read_output(gcs_server, first_run.output)
    page = small_page(830)
    new_uri = gcs_server.url("elsewhere", "new.png")
    fs.pipe(new_uri, png_bytes(page))
    manifest = gcs_server.url("manifests", "inputs.txt")
    fs.pipe(manifest, f"# pages to OCR\n{inputs.prefix}page0.png\n\n{new_uri}\n".encode())

    summary = run_job(job_config(gcs_server, manifest, first_run.output), progress=None)
    assert summary.status == "succeeded", summary.message
    assert summary.sources_total == 2 and summary.sources_skipped == 1 and summary.sources_processed == 1
    assert summary.rows_written == 1 and summary.pages_ok == 1 and summary.error_rows == 0

    after, _ = read_output(gcs_server, first_run.output)
    assert after.num_rows == before.num_rows + 1
    rows = query(after, f"select job_id, page_index, text from pages where source_uri = '{new_uri}'")
    assert len(rows) == 1
    job_id, page_index, text = rows[0]
    assert job_id == summary.job_id and page_index == 0
    assert page_cer(text.split("\n"), page.text.split("\n")) <= MAX_CER, (text, page.text)

    # Again in this process: the part the workers just wrote is seen (no stale listing).
    again = run_job(job_config(gcs_server, manifest, first_run.output), progress=None)
    assert again.sources_skipped == 2 and again.sources_processed == 0 and again.rows_written == 0
    assert read_output(gcs_server, first_run.output)[0].num_rows == after.num_rows
