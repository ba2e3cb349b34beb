"""Unit tests for ocr_actors.config: defaults, YAML files, overrides and validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ocr_actors.config import (
    ConfigError,
    EngineConfig,
    OCRConfig,
    TextDetectionConfig,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ocr.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_yaml_presets_load() -> None:
    root = Path(__file__).resolve().parent.parent / "jobs" / "configs"
    assert load_config(OCRConfig, root / "ocr_default.yaml") == OCRConfig()
    accurate = load_config(OCRConfig, root / "ocr_accurate.yaml")
    assert accurate.text_recognition.model == "PP-OCRv6_small_rec"
    assert accurate.text_detection.model == "PP-OCRv6_small_det"


def test_defaults() -> None:
    cfg = load_config(OCRConfig)
    assert cfg == OCRConfig()
    assert cfg.engine.engine == "onnxruntime"
    assert cfg.engine.device == "cpu"
    assert cfg.text_detection.model == "PP-OCRv6_tiny_det"
    assert cfg.text_recognition.model == "PP-OCRv6_tiny_rec"
    assert cfg.text_recognition.width_scale == 0.8
    assert cfg.text_recognition.space_bias == 4.0
    assert cfg.text_detection.limit_side_len == 960
    assert cfg.text_detection.limit_type == "max"
    assert cfg.text_detection.thresh is None
    assert cfg.text_recognition.batch_size == 8
    assert cfg.text_recognition.min_width == 320
    assert cfg.textline_orientation.use_textline_orientation is False
    assert cfg.doc_preprocessor.use_doc_orientation_classify is False
    assert cfg.input.pdf_dpi == 144
    assert cfg.input.max_bytes == 512 << 20
    assert cfg.input.storage_options == {}
    assert cfg.page_batch_size == 4


def test_config_is_frozen() -> None:
    cfg = OCRConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.page_batch_size = 2  # type: ignore[misc]


def test_yaml_file_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
engine:
  device: "gpu:0"
  threads: 4
text_detection:
  limit_side_len: 1280
  limit_type: min
  box_thresh: 0.5
text_recognition:
  batch_size: 16
input:
  storage_options:
    anon: true
page_batch_size: 2
""",
    )
    cfg = load_config(OCRConfig, path)
    assert cfg.engine == EngineConfig(device="gpu:0", threads=4)
    assert cfg.text_detection.limit_side_len == 1280
    assert cfg.text_detection.limit_type == "min"
    assert cfg.text_detection.box_thresh == 0.5
    assert cfg.text_detection.thresh is None  # untouched keys keep defaults
    assert cfg.text_recognition.batch_size == 16
    assert cfg.input.storage_options == {"anon": True}
    assert cfg.page_batch_size == 2
    # The same from a str path.
    assert load_config(OCRConfig, str(path)) == cfg


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(OCRConfig, write(tmp_path, "")) == OCRConfig()


def test_yaml_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level of a config file must be a mapping"):
        load_config(OCRConfig, write(tmp_path, "- a\n- b\n"))


def test_dotted_overrides_on_top_of_file(tmp_path: Path) -> None:
    path = write(tmp_path, "text_detection:\n  thresh: 0.4\n  box_thresh: 0.7\n")
    cfg = load_config(
        OCRConfig,
        path,
        [
            "text_detection.thresh=0.25",
            "text_detection.box_thresh=None",
            "textline_orientation.use_textline_orientation=true",
            "doc_preprocessor.use_doc_unwarping=False",
            "text_detection.max_candidates=null",
            "text_recognition.batch_size=32",
            "engine.device=gpu:1",
            "page_batch_size=8",
        ],
    )
    assert cfg.text_detection.thresh == 0.25
    assert isinstance(cfg.text_detection.thresh, float)
    assert cfg.text_detection.box_thresh is None
    assert cfg.text_detection.max_candidates is None
    assert cfg.textline_orientation.use_textline_orientation is True
    assert cfg.doc_preprocessor.use_doc_unwarping is False
    assert cfg.text_recognition.batch_size == 32
    assert cfg.engine.device == "gpu:1"
    assert cfg.page_batch_size == 8


