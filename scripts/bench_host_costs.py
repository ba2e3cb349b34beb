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
stores them as RGB PNG (default), greyscale PNG, JPEG, one-page scanned PDFs (decoding is
then pdfium's rasterising at ``ocr.input.pdf_dpi``) or bilevel CCITT G4 TIFFs. The pages go through the model
actor's calls as the CPU defaults make them (a page a call), or with ``--gpu-layout`` as
``job_gpu.yaml`` does (16 pages a call, the detector's canvases, 32-row recognition batches by
width bucket), the same code path as the job's runners, their per-thread input buffers included.
``--gpu-layout`` gives the models pixels that their graphs normalise (``engine.normalize_in_model``,
on by default on a GPU); ``--normalize-on-host`` turns that off there, and ``--normalize-in-model``
turns it on with the CPU defaults, to weigh it on the CPU (host work down, model time up).

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

ENCODINGS = ("png", "grey-png", "jpeg", "pdf", "tiff-g4")


def text_heavy_pages(count: int, encoding: str = "png") -> list[bytes]:
    """File bytes of ``count`` pages of the job benchmark's mix (22 lines per column, 1-2
    columns): an RGB PNG (as the job benchmark writes them), a greyscale PNG, a JPEG
    (quality 90), a one-page PDF of the greyscale page at 150 dpi as Pillow writes a scan
    (the page as a JPEG image, ``DCTDecode``), or a bilevel TIFF (CCITT Group 4, as archives
    keep black-and-white scans; the grey page thresholded at 160)."""
    from ocr_actors.synth import render_page

    pages = []
    for i in range(count):
        page = render_page(
            seed=9000 + i, columns=1 + i % 2, lines_per_column=22, kinds=("prose", "prose", "number", "currency")
        )
        if encoding == "grey-png":
            pages.append(cv2.imencode(".png", cv2.cvtColor(page.image, cv2.COLOR_BGR2GRAY))[1].tobytes())
        elif encoding == "pdf":
            import io

            from PIL import Image

            pdf = io.BytesIO()
            Image.fromarray(cv2.cvtColor(page.image, cv2.COLOR_BGR2GRAY)).save(pdf, "PDF", resolution=150)
            pages.append(pdf.getvalue())
        elif encoding == "tiff-g4":
            import io

            from PIL import Image

            bilevel = cv2.cvtColor(page.image, cv2.COLOR_BGR2GRAY) >= 160
            tiff = io.BytesIO()
            Image.fromarray(bilevel).convert("1").save(tiff, "TIFF", compression="group4", dpi=(200, 200))
            pages.append(tiff.getvalue())
        elif encoding == "jpeg":
            pages.append(cv2.imencode(".jpg", page.image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        else:
            pages.append(cv2.imencode(".png", page.image)[1].tobytes())
    return pages


def model_actor_call(images, detector, recognizer, run_det, run_rec, timed):  # type: ignore[no-untyped-def]
    """The model actor's work on one call's pages, as ``TextDetector.detect`` and
    ``TextRecognizer.recognize`` do it, through their own planning and input builders: the
    detector's runs (``TextDetector.runs``: pages grouped by canvas, powers of two up to
    ``text_detection.batch_size``), DB post-processing, cropping, the call's lines in the
    recogniser's batches (``TextRecognizer.batches``), CTC decoding; inputs built in the
    runners' per-thread buffers, as the job does. ``run_det`` and
    ``run_rec`` give the model outputs (a real run, or a recorded one replayed); ``timed(step,
    fn, *args)`` times each step. Returns ``(quads, texts)`` per page."""
    from ocr_actors.postprocess import ctc_collapse, db_boxes, filter_tiny_quads
    from ocr_actors.preprocess import det_resize_shape
    from ocr_actors.runtime.ocr import crop_lines

    p = detector.default_params
    limits = (p.limit_side_len, p.limit_type, p.max_side_limit)
    shapes = [det_resize_shape(im.shape[0], im.shape[1], *limits) for im in images]
    quads_per_page: list = [None] * len(images)
    for canvas, members in detector.runs(shapes):
        pages = [images[i] for i in members]
        batch = timed("det pre-process", detector.prepare_batch, pages, canvas)
        probs = run_det(batch)
        for k, i in enumerate(members):
            h, w = shapes[i]
            quads, _ = timed("det post-process (DB)", db_boxes, probs[k, 0, :h, :w], images[i].shape[:2], p.db)
            quads_per_page[i] = quads[filter_tiny_quads(quads)]
    crops = [timed("crop lines", crop_lines, im, q) for im, q in zip(images, quads_per_page, strict=True)]
    flat = [c for page in crops for c in page]
    texts: list = [None] * len(flat)
    for batch in recognizer.batches([c.shape[:2] for c in flat]):
        members = [flat[i] for i in batch.indices]
        batch_input = timed("rec pre-process", recognizer.prepare_batch, members)
        indices, scores = run_rec(batch_input)
        decoded = timed("CTC decode", ctc_collapse, indices[:, :, 0], scores[:, :, 0], recognizer.characters)
        for i, text in zip(batch.indices, decoded, strict=False):
            texts[i] = text
    per_page, at = [], 0
    for page in crops:
        per_page.append(texts[at : at + len(page)])
        at += len(page)
    return quads_per_page, per_page


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
    parser.add_argument(
        "--gpu-layout",
        action="store_true",
        help="job_gpu.yaml's shapes and calls (16 pages a model actor call, detector canvases, 32-row "
        "recognition batches by width bucket) instead of the CPU defaults (one page a call), and its "
        "models' inputs: pixels, normalised in the models' graphs as on a GPU (engine.normalize_in_model)",
    )
    parser.add_argument(
        "--normalize-on-host",
        action="store_true",
        help="with --gpu-layout: the host normalises the models' inputs to float32, as on the CPU",
    )
    parser.add_argument(
        "--normalize-in-model",
        action="store_true",
        help="without --gpu-layout: the CPU defaults with the models' inputs as pixels, normalised in the "
        "models' graphs (engine.normalize_in_model forced on the CPU, where it is off by default)",
    )
    args = parser.parse_args()
    if args.normalize_on_host and not args.gpu_layout:
        parser.error("--normalize-on-host goes with --gpu-layout (the CPU defaults normalise on the host)")
    if args.normalize_in_model and args.gpu_layout:
        parser.error("--normalize-in-model goes without --gpu-layout (job_gpu.yaml's layout does it already)")
    cv2.setNumThreads(1)

    from ocr_actors.config import EngineConfig, OCRConfig, load_config
    from ocr_actors.io.decode import decode_document
    from ocr_actors.io.parquet import write_part
    from ocr_actors.runtime.runners import TextDetector, TextRecognizer

    if args.gpu_layout:
        sys.path.insert(0, str(ROOT / "scripts"))
        import gpu_check
        from gpu_stage_costs import job_call_sizes

        settings = {k: v for k, v in gpu_check.gpu_ocr_overrides().items() if not k.startswith("engine.")}
        settings.update({"text_detection.warmup": False, "text_recognition.warmup": False})
        config = load_config(OCRConfig, None, settings)
        call_pages = job_call_sizes()[1]
    else:
        config, call_pages = OCRConfig(), 1
    pixels_in = args.normalize_in_model or (args.gpu_layout and not args.normalize_on_host)
    engine = EngineConfig(threads=1, normalize_in_model=pixels_in)
    detector = TextDetector(config.text_detection, engine)
    recognizer = TextRecognizer(config.text_recognition, engine)
    assert recognizer.fused_decode, "the recogniser could not be fused (read-only cache?): host costs would differ"
    encoded = text_heavy_pages(args.pages, args.encoding)
    seconds: dict[str, float] = defaultdict(float)
    lines_total = 0
    rows: list[dict[str, object]] = []
    replays: list[tuple[list, list, list]] = []  # per call: images, detector outputs, recogniser outputs

    def timed(step: str, fn, *a, **k):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn(*a, **k)
        seconds[step] += time.perf_counter() - t0
        return out

    decode_step = f"decode ({args.encoding} -> {'BGR' if args.bgr else 'grey'})"
    with tempfile.TemporaryDirectory() as out_dir:
        for start in range(0, len(encoded), call_pages):
            images = [
                timed(decode_step, lambda d=data: next(iter(decode_document(d, keep_grey=not args.bgr)))).image
                for data in encoded[start : start + call_pages]
            ]
            det_outputs: list = []
            rec_outputs: list = []

            def run_det(batch, record=det_outputs):  # type: ignore[no-untyped-def]
                record.append(timed("[model] detection", detector.session.run, batch))
                return record[-1]

            def run_rec(batch, record=rec_outputs):  # type: ignore[no-untyped-def]
                record.append(timed("[model] recognition", recognizer.session.run_all, batch))
                return record[-1]

            quads_per_page, texts_per_page = model_actor_call(images, detector, recognizer, run_det, run_rec, timed)
            replays.append((images, det_outputs, rec_outputs))
            for n, (image, quads, texts) in enumerate(zip(images, quads_per_page, texts_per_page, strict=True)):
                lines_total += len(texts)
                rows.append(
                    {
                        "source_uri": f"file:///p{start + n}.png",
                        "doc_id": f"d{start + n}",
                        "page_index": 0,
                        "page_count": 1,
                        "status": "ok",
                        "width": image.shape[1],
                        "height": image.shape[0],
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
                )
        _write(rows[:1], out_dir + "/warm-up", write_part)  # imports and first-use set-up, not per-page cost
        timed("write Parquet", _write, rows, out_dir, write_part)  # one part file, as output.rows_per_file does

    host = {k: v for k, v in seconds.items() if not k.startswith("[model]")}
    host_total = sum(host.values())
    kind = "BGR pages (--bgr)" if args.bgr else "grey pages as the job moves them (one channel)"
    inputs = "as pixels, normalised in the models" if pixels_in else "normalised on the host"
    layout = (
        f"job_gpu.yaml's layout ({call_pages} pages a model actor call; model inputs {inputs})"
        if args.gpu_layout
        else f"CPU defaults (one page a call; model inputs {inputs})"
    )
    print(f"{args.pages} text-heavy pages, {lines_total / args.pages:.0f} lines per page, 1 thread, {kind}, {layout}\n")
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

        def actor_work(call: tuple) -> None:  # type: ignore[type-arg]
            """The model actor's own host work on one call's pages, the model outputs replayed."""
            images, det_outputs, rec_outputs = call
            det_iter, rec_iter = iter(det_outputs), iter(rec_outputs)
            model_actor_call(
                images,
                detector,
                recognizer,
                lambda _: next(det_iter),
                lambda _: next(rec_iter),
                lambda _s, f, *a, **k: f(*a, **k),
            )

        print(f"\nthe GPU model actor's own host work (decode, models and write left out), {args.threads} threads:")
        print(actor_threads_report(actor_work, replays, args.threads, args.pages))
    return 0


def actor_threads_report(work, calls, threads: int, pages: int) -> str:  # type: ignore[no-untyped-def]
    """Run ``work`` over ``calls`` (``pages`` pages in all) in one thread, then in ``threads``
    threads at once (each over all calls); pages/s of each and the speed-up."""
    from concurrent.futures import ThreadPoolExecutor

    def one_pass() -> None:
        for call in calls:
            work(call)

    one_pass()  # warm caches and lazy imports
    t0 = time.perf_counter()
    one_pass()
    alone = pages / (time.perf_counter() - t0)
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda _: one_pass(), range(threads)))
        together = threads * pages / (time.perf_counter() - t0)
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
