"""Apache Spark reads the job's Parquet output as the README promises: one real job on local
pages (embedded Ray), then Spark SQL on the output root, checked against the summary and
against the same files read with pyarrow.

Needs Java 17+ (Spark 4) and pyspark (the ``dev`` extra). Either missing fails the tests with
a message saying what to install; nothing is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ocr_actors.pipeline import run_job
from ocr_actors.pipeline.job import JobSummary
from ocr_actors.synth import SyntheticPage, render_page
from tests.test_job import job_config, write_pdf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


def _page(seed: int) -> SyntheticPage:
    """A small page with few lines: the job is here to produce real output, not to measure OCR."""
    return render_page(seed=seed, width=900, height=700, lines_per_column=4)


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A local one-core SparkSession with a small heap and no UI; stopped at the end."""
    home = os.environ.get("JAVA_HOME")
    java = (home and shutil.which("java", path=os.path.join(home, "bin"))) or shutil.which("java")
    if java is None:
        pytest.fail(
            "Java not found (no `java` on PATH or in $JAVA_HOME/bin): Spark 4 needs Java 17 or newer, "
            "e.g. `apt-get install openjdk-17-jre-headless`",
            pytrace=False,
        )
    if (major := _java_major(java)) < 17:
        pytest.fail(f"{java} is Java {major or '?'}: Spark 4 needs Java 17 or newer", pytrace=False)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.fail("pyspark is not installed: `pip install -e '.[dev]'` (scripts/setup.sh does)", pytrace=False)

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only; no hostname lookup warning
    session = (
        SparkSession.builder.master("local[1]")
        .appName("ocr-batch-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        # Start-up dominates: the C1 compiler only and the serial GC start fastest on 2 cores.
        .config("spark.driver.extraJavaOptions", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Path, JobSummary, dict[tuple[str, int], str]]:
    """Run the job once: 3 single-page PNGs, a 2-page PDF and a corrupt PNG."""
    folder = tmp_path_factory.mktemp("spark_inputs")
    truth: dict[tuple[str, int], str] = {}
    for i in range(3):
        page = _page(700 + i)
        cv2.imwrite(str(folder / f"page{i}.png"), page.image)
        truth[(str(folder / f"page{i}.png"), 0)] = page.text
    pdf_pages = [_page(710 + i) for i in range(2)]
    write_pdf(folder / "doc.pdf", pdf_pages)
    for i, page in enumerate(pdf_pages):
        truth[(str(folder / "doc.pdf"), i)] = page.text
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)

    out = tmp_path_factory.mktemp("spark_out") / "ocr"
    summary = run_job(job_config(str(folder), out), progress=None)
    assert summary.status == "succeeded", summary.message
    assert (summary.rows_written, summary.pages_ok, summary.error_rows) == (6, 5, 1)

    import ray

    ray.shutdown()  # its idle workers off the two cores Spark queries on; run_job starts Ray again if needed

    # What a killed run leaves behind: a half-written part under _tmp/ (plus the job's own
    # _jobs/<id>/summary.json and config.yaml). Spark, pointed at the root, must skip them.
    part = next(out.glob("part-*.parquet"))
    (out / "_tmp").mkdir(exist_ok=True)
    (out / "_tmp" / f"{part.name}.0123456789abcdef").write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    return out, summary, truth


@pytest.fixture(scope="module")
def arrow(job) -> pa.Table:
    """The same output read with pyarrow, part file by part file."""
    out, _, _ = job
    return pa.concat_tables(pq.read_table(p) for p in sorted(out.glob("part-*.parquet")))


@pytest.fixture(scope="module")
def ocr(spark, job) -> str:
    """The output root as the temp view ``ocr`` (the README's `spark.read.parquet(root)`)."""
    out, _, _ = job
    spark.read.parquet(str(out)).createOrReplaceTempView("ocr")
    return "ocr"


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, int | None], dict[str, Any]]:
    return {(r["source_uri"], r["page_index"]): r for r in rows}


def test_row_count_and_status_split_match_the_summary(spark, ocr, job):
    _, summary, _ = job
    assert spark.sql(f"select count(*) as n from {ocr}").first()["n"] == summary.rows_written
    statuses = spark.sql(f"select status, count(*) as n from {ocr} group by status").collect()
    by_status = {r["status"]: r["n"] for r in statuses}
    assert by_status == {"ok": summary.pages_ok, "error": summary.error_rows}
    errors = spark.sql(f"select error_type, count(*) as n from {ocr} where status = 'error' group by error_type")
    assert {r["error_type"]: r["n"] for r in errors.collect()} == summary.errors_by_type == {"corrupt": 1}
    assert spark.sql(f"select count(distinct job_id) as n, max(job_id) as id from {ocr}").first().asDict() == {
        "n": 1,
        "id": summary.job_id,
    }


