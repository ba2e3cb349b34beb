"""Command line: ``ocr-batch predict`` (single images/PDFs, like the reference's CLI)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ocr_actors.config import ConfigError
from ocr_actors.redaction import redact_text


def error_line(exc: BaseException, with_type: bool = False) -> str:
    """``error: <message>`` on one line, credentials removed."""
    message = f"{type(exc).__name__}: {exc}" if with_type else str(exc)
    return "error: " + " ".join(redact_text(message).split())


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _add_predict(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("predict", help="OCR images or PDFs and save JSON + annotated images")
    p.add_argument("--input", required=True, help="file, folder, glob or URI (s3://, gs://, ...)")
    p.add_argument("--save_path", default=None, help="folder for <name>_res.json and annotated images")
    p.add_argument("--device", default=None, help="cpu (default), gpu or gpu:N")
    p.add_argument("--config", default=None, help="YAML config (see README)")
    p.add_argument("--engine", default=None, choices=("onnxruntime", "openvino", "paddle"))
    p.add_argument("--use_doc_orientation_classify", type=_bool, default=None)
    p.add_argument("--use_doc_unwarping", type=_bool, default=None)
    p.add_argument("--use_textline_orientation", type=_bool, default=None)
    p.add_argument("--text_det_limit_side_len", type=int, default=None)
    p.add_argument("--text_det_limit_type", choices=("max", "min", "resize_long"), default=None)
    p.add_argument("--text_det_thresh", type=float, default=None)
    p.add_argument("--text_det_box_thresh", type=float, default=None)
    p.add_argument("--text_det_unclip_ratio", type=float, default=None)
    p.add_argument("--text_rec_score_thresh", type=float, default=None)
    p.add_argument("--text_detection_model_name", default=None, help="e.g. PP-OCRv6_small_det or a folder/URI")
    p.add_argument("--text_recognition_model_name", default=None, help="e.g. PP-OCRv6_small_rec or a folder/URI")
    p.add_argument("--pdf_page_limit", type=int, default=None, help="most pages read per PDF (0 = all)")
    p.add_argument("--no_print", action="store_true", help="do not print each result")
    p.add_argument("overrides", nargs="*", help="config overrides: section.key=value")


def _predict(args: argparse.Namespace) -> int:
    from ocr_actors.api import create_pipeline
    from ocr_actors.io.decode import InputError
    from ocr_actors.io.sources import expand_inputs
    from ocr_actors.result import page_stem
    from ocr_actors.runtime.engines import EngineUnavailableError
    from ocr_actors.runtime.models import ModelNotFoundError
    from ocr_actors.runtime.ocr import apply_switches, params_from_config

    overrides: dict[str, object] = {}
    for text in args.overrides:
        from ocr_actors.config import parse_override

        key, value = parse_override(text)
        overrides[key] = value
    if args.engine:
        overrides["engine.engine"] = args.engine
    if args.text_detection_model_name:
        overrides["text_detection.model"] = args.text_detection_model_name
    if args.text_recognition_model_name:
        overrides["text_recognition.model"] = args.text_recognition_model_name
    if args.pdf_page_limit is not None:
        overrides["input.pdf_page_limit"] = args.pdf_page_limit
    from ocr_actors.config import OCRConfig, load_config

    config = load_config(OCRConfig, args.config, overrides)
    switches = {
        name: getattr(args, name)
        for name in (
            "use_doc_orientation_classify",
            "use_doc_unwarping",
            "use_textline_orientation",
            "text_det_limit_side_len",
            "text_det_limit_type",
            "text_det_thresh",
            "text_det_box_thresh",
            "text_det_unclip_ratio",
            "text_rec_score_thresh",
        )
    }
    apply_switches(params_from_config(config), **switches)  # a bad value: one error (exit 2), no model loaded
    if args.save_path:
        _make_save_folder(args.save_path)
    pipeline = create_pipeline("OCR", config=config, device=args.device)
    pages, failed, inputs = 0, [], 0
    names = OutputNames()

    def left_out(path: str, reason: str) -> None:
        print(f"left out {redact_text(path)}: {reason}", file=sys.stderr)

    for uri in expand_inputs(args.input, config.input.storage_options, on_skip=left_out):
        inputs += 1
        try:  # one file at a time: a bad file is reported and the others still run
            for result in pipeline.predict(uri, **switches):
                pages += 1
                if not args.no_print:
                    result.print()
                if args.save_path:
                    stem = names.take(page_stem(result["input_path"], result["page_index"]))
                    result.save_to_json(names.json_target(args.save_path, stem), stem=stem)
                    result.save_to_img(args.save_path, stem=stem)
        except InputError as exc:
            print(error_line(exc), file=sys.stderr)
            failed.append(redact_text(uri))
        except (ConfigError, ModelNotFoundError, EngineUnavailableError):
            raise  # not this file's fault: every file would fail the same way
        except Exception as exc:  # any other failure on this file: reported, the others still run
            print(error_line(exc, with_type=True), file=sys.stderr)
            failed.append(redact_text(uri))
    if not inputs:
        print(f"error: no images or PDFs found in {redact_text(args.input)}", file=sys.stderr)
        return 2
    summary = {
        "pages": pages,
        "failed_inputs": failed,
        "save_path": str(Path(args.save_path).resolve()) if args.save_path else None,
    }
    print(json.dumps(summary), file=sys.stderr)
    return 2 if failed else 0


def _make_save_folder(save_path: str) -> None:
    """Create ``--save_path`` (the folder of a ``.json`` path) before any file is read, so a
    path that cannot be a folder fails the command once, not every file."""
    folder = Path(save_path)
    if folder.suffix.lower() == ".json":
        folder = folder.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--save_path {save_path}: cannot make that folder: {exc.strerror or exc}") from exc


class OutputNames:
    """Names of ``predict``'s output files, each used once: a page whose name is taken (the
    same file name in two folders, ``x.pdf`` page 0 and ``x_0.png``) gets ``-2``, ``-3``, … so
    no result overwrites another."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.saved = 0

    def take(self, stem: str) -> str:
        """``stem``, or the first of ``stem-2``, ``stem-3``, … not yet taken."""
        name, number = stem, 1
        while name in self.taken:
            number += 1
            name = f"{stem}-{number}"
        self.taken.add(name)
        return name

    def json_target(self, save_path: str, stem: str) -> str:
        """Where a page's JSON goes: ``save_path`` (a folder); a ``.json`` file path for the
        first page saved, ``<its stem>-<stem>.json`` beside it for each later one."""
        self.saved += 1
        path = Path(save_path)
        if path.suffix.lower() != ".json" or self.saved == 1:
            return save_path
        return str(path.with_name(f"{path.stem}-{stem}.json"))


