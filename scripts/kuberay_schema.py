#!/usr/bin/env python
"""Extract a KubeRay CRD's OpenAPI schema into the small file the manifest test validates against.

    git -C kuberay show v1.2.2:ray-operator/config/crd/bases/ray.io_rayjobs.yaml > rayjobs.yaml
    python scripts/kuberay_schema.py rayjobs.yaml tests/kuberay/rayjob-v1.2.2.schema.json.gz

Reads the CRD (a YAML ``CustomResourceDefinition`` from github.com/ray-project/kuberay), takes the
``openAPIV3Schema`` of its storage version (``v1``), drops the ``description`` texts (nine tenths
of the file; they decide nothing) and writes the schema as compact, key-sorted JSON, gzipped
(about 10 kB for a RayJob). The schema itself is unchanged otherwise: the test turns it strict
as ``kubectl apply --validate=strict`` does (see ``tests/test_cluster_config.py``).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

import yaml


def without_descriptions(node: Any) -> Any:
    """The schema tree with every ``description`` text removed (a property named so stays)."""
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def storage_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the CRD's storage version."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise SystemExit(f"not a CustomResourceDefinition: kind {crd.get('kind')!r}")
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crd", type=Path, help="the CRD YAML file")
    parser.add_argument("out", type=Path, help="the .json.gz file to write")
    args = parser.parse_args()
    schema = without_descriptions(storage_schema(yaml.safe_load(args.crd.read_text())))
    data = json.dumps(schema, separators=(",", ":"), sort_keys=True).encode()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(gzip.compress(data, 9, mtime=0))
    print(f"{args.out}: {len(data)} bytes of schema, {args.out.stat().st_size} gzipped")


if __name__ == "__main__":
    main()