def test_override_int_to_optional_float_becomes_float() -> None:
    cfg = load_config(OCRConfig, overrides=["text_detection.unclip_ratio=2"])
    assert cfg.text_detection.unclip_ratio == 2.0
    assert isinstance(cfg.text_detection.unclip_ratio, float)


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("True", True), ("yes", True), ("false", False), ("no", False)]
)
def test_boolean_overrides(raw: str, expected: bool) -> None:
    cfg = load_config(OCRConfig, overrides=[f"text_detection.use_dilation={raw}"])
    assert cfg.text_detection.use_dilation is expected


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("0", False), ("FALSE", False)])
def test_boolean_strings_in_mapping_overrides(raw: str, expected: bool) -> None:
    cfg = load_config(OCRConfig, overrides={"text_detection.use_dilation": raw})
    assert cfg.text_detection.use_dilation is expected


def test_mapping_source_and_mapping_overrides_do_not_mutate_input() -> None:
    source = {"text_detection": {"limit_side_len": 640}}
    cfg = load_config(OCRConfig, source, {"text_detection.thresh": 0.2, "engine.threads": 2})
    assert cfg.text_detection.limit_side_len == 640
    assert cfg.text_detection.thresh == 0.2
    assert cfg.engine.threads == 2
    assert source == {"text_detection": {"limit_side_len": 640}}


def test_parse_override() -> None:
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert parse_override(" a.b = [1, 2]") == ("a.b", [1, 2])
    assert parse_override("a.b=x=y") == ("a.b", "x=y")
    assert parse_override("a.b=") == ("a.b", "")
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        parse_override("text_detection.thresh")


def test_unknown_nested_key_is_named_with_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(OCRConfig, overrides=["text_detection.treshold=0.2"])
    message = str(info.value)
    assert "text_detection.treshold" in message
    valid = sorted(f.name for f in dataclasses.fields(TextDetectionConfig))
    assert f"valid keys here: {', '.join(valid)}" in message


def test_unknown_top_level_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "text_detection:\n  thresh: 0.3\nrecogniser:\n  batch_size: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(OCRConfig, path)
    message = str(info.value)
    assert "recogniser" in message
    for key in ("engine", "text_detection", "text_recognition", "input", "page_batch_size"):
        assert key in message


