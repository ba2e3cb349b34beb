"""scripts/gpu_stage_costs.py: the job's GPU calls replayed stage by stage. A CPU smoke run of
the whole script (workload, shape timings of two engine variants, process sharing), and its
pure parts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_stage_costs  # noqa: E402


def test_variants_name_engine_settings():
    assert gpu_stage_costs.parse_variant("f16") == gpu_stage_costs.Variant("f16", "HEURISTIC")
    exhaustive = gpu_stage_costs.parse_variant("f32-exhaustive")
    assert exhaustive.name == "f32-exhaustive"
    assert exhaustive.overrides == {
        "ocr.engine.precision": "f32",
        "ocr.engine.cudnn_conv_algo_search": "EXHAUSTIVE",
    }
    graph = gpu_stage_costs.parse_variant("f16-exhaustive-graph")
    assert graph == gpu_stage_costs.Variant("f16", "EXHAUSTIVE", cuda_graph=True)
    assert graph.name == "f16-exhaustive-graph" and gpu_stage_costs.parse_variant("f32-graph").name == "f32-graph"
    for bad in ("fp16", "f16-fast", "bf16", "f32-graph-exhaustive", "graph"):
        with pytest.raises(argparse.ArgumentTypeError):
            gpu_stage_costs.parse_variant(bad)


def test_a_cuda_graph_variant_without_a_gpu_fails_alone(tmp_path, capsys):
    """CUDA graphs need the CUDA provider: on CPU the -graph variant is reported as failed and
    the plain one is still timed (on a GPU it times the models replayed as graphs)."""
    out = tmp_path / "costs.json"
    args = ["--device", "cpu", "--pages", "2", "--det-batches", "1", "--shape-seconds", "0", "--min-calls", "1"]
    assert gpu_stage_costs.main([*args, "--variants", "f32-graph,f32", "--skip-sharing", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [v["variant"] for v in result["variants"]] == ["f32"]
    assert result["failed_variants"] == {"f32-graph": "RuntimeError: CUDA graphs need a GPU"}
    assert "f32-graph: FAILED: RuntimeError: CUDA graphs need a GPU" in capsys.readouterr().out


def test_projection_takes_the_cheapest_variant_and_the_best_process_count():
    variants = [
        {"variant": "f32", "overrides": {"a": 1}, "gpu_ms_per_page": 10.0},
        {"variant": "f16", "overrides": {"a": 2}, "gpu_ms_per_page": 5.0},
    ]
    alone = gpu_stage_costs.projection(variants, None)
    assert (alone["variant"], alone["pages_per_s"], alone["meets_target"]) == ("f16", 200.0, True)
    sharing = {
        "rounds": [
            {"processes": 1, "threads": 1, "pages_per_s": 90.0},
            {"processes": 3, "threads": 1, "pages_per_s": 140.0},
            {"processes": 1, "threads": 4, "pages_per_s": 120.0},
        ]
    }
    shared = gpu_stage_costs.projection(variants, sharing)
    assert (shared["processes"], shared["threads"], shared["pages_per_s"], shared["meets_target"]) == (
        3,
        1,
        140.0,
        False,
    )
    assert gpu_stage_costs.sharing_layouts([1, 2, 4], [1, 2, 3]) == [(1, 1), (2, 1), (4, 1), (1, 2), (1, 3)]


def test_cpu_smoke_run_times_the_job_shapes_and_sharing(tmp_path):
    out = tmp_path / "costs.json"
    code = gpu_stage_costs.main(
        [
            "--device", "cpu", "--pages", "2", "--det-batches", "1", "--processes", "1,2", "--threads", "2",
            "--seconds", "0.5", "--shape-seconds", "0", "--min-calls", "1", "--variants", "f32,f16",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    job = yaml.safe_load((ROOT / "jobs" / "configs" / "job_gpu.yaml").read_text())
    workload = result["workload"]
    # one call of the job's model actor (one pool: detect, crop, recognise): its pages, its
    # buckets, its page canvas
    assert job["resources"]["models_in_one_actor"]
    assert workload["pages"] == job["resources"]["detect"]["batch_size"]
    det_run = job["ocr"]["text_detection"]["batch_size"]
    assert gpu_stage_costs.job_call_sizes() == (det_run, job["resources"]["detect"]["batch_size"])
    assert workload["det_batch"] == 1  # the job's detector runs, capped by --det-batches
    # the check's A4 pages (960 x 672 once resized) pad to job_gpu.yaml's 960 x 736 canvas
    assert [960, 736] in job["ocr"]["text_detection"]["batch_canvases"]
    assert workload["det_shape"] == [3, 960, 736]
    assert 0.5 < workload["rec_calls_per_page"] < 2  # batches by width bucket: about 1.3
    widths = {int(w) for w in workload["rec_widths"]}
    assert widths <= set(job["ocr"]["text_recognition"]["width_buckets"]) and len(widths) >= 3
    assert [v["variant"] for v in result["variants"]] == ["f32", "f16"]
    for variant in result["variants"]:
        assert variant["providers"][0] == "CPUExecutionProvider" and variant["fused_decode"]
        assert {int(w) for w in variant["rec"]} == widths
        assert all(r["ms_per_call"] > 0 and r["rows"] == 32 for r in variant["rec"].values())
        assert variant["det"]["1"]["ms_per_page"] > 0
        assert variant["gpu_ms_per_page"] == pytest.approx(
            variant["det_ms_per_page"] + variant["rec_ms_per_page"], abs=0.01
        )
    sharing = result["sharing"]
    assert sharing["setup_turns"] and len(sharing["warm_ups"]) == 2  # each worker's set-up, as it finished
    assert all(w["seconds"] > 0 and w["waited_s"] >= 0 for w in sharing["warm_ups"])
    rounds = sharing["rounds"]
    # two processes, then one process with two threads on the same sessions
    assert [(r["processes"], r["threads"]) for r in rounds] == [(1, 1), (2, 1), (1, 2)]
    assert all(r["pages"] >= 1 for r in rounds)
    assert result["projection"]["variant"] in ("f32", "f16")


def test_a_failing_variant_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    """On a machine where one engine setting cannot run, the probe still measures the rest."""
    real = gpu_stage_costs.time_variant

    def failing_f16(device, variant, *args):
        if variant.precision == "f16":
            raise ModuleNotFoundError("No module named 'onnxruntime.transformers'")
        return real(device, variant, *args)

    monkeypatch.setattr(gpu_stage_costs, "time_variant", failing_f16)
    out = tmp_path / "costs.json"
    args = ["--device", "cpu", "--pages", "2", "--det-batches", "1", "--shape-seconds", "0", "--min-calls", "1"]
    assert gpu_stage_costs.main([*args, "--variants", "f16,f32", "--skip-sharing", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [v["variant"] for v in result["variants"]] == ["f32"]
    assert "onnxruntime.transformers" in result["failed_variants"]["f16"]
    assert result["projection"]["variant"] == "f32"
    assert "f16: FAILED: ModuleNotFoundError" in capsys.readouterr().out


def test_workers_that_do_not_set_up_in_time_end_the_sharing_part_with_the_figures_so_far(tmp_path, capsys):
    """A GPU whose set-ups crawl (four processes at once took over 200 s on an H200) must not
    eat the whole device budget: past --warmup-timeout the rounds are skipped, the shape
    timings before it are kept and the report says how far the set-ups got."""
    out = tmp_path / "costs.json"
    args = ["--device", "cpu", "--pages", "2", "--det-batches", "1", "--shape-seconds", "0", "--min-calls", "1"]
    code = gpu_stage_costs.main(
        [*args, "--variants", "f32", "--processes", "2", "--warmup-timeout", "0.01", "--json", str(out)]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["sharing"]["rounds"] == [] and result["sharing"]["warm_ups"] == []
    assert result["sharing"]["error"] == "0 of 2 workers set up within 0.01 s (in turns)"
    assert [v["variant"] for v in result["variants"]] == ["f32"] and result["projection"]["variant"] == "f32"
    assert "failed: 0 of 2 workers set up within 0.01 s" in capsys.readouterr().out


def test_set_replays_another_layouts_shapes():
    """``--set`` builds the workload of another layout: the earlier GPU layout (one square
    canvas, lines within 5% of each other's width) against job_gpu.yaml's (canvases, batches by
    width bucket) on the same pages: the square canvas and more recognition calls."""
    new = gpu_stage_costs.build_workload(2, 1, 16)
    old_layout = {
        "text_detection.batch_canvases": [],
        "text_recognition.batch_by_bucket": False,
        "text_recognition.max_width_spread": 1.05,
    }
    old = gpu_stage_costs.build_workload(2, 1, 16, old_layout)
    assert new.det_shape == (3, 960, 736) and old.det_shape == (3, 960, 960)
    assert old.rec_calls_per_page > 1.5 * new.rec_calls_per_page
    assert len(new.rec_widths()) >= 3 and len(old.rec_widths()) >= 3
