"""Peer: Ray Serve, one replica per core, `@serve.batch` over the requests of a replica, the
library called once per batch; Serve's HTTP proxy on 127.0.0.1.

    PEER_MODEL_DIR=... python -m bench.peers.ray_peer PORT REPLICAS MAX_BATCH BATCH_WAIT_S
"""

from __future__ import annotations

import signal
import sys
import time

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


def build(replicas: int, max_batch: int, wait_s: float):
    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    class Rescore:
        def __init__(self) -> None:
            from bench.peers.common import load_from_environment

            self.artifact = load_from_environment()

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_s)
        async def batch(self, bodies: list[dict]) -> list[dict]:
            from bench.peers.common import rescore_bodies

            return rescore_bodies(self.artifact, bodies)

        async def __call__(self, request: Request):
            try:
                return JSONResponse(await self.batch(await request.json()))
            except Exception as e:  # the batch failed: so does this request
                return JSONResponse({"detail": str(e)}, status_code=500)

    return Rescore.bind()


if __name__ == "__main__":
    port, replicas, max_batch, wait_s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {}})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build(replicas, max_batch, wait_s), route_prefix="/v1/rescore")
    print("ready", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        time.sleep(0.2)
    serve.shutdown()
    ray.shutdown()