def test_several_unknown_keys_are_all_named() -> None:
    with pytest.raises(ConfigError, match=r"engine\.colour, engine\.gpu"):
        from_dict(EngineConfig, {"gpu": 1, "colour": "red"}, "engine")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("text_recognition.batch_size=abc", "text_recognition.batch_size: expected int, got 'abc'"),
        ("text_recognition.batch_size=8.5", "text_recognition.batch_size: expected an integer, got 8.5"),
        ("text_recognition.batch_size=true", "text_recognition.batch_size: expected a number, got True"),
        ("text_detection.thresh=high", "text_detection.thresh: expected float, got 'high'"),
        ("text_detection.use_dilation=maybe", "text_detection.use_dilation: expected true/false, got 'maybe'"),
        ("text_detection.use_dilation=2", "text_detection.use_dilation: expected true/false, got 2"),
        ("engine=gpu", "engine: expected a mapping, got 'gpu'"),
        ("input.storage_options=5", "input.storage_options: expected a mapping, got 5"),
    ],
)
def test_wrong_types_rejected(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(OCRConfig, overrides=[override])
    assert fragment in str(info.value)


def test_integral_float_accepted_for_int() -> None:
    assert load_config(OCRConfig, overrides=["text_recognition.batch_size=8.0"]).text_recognition.batch_size == 8


def test_override_below_a_scalar_is_rejected() -> None:
    with pytest.raises(ConfigError, match="page_batch_size is not a section"):
        load_config(OCRConfig, {"page_batch_size": 2}, ["page_batch_size.x=1"])


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_to_dict_round_trip() -> None:
    cfg = load_config(OCRConfig, overrides=["text_detection.thresh=0.25", "engine.device=gpu"])
    data = to_dict(cfg)
    assert data["text_detection"]["thresh"] == 0.25
    assert data["engine"]["device"] == "gpu"
    assert load_config(OCRConfig, data) == cfg


def test_job_default_yaml_matches_the_code() -> None:
    from ocr_actors.job_config import JobConfig

    path = Path(__file__).resolve().parent.parent / "jobs" / "configs" / "job_default.yaml"
    assert load_config(JobConfig, path) == JobConfig()


def _key_paths(data: dict, prefix: str = "") -> set[str]:
    """Dotted paths of the leaves of a nested mapping (an empty mapping is a leaf)."""
    paths: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:
            paths |= _key_paths(value, f"{prefix}{key}.")
        else:
            paths.add(f"{prefix}{key}")
    return paths


def test_the_default_yaml_files_spell_out_every_key() -> None:
    """The README says they do: every key of the configuration is written out, so a user
    finds each setting in the file (``job_default.yaml``'s ``ocr`` section is
    ``ocr_default.yaml``; tasks take only ``batch_size`` and ``num_cpus``, the write task only
    ``num_cpus``)."""
    import yaml

    from ocr_actors.job_config import JobConfig

    configs = Path(__file__).resolve().parent.parent / "jobs" / "configs"
    ocr_yaml = yaml.safe_load((configs / "ocr_default.yaml").read_text())
    assert _key_paths(ocr_yaml) == _key_paths(to_dict(OCRConfig()))
    job_yaml = yaml.safe_load((configs / "job_default.yaml").read_text())
    expected = {p for p in _key_paths(to_dict(JobConfig())) if not p.startswith("ocr.")}
    task_only = {f"resources.{task}.{key}" for task in ("load", "crop") for key in ("batch_size", "num_cpus")}
    task_only.add("resources.write.num_cpus")  # a write task writes one part file of output.rows_per_file pages
    expected = {p for p in expected if not p.startswith(("resources.load.", "resources.crop.", "resources.write."))}
    assert {p for p in _key_paths(job_yaml) if not p.startswith("ocr.")} == expected | task_only


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("engine.cudnn_conv_algo_search=FAST", "engine.cudnn_conv_algo_search"),
        ("text_recognition.width_multiple=0", "text_recognition.width_multiple"),
        ("text_recognition.width_buckets=[640, 320]", "text_recognition.width_buckets"),
        ("text_recognition.width_buckets=[4]", "text_recognition.width_buckets"),
        ("text_recognition.width_buckets=[320, x]", "text_recognition.width_buckets"),
        ("text_recognition.warmup=true", "text_recognition.warmup"),
        ("text_recognition.max_width_spread=0.5", "text_recognition.max_width_spread"),
        ("text_recognition.batch_by_bucket=true", r"text_recognition.batch_by_bucket \(needs width_buckets up"),
        (
            "text_recognition.batch_by_bucket=true text_recognition.width_buckets=[320,640]",
            "a line wider than the last bucket would be a batch of its own",
        ),
        ("engine.precision=fp16", "engine.precision"),
        ("engine.precision=bf16", "bf16 is for engine openvino"),
        ("engine.engine=paddle engine.precision=f16", "f16 is for engine onnxruntime"),
    ],
)
def test_gpu_settings_are_checked(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(OCRConfig, overrides=override.split(" "))


def test_cuda_provider_options_name_the_device_and_kernel_search() -> None:
    from ocr_actors.runtime.engines import cuda_provider_options

    assert cuda_provider_options("gpu") == {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"}
    assert cuda_provider_options("gpu:3", "EXHAUSTIVE") == {"device_id": "3", "cudnn_conv_algo_search": "EXHAUSTIVE"}


def test_width_buckets_read_as_integers_from_yaml_and_overrides() -> None:
    cfg = load_config(OCRConfig, {"text_recognition": {"width_buckets": [320, "640"]}})
    assert cfg.text_recognition.width_buckets == (320, 640)
    cfg = load_config(
        OCRConfig,
        overrides=[
            "text_recognition.width_buckets=[320, 960]",
            "text_recognition.pad_batch=true",
            "text_recognition.warmup=true",
        ],
    )
    assert cfg.text_recognition.width_buckets == (320, 960)
    assert cfg.text_recognition.pad_batch and cfg.text_recognition.warmup


def test_an_override_value_that_is_not_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML \(e.g. a list: \[320, 640\]\)"):
        load_config(OCRConfig, overrides=["text_recognition.width_buckets=[320"])


def test_retry_errors_names_only_known_error_types() -> None:
    from ocr_actors.job_config import JobConfig

    assert load_config(JobConfig, None, {"output.retry_errors": []}).output.retry_errors == ()
    with pytest.raises(ConfigError, match=r"output.retry_errors .*\['corupt'\]"):
        load_config(JobConfig, None, {"output.retry_errors": ["read_failed", "corupt"]})


def test_an_ocr_config_file_lays_over_the_ocr_section_of_a_job_or_service_config() -> None:
    """``run --ocr-config`` / ``serve --ocr-config``: the accurate preset over ``job_gpu.yaml``
    changes the models and keeps the job file's other OCR keys; overrides still come last."""
    from ocr_actors.job_config import JobConfig
    from ocr_actors.service.config import ServiceConfig

    configs = Path(__file__).resolve().parent.parent / "jobs" / "configs"
    accurate = {"ocr": configs / "ocr_accurate.yaml"}
    job = load_config(JobConfig, configs / "job_gpu.yaml", ["ocr.text_recognition.batch_size=8"], sections=accurate)
    models = (job.ocr.text_detection.model, job.ocr.text_recognition.model)
    assert models == ("PP-OCRv6_small_det", "PP-OCRv6_small_rec")
    assert job.ocr.engine.device == "gpu" and job.ocr.text_detection.batch_canvases == ((960, 736), (736, 960))
    assert job.ocr.text_recognition.batch_size == 8 and job.ocr.text_recognition.batch_by_bucket is True
    service = load_config(ServiceConfig, None, sections=accurate)
    assert service.ocr.text_recognition.model == "PP-OCRv6_small_rec" and service.ocr.engine.device == "cpu"


def test_a_config_of_the_other_kind_is_refused_with_a_hint() -> None:
    from ocr_actors.job_config import JobConfig

    configs = Path(__file__).resolve().parent.parent / "jobs" / "configs"
    with pytest.raises(ConfigError, match=r"text_detection, text_recognition; .*are OCR settings: .*--ocr-config"):
        load_config(JobConfig, configs / "ocr_accurate.yaml")
    with pytest.raises(ConfigError, match=r"this is a job or service config: an OCR config is what its `ocr:` section"):
        load_config(OCRConfig, configs / "job_default.yaml")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) nonsense; valid keys here: [a-z_, ]+$"):
        load_config(JobConfig, {"nonsense": 1, "ocr": {"page_batch_size": 2}})  # no hint for a plain typo
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) input; valid keys here: [a-z_, ]+$"):
        load_config(JobConfig, {"input": "s3://b/scans/"})  # a job file's stray input: is no OCR config
    # An OCR config file that is a job config: the error names the file and says what it is.
    with pytest.raises(ConfigError, match=r"^\S+job_default\.yaml: unknown .*this is a job or service config"):
        load_config(JobConfig, None, sections={"ocr": configs / "job_default.yaml"})


