"""Peer: LitServe with its batching (max_batch_size, batch_timeout) and one inference worker per
core (workers_per_device on the CPU accelerator), the library called once per batch.

    PEER_MODEL_DIR=... python -m bench.peers.litserve_peer PORT WORKERS MAX_BATCH BATCH_TIMEOUT_S
"""

from __future__ import annotations

import json
import sys

import litserve as ls

from bench.peers.common import load_from_environment, rescore_bodies


class Rescore(ls.LitAPI):
    def setup(self, device) -> None:
        self.artifact = load_from_environment()

    def decode_request(self, request):
        return request

    def predict(self, bodies):
        return rescore_bodies(self.artifact, list(bodies))

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    port, workers, max_batch, timeout = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    api = Rescore(max_batch_size=max_batch, batch_timeout=timeout, api_path="/v1/rescore")
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=workers, timeout=120,
                          fast_queue=True)
    print(json.dumps({"peer": "litserve", "port": port}), flush=True)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