def test_the_corrupt_file_is_one_error_row_with_null_page_index(spark, ocr):
    rows = spark.sql(
        f"select status, error_type, error_message, page_index, page_count, text, lines from {ocr} "
        "where source_uri like '%/corrupt.png'"
    ).collect()
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["error_type"]) == ("error", "corrupt")
    assert row["error_message"]
    assert (row["page_index"], row["page_count"], row["text"], row["lines"]) == (None, None, None, None)
    # A file-level error row is found by its null page_index, as the README says.
    assert spark.sql(f"select count(*) as n from {ocr} where page_index is null").first()["n"] == 1


def test_exploded_lines_equal_what_the_job_wrote(spark, ocr, arrow):
    expected = [
        (r["source_uri"], r["page_index"], pos, line["text"], line["score"], line["poly"], line["box"], line["angle"])
        for r in arrow.to_pylist()
        if r["lines"] is not None
        for pos, line in enumerate(r["lines"])
    ]
    assert len(expected) >= 5 * 3  # every page has lines
    got = spark.sql(
        f"select source_uri, page_index, pos, l.text, l.score, l.poly, l.box, l.angle "
        f"from {ocr} lateral view posexplode(lines) t as pos, l"
    ).collect()
    assert sorted(tuple(r) for r in got) == sorted(expected)  # float32 values come back exactly
    # The DataFrame spelling of the same.
    frame = spark.table(ocr).selectExpr("explode(lines) as l").selectExpr("l.text as text")
    assert sorted(r["text"] for r in frame.collect()) == sorted(e[3] for e in expected)


def test_field_access_on_the_lines_array_and_polygon_shapes(spark, ocr, arrow):
    rows = spark.sql(
        f"select source_uri, page_index, text, lines.text as texts from {ocr} where status = 'ok'"
    ).collect()
    reference = _by_key(arrow.to_pylist())
    assert len(rows) == 5
    for row in rows:
        ref = reference[(row["source_uri"], row["page_index"])]
        assert row["texts"] == [line["text"] for line in ref["lines"]]
        assert row["text"] == ref["text"] == "\n".join(row["texts"])  # text joins lines in order
    shapes = spark.sql(
        f"select count(*) as n, "
        "sum(case when size(l.poly) = 4 and forall(l.poly, p -> size(p) = 2) then 1 else 0 end) as quads, "
        "sum(case when size(l.box) = 4 and l.box[0] <= l.box[2] and l.box[1] <= l.box[3] then 1 else 0 end) as boxes, "
        "sum(case when l.angle = -1 then 1 else 0 end) as no_angle "
        f"from (select explode(lines) as l from {ocr})"
    ).first()
    assert shapes["n"] > 0
    assert shapes["quads"] == shapes["boxes"] == shapes["no_angle"] == shapes["n"]
    # The README's low-confidence query, in Spark SQL: element access on the nested arrays.
    first_points = spark.sql(f"select lines[0].poly[0] as p from {ocr} where status = 'ok'").collect()
    assert all(len(r["p"]) == 2 and all(isinstance(v, float) for v in r["p"]) for r in first_points)


def test_a_known_page_holds_its_truth_words(spark, ocr, job):
    _, _, truth = job
    key = next(k for k in truth if k[0].endswith("/doc.pdf") and k[1] == 1)
    uri = key[0]
    row = spark.sql(f"select text from {ocr} where source_uri = :uri and page_index = 1", args={"uri": uri}).first()
    assert row is not None
    found = set(row["text"].split())
    words = set(truth[key].split())
    assert len(words & found) >= 0.9 * len(words), (row["text"], truth[key])
    # A word only this page has: the README's text search finds exactly this page.
    others = {w for k, t in truth.items() if k != key for w in t.split()}
    word = max((w for w in words & found if w not in others and w.isalpha()), key=len)
    hits = spark.sql(
        f"select source_uri, page_index from {ocr} where text ilike :pattern", args={"pattern": f"%{word}%"}
    ).collect()
    assert [(r["source_uri"], r["page_index"]) for r in hits] == [key]