def _add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="the batch job: documents in object storage -> Parquet, on Ray",
        epilog=(
            "exit status: 0 done; 1 error budget passed; 2 bad configuration, input or credentials; "
            "3 the output is in use by another run (or another run took it over midway); "
            "4 stalled: no part file for stall_timeout_s (a rerun resumes); "
            "5 failed on an unexpected error (traceback, then the error line); "
            "130 interrupted (SIGINT), 143 stopped (SIGTERM): a rerun resumes"
        ),
    )
    p.add_argument("--input", default=None, help="folder/prefix, glob or manifest (.txt/.csv/.parquet) URI")
    p.add_argument("--output", default=None, help="output folder/prefix URI for the Parquet dataset")
    p.add_argument("--config", default=None, help="job YAML (see jobs/configs/job_default.yaml)")
    p.add_argument(
        "--ocr-config",
        default=None,
        help="OCR YAML over the job's ocr: section, as predict --config takes (e.g. jobs/configs/ocr_accurate.yaml)",
    )
    p.add_argument("--mode", choices=("resume", "incremental", "overwrite"), default=None)
    p.add_argument(
        "--address", default=None, help="Ray address; default: $RAY_ADDRESS if set, else start Ray in this process"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the sources and read the output, print what a run would do (JSON), and stop: no Ray, no writes",
    )
    p.add_argument("overrides", nargs="*", help="config overrides: section.key=value (e.g. ocr.engine.device=gpu)")


def _ocr_section(args: argparse.Namespace) -> dict[str, str]:
    """``--ocr-config``: an OCR config file for the ``ocr`` section of a job or service config."""
    return {"ocr": args.ocr_config} if args.ocr_config else {}


def _run(args: argparse.Namespace) -> int:
    from ocr_actors.config import load_config, parse_override
    from ocr_actors.job_config import JobConfig
    from ocr_actors.pipeline.job import ErrorBudgetExceeded, JobStalled, Terminated, run_job, stop_on_sigterm

    overrides: dict[str, object] = dict(parse_override(text) for text in args.overrides)
    for key, value in (
        ("source.uri", args.input),
        ("output.uri", args.output),
        ("output.mode", args.mode),
        ("ray.address", args.address),
    ):
        if value is not None:
            overrides[key] = value
    config = load_config(JobConfig, args.config, overrides, sections=_ocr_section(args))
    if args.dry_run:
        from ocr_actors.pipeline.job import plan_only

        print(json.dumps(plan_only(config, progress=None if args.quiet else sys.stderr)))
        return 0
    stop_on_sigterm()
    try:
        summary = run_job(config, progress=None if args.quiet else sys.stderr)
    except (ErrorBudgetExceeded, JobStalled) as exc:
        if exc.summary is not None:  # stdout has the summary whatever the outcome
            print(json.dumps(exc.summary.as_dict()))
        print(error_line(exc), file=sys.stderr)
        return 1 if isinstance(exc, ErrorBudgetExceeded) else 4
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT); the summary says what was written, a rerun resumes", file=sys.stderr)
        return 130
    except Terminated:
        print("error: stopped by SIGTERM; the summary says what was written, a rerun resumes", file=sys.stderr)
        return 143
    print(json.dumps(summary.as_dict()))
    return 0


def _add_compact(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "compact",
        help="merge an output's small part files (fewer than half output.rows_per_file rows) into full ones",
        epilog="exit status: 0 done; 2 bad configuration or credentials; 3 the output is in use by a run",
    )
    _add_output_args(p, quiet_help="no progress lines")