def test_a_config_file_that_is_not_valid_yaml_is_a_config_error(tmp_path: Path) -> None:
    from ocr_actors.job_config import JobConfig

    broken = write(tmp_path, "text_detection:\n  model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"ocr\.yaml: not valid YAML"):
        load_config(OCRConfig, broken)
    with pytest.raises(ConfigError, match=r"ocr\.yaml: not valid YAML"):
        load_config(JobConfig, None, sections={"ocr": broken})


def test_result_settings_changes_name_what_decides_the_text() -> None:
    from ocr_actors.config import result_settings_changes

    saved = to_dict(OCRConfig())
    assert result_settings_changes(saved, to_dict(OCRConfig())) == {}
    faster = load_config(OCRConfig, None, {"engine.threads": 4, "text_recognition.batch_size": 32})
    assert result_settings_changes(saved, to_dict(faster)) == {}  # speed and memory only
    other = load_config(
        OCRConfig, None, {"text_detection.thresh": 0.3, "input.pdf_dpi": 200, "text_detection.use_dilation": True}
    )
    assert result_settings_changes(saved, to_dict(other)) == {
        "text_detection.thresh": [None, 0.3],
        "text_detection.use_dilation": [False, True],
        "input.pdf_dpi": [144, 200],
    }
    del saved["input"]["pdf_dpi"]  # a config saved by an older version: that key is not compared
    assert "input.pdf_dpi" not in result_settings_changes(saved, to_dict(other))


def test_an_ocr_config_file_may_lean_on_the_job_config_and_the_overrides(tmp_path: Path) -> None:
    """Its values are checked once merged: ``precision: bf16`` alone is valid with the job's
    (or an override's) ``engine: openvino``; alone over the default engine it is not."""
    from ocr_actors.job_config import JobConfig

    bf16 = write(tmp_path, "engine:\n  precision: bf16\n")
    job = {"ocr": {"engine": {"engine": "openvino"}}}
    loaded = load_config(JobConfig, job, sections={"ocr": bf16})
    assert (loaded.ocr.engine.engine, loaded.ocr.engine.precision) == ("openvino", "bf16")
    by_override = load_config(JobConfig, None, ["ocr.engine.engine=openvino"], sections={"ocr": bf16})
    assert by_override.ocr.engine.precision == "bf16"
    with pytest.raises(ConfigError, match="bf16"):
        load_config(JobConfig, None, sections={"ocr": bf16})
