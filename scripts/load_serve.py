"""Load test of the HTTP service on loopback: bounded concurrent clients, fixed request count.

    python scripts/load_serve.py --requests 60 --concurrency 4          # starts the service itself
    python scripts/load_serve.py --url http://127.0.0.1:8080 --requests 60 --concurrency 4

Prints requests/s, p50/p90/p99 latency and errors, and the same figures for one client
(concurrency 1) on the same requests, so the gain from cross-request batching shows in one run.
Only loopback URLs are accepted: the loop is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import base64
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import cv2
import httpx


def _payloads(count: int) -> list[dict[str, object]]:
    from ocr_actors.synth import render_page

    encoded = []
    for i in range(min(count, 8)):
        page = render_page(seed=7000 + i, lines_per_column=12, height=1200)
        encoded.append(base64.b64encode(cv2.imencode(".png", page.image)[1].tobytes()).decode())
    return [{"file": encoded[i % len(encoded)], "fileType": 1, "visualize": False} for i in range(count)]


def run_load(url: str, payloads: list[dict[str, object]], concurrency: int, deadline_s: float) -> dict[str, float]:
    """Send every payload with ``concurrency`` client threads; returns throughput and latency."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    cursor = iter(range(len(payloads)))
    stop_at = time.monotonic() + deadline_s

    def client() -> None:
        nonlocal errors
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < stop_at:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                start = time.perf_counter()
                try:
                    response = http.post(f"{url}/ocr", json=payloads[index])
                    ok = response.status_code == 200 and response.json().get("errorCode") == 0
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    errors += 0 if ok else 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / wall,
        "p50_s": statistics.median(ordered) if ordered else float("nan"),
        "p90_s": pct(0.90),
        "p99_s": pct(0.99),
    }


def _start_service(port: int) -> None:
    import ray
    from ray import serve

    from ocr_actors.config import load_config
    from ocr_actors.service.app import build_app
    from ocr_actors.service.config import ServiceConfig

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(load_config(ServiceConfig, None, {"port": port})), name="ocr", route_prefix="/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="a running service on loopback (default: start one)")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=300, help="seconds after which clients stop")
    args = parser.parse_args()
    url = args.url
    if url is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        _start_service(port)
        url = f"http://127.0.0.1:{port}"
    host = urlsplit(url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("load tests only target loopback")
    payloads = _payloads(args.requests)
    run_load(url, payloads[:2], 1, args.deadline)  # warm-up
    single = run_load(url, payloads, 1, args.deadline)
    loaded = run_load(url, payloads, args.concurrency, args.deadline)
    print(f"{'clients':>8}{'requests':>10}{'errors':>8}{'req/s':>8}{'p50 s':>8}{'p90 s':>8}{'p99 s':>8}")
    for clients, row in ((1, single), (args.concurrency, loaded)):
        print(
            f"{clients:>8}{row['requests']:>10.0f}{row['errors']:>8.0f}{row['requests_per_s']:>8.2f}"
            f"{row['p50_s']:>8.2f}{row['p90_s']:>8.2f}{row['p99_s']:>8.2f}"
        )
    gain = loaded["requests_per_s"] / single["requests_per_s"]
    print(f"throughput with {args.concurrency} clients: {gain:.2f}x one client")


if __name__ == "__main__":
    main()