def _add_output_args(p: argparse.ArgumentParser, quiet_help: str) -> None:
    """The arguments of the commands that work on an existing output (compact, status)."""
    p.add_argument("--output", default=None, help="the job's output folder/prefix URI")
    p.add_argument("--config", default=None, help="job YAML: output.rows_per_file, compression, storage options")
    p.add_argument("--quiet", action="store_true", help=quiet_help)
    p.add_argument("overrides", nargs="*", help="config overrides: section.key=value (e.g. output.rows_per_file=2000)")


def _output_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The job config of ``--config``, the overrides and ``--output`` (required)."""
    from ocr_actors.config import load_config, parse_override
    from ocr_actors.job_config import JobConfig

    overrides: dict[str, object] = dict(parse_override(text) for text in args.overrides)
    if args.output is not None:
        overrides["output.uri"] = args.output
    config = load_config(JobConfig, args.config, overrides)
    if not config.output.uri:
        raise ValueError("no output given: set output.uri (or --output)")
    from ocr_actors.io.parquet import check_output_location
    from ocr_actors.io.sources import storage_access

    with storage_access(f"on the output {config.output.uri}"):
        check_output_location(config.output.uri, config.output_storage_options)
    return config


def _compact(args: argparse.Namespace) -> int:
    from ocr_actors.pipeline.job import compact_output

    summary = compact_output(_output_config(args), None if args.quiet else sys.stderr)
    print(json.dumps(summary.as_dict()))
    return 0


def _add_status(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "status",
        help="what an output holds (rows, errors by type, part files), its latest runs and who holds it now",
        epilog="prints JSON on stdout and a summary on stderr; reads only. Exit status: 0; 2 no such output",
    )
    p.add_argument("--runs", type=int, default=5, help="how many of the latest runs to list (default 5)")
    _add_output_args(p, quiet_help="JSON only")


def _status(args: argparse.Namespace) -> int:
    from ocr_actors.io.sources import storage_access
    from ocr_actors.pipeline.status import describe_status, output_status

    config = _output_config(args)
    with storage_access(f"reading the output {config.output.uri}"):
        status = output_status(config.output.uri, config.output_storage_options, config.output.rows_per_file, args.runs)
    print(redact_text(json.dumps(status.as_dict())))
    if not args.quiet:
        print(redact_text("\n".join(describe_status(status))), file=sys.stderr)
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="HTTP service: POST /ocr in the reference's format (Ray Serve)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080)")
    p.add_argument("--config", default=None, help="service YAML (ocr: ..., limits, URL inputs)")
    p.add_argument("--ocr-config", default=None, help="OCR YAML laid over the service's ocr: section")
    p.add_argument("overrides", nargs="*", help="config overrides: key=value (e.g. max_pdf_pages=20)")


def _serve(args: argparse.Namespace) -> int:
    from ocr_actors.config import load_config, parse_override
    from ocr_actors.service.app import serve_forever
    from ocr_actors.service.config import ServiceConfig

    overrides: dict[str, object] = dict(parse_override(text) for text in args.overrides)
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    serve_forever(load_config(ServiceConfig, args.config, overrides, sections=_ocr_section(args)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _SafeParser(prog="ocr-batch", description="PP-OCR General OCR: API, CLI and batch job")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SafeParser)
    _add_predict(sub)
    _add_run(sub)
    _add_compact(sub)
    _add_status(sub)
    _add_serve(sub)
    return parser


_SECRET_ARG = re.compile(r"([\w.]*(?:secret|key|token|password|credential)[\w.]*=)\S+", re.IGNORECASE)


class _SafeParser(argparse.ArgumentParser):
    """An argument parser whose usage errors never echo secret-looking ``key=value`` args."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        super().error(_SECRET_ARG.sub(r"\1***", message))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Options and key=value overrides may come in any order after the subcommand.
    subparsers = {name: p for a in parser._subparsers._group_actions for name, p in a.choices.items()}  # type: ignore[union-attr]
    if argv and argv[0] in subparsers:
        args = subparsers[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
    else:
        args = parser.parse_args(argv)
    from ocr_actors.io.lease import LeaseError
    from ocr_actors.io.sources import SourceAccessError
    from ocr_actors.runtime.engines import EngineUnavailableError

    try:
        if args.command == "predict":
            return _predict(args)
        if args.command == "run":
            return _run(args)
        if args.command == "compact":
            return _compact(args)
        if args.command == "status":
            return _status(args)
        if args.command == "serve":
            return _serve(args)
    except (ConfigError, ValueError, FileNotFoundError, SourceAccessError, EngineUnavailableError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    except LeaseError as exc:
        print(error_line(exc), file=sys.stderr)
        return 3
    except Exception as exc:  # a failure of our own or of Ray: the traceback, credentials removed
        print(redact_text(traceback.format_exc()), file=sys.stderr, end="")
        print(error_line(exc, with_type=True), file=sys.stderr)
        return 5
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
