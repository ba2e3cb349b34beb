"""scripts/bench_transport.py: its inputs and the operator layouts it times."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_transport  # noqa: E402


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transport")
    bench_transport.write_inputs(folder, 2)
    return folder


def test_inputs_are_the_pages_and_their_real_crops_in_colour_and_grey(inputs):
    colour, grey = np.load(inputs / "page0.npy"), np.load(inputs / "grey0.npy")
    assert colour.shape == (1754, 1240, 3) and grey.shape == (1754, 1240, 1)
    assert np.array_equal(colour[:, :, 1:2], grey)
    shapes = np.load(inputs / "page0_crop_shapes.npy")
    grey_shapes = np.load(inputs / "grey0_crop_shapes.npy")
    assert len(shapes) >= 22 and set(shapes[:, 2]) == {3} and set(grey_shapes[:, 2]) == {1}
    assert np.array_equal(shapes[:, :2], grey_shapes[:, :2])  # the same lines, one channel
    assert np.load(inputs / "page0_crop_pixels.npy").size == int(np.prod(shapes, axis=1).sum())


@pytest.fixture(scope="module")
def local_ray():
    ray.shutdown()
    ray.init(address="local", num_cpus=2, object_store_memory=512 << 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("variant", list(bench_transport.VARIANTS))
def test_every_layout_hands_every_page_on_once(inputs, local_ray, variant):
    flags = bench_transport.VARIANTS[variant]
    switches = (flags.get(key, False) for key in bench_transport.FLAGS)
    dataset = bench_transport.build(str(inputs), 6, 2, *switches, range_size=flags.get("range_size", 1))
    operators = repr(dataset)  # the operator tree: a crop task only where cropping is a task
    rows = [int(batch["rows"].sum()) for batch in dataset.iter_batches()]
    assert sum(rows) == 6
    assert "MapBatches(Detect)" in operators
    assert ("MapBatches(Recognize)" in operators) != flags.get("one_pool", False)  # one pool: no second one
    assert ("MapBatches(with_crops)" in operators) != flags["crop_in_detect"]
    assert ("MapBatches(load_range)" in operators) != flags.get("load_in_detect", False)
