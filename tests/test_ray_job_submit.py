"""``ray job submit`` against a local head started with ``ray start --head``."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import duckdb
import pytest

from ocr_actors.synth import render_page

RAY = Path(sys.executable).with_name("ray")


def _free_port(low: int = 20000) -> int:
    for port in range(low, low + 2000):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port")


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A head node of our own (killed by process group at the end; never ``ray stop``)."""
    import ray

    ray.shutdown()  # other modules may hold an in-process Ray
    # Token authentication, as Ray 2.60 starts a local head by default: the head writes its
    # token to a file of our own, and every client (``ray job submit``) presents it.
    token_file = tmp_path_factory.mktemp("auth") / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    gcs_port, dashboard_port = _free_port(20000), _free_port(22000)
    temp_dir = tmp_path_factory.mktemp("rayhead")
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={gcs_port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            "--object-store-memory=536870912",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        probe = subprocess.run([str(RAY), "job", "list", "--address", address], env=env, capture_output=True)
        if probe.returncode == 0:
            break
        time.sleep(1)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        raise RuntimeError("the Ray head did not come up")
    yield address, env
    os.killpg(head.pid, signal.SIGTERM)
    try:  # `ray start --block` often outlasts 30 s of SIGTERM: the test is over, do not wait long
        head.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    # Ray processes that left the group still name our temp dir: end those too (only ours).
    subprocess.run(["pkill", "-f", str(temp_dir)], check=False)


def test_ray_job_submit_runs_the_job_on_the_cluster(ray_head, tmp_path):
    address, env = ray_head
    source = tmp_path / "src"
    source.mkdir()
    pages = [render_page(seed=950 + i, lines_per_column=4) for i in range(3)]
    for i, page in enumerate(pages):
        cv2.imwrite(str(source / f"p{i}.png"), page.image)
    output = tmp_path / "out"
    proc = subprocess.run(
        [
            str(RAY),
            "job",
            "submit",
            "--address",
            address,
            "--",
            sys.executable,
            "-m",
            "jobs.ocr_job",
            "--input",
            str(source),
            "--output",
            str(output),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "succeeded" in proc.stdout.lower()
    anonymous = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    refused = subprocess.run([str(RAY), "job", "list", "--address", address], env=anonymous, capture_output=True)
    assert refused.returncode != 0 and b"auth" in (refused.stdout + refused.stderr).lower()  # the token is needed
    summary_line = next(line for line in proc.stdout.splitlines() if line.startswith('{"job_id"'))
    summary = json.loads(summary_line)
    assert summary["rows_written"] == 3 and summary["status"] == "succeeded"
    texts = dict(duckdb.sql(f"select source_uri, text from '{output}/*.parquet'").fetchall())
    for i, page in enumerate(pages):
        assert texts[str(source / f"p{i}.png")] == page.text
