#!/usr/bin/env python
"""CPU cost per page of everything around the models: what a GPU node's cores must do.

    python scripts/bench_host_costs.py --pages 20

On GPU nodes the detector and recogniser run on the GPU, and every other step runs on the
node's CPU cores: decoding, detection pre- and post-processing, cropping, recognition
pre-processing, CTC decoding, assembling and writing Parquet. This times each of them on the
same text-heavy pages as ``bench_job.py`` (one thread; model outputs come from a real CPU
run that is not timed) and prints ms per page, the share of each step, and the pages/s one
core sustains, so that cores per GPU follow: cores = target pages/s / (pages/s per core).
The two models are timed on this CPU too (the work a GPU takes over), as the reference
the host work is measured against. The (grey) pages decode to one channel as in the batch job;
``--bgr`` decodes them to BGR, as the single-image engine does, for comparison; ``--encoding``
stores them as RGB PNG (default), greyscale PNG or JPEG.

Last it replays the part of that work a GPU model actor does itself (detection pre- and
post-processing, cropping, recognition pre-processing, CTC decoding; the model outputs reused,
so no model runs) in one thread and in ``--threads`` threads of one process at once, as an
actor with ``concurrent_calls`` runs its batches: pages/s in each and the speed-up, which
says how much of that work holds Python's GIL (a speed-up near the thread count: little).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

ENCODINGS = ("png", "grey-png", "jpeg")


def text_heavy_pages(count: int, encoding: str = "png") -> list[bytes]:
    """File bytes of ``count`` pages of the job benchmark's mix (22 lines per column, 1-2
    columns): an RGB PNG (as the job benchmark writes them), a greyscale PNG, or a JPEG
    (quality 90)."""
    from ocr_actors.synth import render_page

    pages = []
    for i in range(count):
        page = render_page(
            seed=9000 + i, columns=1 + i % 2, lines_per_column=22, kinds=("prose", "prose", "number", "currency")
        )
        if encoding == "grey-png":
            pages.append(cv2.imencode(".png", cv2.cvtColor(page.image, cv2.COLOR_BGR2GRAY))[1].tobytes())
        elif encoding == "jpeg":
            pages.append(cv2.imencode(".jpg", page.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        else:
            pages.append(cv2.imencode(".png", page.image)[1].tobytes())
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument(
        "--encoding", choices=ENCODINGS, default="png", help="how the pages are stored (default: RGB PNG)"
    )
    parser.add_argument(
        "--bgr",
        action="store_true",
        help="decode the (grey) pages to BGR, as the single-image engine does, instead of to one "
        "channel as the batch job does (decode_document keep_grey)",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads of the actor-work replay (default 2; 1 skips it)"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)

    from ocr_actors.config import EngineConfig, OCRConfig
    from ocr_actors.io.decode import decode_document
    from ocr_actors.io.parquet import write_part
    from ocr_actors.postprocess import ctc_collapse, db_boxes, filter_tiny_quads
    from ocr_actors.preprocess import batches_by_aspect_ratio, prepare_det_input, prepare_rec_batch
    from ocr_actors.runtime.ocr import crop_lines
    from ocr_actors.runtime.runners import TextDetector, TextRecognizer

    config = OCRConfig()
    engine = EngineConfig(threads=1)
    detector = TextDetector(config.text_detection, engine)
    recognizer = TextRecognizer(config.text_recognition, engine)
    assert recognizer.fused_decode, "the recogniser could not be fused (read-only cache?): host costs would differ"
    rec = config.text_recognition
    p = detector.default_params
    encoded = text_heavy_pages(args.pages, args.encoding)
    seconds: dict[str, float] = defaultdict(float)
    lines_total = 0
    rows: list[dict[str, object]] = []
    replays: list[tuple[object, object, list[tuple[object, object]]]] = []  # image, det output, rec outputs

    def timed(step: str, fn, *a, **k):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn(*a, **k)
        seconds[step] += time.perf_counter() - t0
        return out

    decode_step = f"decode ({args.encoding} -> {'BGR' if args.bgr else 'grey'})"
    with tempfile.TemporaryDirectory() as out_dir:
        for n, data in enumerate(encoded):
            page = timed(decode_step, lambda d=data: next(iter(decode_document(d, keep_grey=not args.bgr))))
            image = page.image
            det_input = timed("det pre-process", prepare_det_input, image, p.limit_side_len, p.limit_type)
            probs = timed("[model] detection", detector._session.run, det_input)
            h, w = det_input.shape[2:]
            quads, _scores = timed("det post-process (DB)", db_boxes, probs[0, 0, :h, :w], image.shape[:2], p.db)
            quads = quads[filter_tiny_quads(quads)]
            crops = timed("crop lines", crop_lines, image, quads)
            lines_total += len(crops)
            texts = []
            rec_outputs = []
            for batch in batches_by_aspect_ratio([c.shape[:2] for c in crops], rec.batch_size):
                members = [crops[i] for i in batch.indices]
                batch_input = timed(
                    "rec pre-process",
                    prepare_rec_batch,
                    members,
                    48,
                    rec.min_width,
                    rec.max_width,
                    rec.width_scale,
                    rec.width_multiple,
                )
                indices, scores = timed("[model] recognition", recognizer._session.run_all, batch_input)
                rec_outputs.append((indices, scores))
                texts += timed("CTC decode", ctc_collapse, indices[:, :, 0], scores[:, :, 0], recognizer.characters)
            row = {
                "source_uri": f"file:///p{n}.png",
                "doc_id": f"d{n}",
                "page_index": 0,
                "page_count": 1,
                "status": "ok",
                "width": w,
                "height": h,
                "text": "\n".join(t for t, _ in texts),
                "lines": [
                    {"text": t, "score": s, "poly": q.tolist(), "box": [0, 0, 1, 1], "angle": 0}
                    for (t, s), q in zip(texts, quads, strict=True)
                ],
                "det_model": "d",
                "rec_model": "r",
                "job_id": "j",
                "processed_at": None,
            }
            rows.append(row)
            replays.append((image, probs, rec_outputs))
        _write(rows[:1], out_dir + "/warm-up", write_part)  # imports and first-use set-up, not per-page cost
        timed("write Parquet", _write, rows, out_dir, write_part)  # one part file, as output.rows_per_file does

    host = {k: v for k, v in seconds.items() if not k.startswith("[model]")}
    host_total = sum(host.values())
    kind = "BGR pages (--bgr)" if args.bgr else "grey pages as the job moves them (one channel)"
    print(f"{args.pages} text-heavy pages, {lines_total / args.pages:.0f} lines per page, 1 thread, {kind}\n")
    print(f"{'step':<28} {'ms/page':>8} {'share':>6}")
    for step, s in seconds.items():
        share = f"{100 * s / host_total:5.1f}%" if step in host else ""
        print(f"{step:<28} {1000 * s / args.pages:8.1f} {share:>6}")
    per_page = host_total / args.pages
    print(f"\nhost work: {1000 * per_page:.1f} ms per page -> {1 / per_page:.1f} pages/s per core;")
    model = sum(v for k, v in seconds.items() if k.startswith("[model]")) / args.pages
    print(f"the models on this CPU: {1000 * model:.1f} ms per page; host work is {per_page / model:.2f}x that")
    print(f"150 pages/s per GPU needs {150 * per_page:.1f} cores of host work per GPU (before Ray's own overhead)")
    if args.threads > 1:

        def actor_work(page: tuple) -> None:  # type: ignore[type-arg]
            """The model actor's own host work on one page, with the recorded model outputs."""
            image, probs, rec_outputs = page
            det_input = prepare_det_input(image, p.limit_side_len, p.limit_type)
            h, w = det_input.shape[2:]
            quads, _ = db_boxes(probs[0, 0, :h, :w], image.shape[:2], p.db)
            crops = crop_lines(image, quads[filter_tiny_quads(quads)])
            batches = batches_by_aspect_ratio([c.shape[:2] for c in crops], rec.batch_size)
            for batch, (indices, scores) in zip(batches, rec_outputs, strict=True):
                members = [crops[i] for i in batch.indices]
                prepare_rec_batch(members, 48, rec.min_width, rec.max_width, rec.width_scale, rec.width_multiple)
                ctc_collapse(indices[:, :, 0], scores[:, :, 0], recognizer.characters)

        print(f"\nthe GPU model actor's own host work (decode, models and write left out), {args.threads} threads:")
        print(actor_threads_report(actor_work, replays, args.threads))
    return 0


def actor_threads_report(work, pages, threads: int) -> str:  # type: ignore[no-untyped-def]
    """Run ``work`` over ``pages`` in one thread, then in ``threads`` threads at once (each
    over all pages); pages/s of each and the speed-up."""
    from concurrent.futures import ThreadPoolExecutor

    def one_pass() -> None:
        for page in pages:
            work(page)

    one_pass()  # warm caches and lazy imports
    t0 = time.perf_counter()
    one_pass()
    alone = len(pages) / (time.perf_counter() - t0)
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda _: one_pass(), range(threads)))
        together = threads * len(pages) / (time.perf_counter() - t0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"1 thread: {alone:.1f} pages/s ({1000 / alone:.1f} ms a page); {threads} threads: {together:.1f} pages/s, "
        f"x{together / alone:.2f} (x{min(threads, cores or 1)} if nothing held the GIL, on {cores} cores)"
    )


def _write(rows, out_dir, write_part):  # type: ignore[no-untyped-def]
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    write_part([{**row, "processed_at": now} for row in rows], out_dir, {})


if __name__ == "__main__":
    sys.exit(main())