def test_the_readme_spark_queries(spark, job, arrow):
    """The Spark example of the README's output section, run as written (on the local root)."""
    out, summary, _ = job
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(spark\.read\.parquet\(.*?)```", readme, re.S)
    assert block, "the README's Spark example is gone"
    read, *queries = block.group(1).strip().splitlines()
    assert read == 'spark.read.parquet("s3a://bucket/ocr/").createOrReplaceTempView("ocr")'
    spark.read.parquet(str(out)).createOrReplaceTempView("ocr")
    sqls = [re.fullmatch(r'spark\.sql\("(.*)"\)', q).group(1) for q in queries]  # type: ignore[union-attr]
    assert len(sqls) == 2
    counts = {(r[0], r[1]): r[2] for r in spark.sql(sqls[0]).collect()}
    assert counts == {("ok", None): summary.pages_ok, ("error", "corrupt"): 1}
    low = [
        (r["source_uri"], r["page_index"], line["text"], line["score"], line["poly"])
        for r in arrow.to_pylist()
        for line in r["lines"] or []
        if line["score"] < 0.8
    ]
    assert sorted(tuple(r) for r in spark.sql(sqls[1]).collect()) == sorted(low)


def test_column_types_and_the_processed_at_instant(spark, ocr, arrow):
    from pyspark.sql import types as T

    schema = spark.table(ocr).schema
    types = {f.name: f.dataType for f in schema.fields}
    assert types["page_index"] == types["page_count"] == types["width"] == types["height"] == T.IntegerType()
    assert types["doc_angle"] == T.ShortType() and types["dpi"] == T.FloatType()
    assert types["processed_at"] == T.TimestampType()  # an instant (UTC-adjusted), not TIMESTAMP_NTZ
    line = types["lines"]
    assert isinstance(line, T.ArrayType) and isinstance(line.elementType, T.StructType)
    assert {f.name: f.dataType for f in line.elementType.fields} == {
        "text": T.StringType(),
        "score": T.FloatType(),
        "poly": T.ArrayType(T.ArrayType(T.FloatType())),
        "box": T.ArrayType(T.IntegerType()),
        "angle": T.ShortType(),
    }
    assert [f.name for f in schema.fields] == arrow.schema.names
    # Spark makes every column of a file source nullable, whatever the Parquet says (not an error).
    assert all(f.nullable for f in schema.fields)

    # Same instant to the microsecond: Spark's epoch micros against pyarrow's stored int64.
    expected = dict(
        zip(
            zip(arrow["source_uri"].to_pylist(), arrow["page_index"].to_pylist(), strict=True),
            arrow["processed_at"].cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )
    rows = spark.sql(
        f"select source_uri, page_index, unix_micros(processed_at) as us, "
        "date_format(processed_at, \"yyyy-MM-dd'T'HH:mm:ss.SSSSSS\") as utc "
        f"from {ocr}"
    ).collect()
    assert {(r["source_uri"], r["page_index"]): r["us"] for r in rows} == expected
    by_key = _by_key(arrow.to_pylist())
    for r in rows:  # rendered in the session's UTC zone: the wall time pyarrow shows for tz=UTC
        assert r["utc"] == by_key[(r["source_uri"], r["page_index"])]["processed_at"].strftime("%Y-%m-%dT%H:%M:%S.%f")


def test_the_output_root_reads_without_the_side_folders(spark, job):
    out, summary, _ = job
    side = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.parent != out}
    assert f"_jobs/{summary.job_id}/summary.json" in side and f"_jobs/{summary.job_id}/config.yaml" in side
    assert any(s.startswith("_tmp/part-") for s in side)  # the half-written leftover
    parts = {p.resolve().as_uri() for p in out.glob("part-*.parquet")}
    assert len(parts) == summary.files_written

    frame = spark.read.parquet(str(out))
    files = {Path(f.removeprefix("file:")).resolve().as_uri() for f in frame.inputFiles()}
    assert files == parts
    assert frame.count() == summary.rows_written
    # Also with recursive listing (no partition discovery): `_`-prefixed folders stay skipped.
    recursive = spark.read.option("recursiveFileLookup", "true").parquet(str(out))
    assert {Path(f.removeprefix("file:")).resolve().as_uri() for f in recursive.inputFiles()} == parts
    assert recursive.count() == summary.rows_written
    # The skipping matters: the leftover alone is not readable Parquet.
    leftover = next((out / "_tmp").glob("part-*"))
    with pytest.raises(Exception, match="CANNOT_READ_FILE_FOOTER"):
        spark.read.parquet(str(leftover)).count()
