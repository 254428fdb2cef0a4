"""Peer: NVIDIA Triton through PyTriton, its dynamic batcher in front of one model instance per
core, the library called once per batch. The request is the service's JSON body carried as one
BYTES element of Triton's HTTP/JSON inference protocol (POST /v2/models/rescore/infer).

    PEER_MODEL_DIR=... python -m bench.peers.pytriton_peer PORT INSTANCES MAX_BATCH QUEUE_DELAY_US
"""

from __future__ import annotations

import json
import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.peers.common import load_from_environment, rescore_bodies


def infer_function():
    artifact = load_from_environment()

    @batch
    def infer(request: np.ndarray) -> dict:
        bodies = [json.loads(row[0]) for row in request]
        answers = rescore_bodies(artifact, bodies)
        return {"response": np.array([[json.dumps(a).encode()] for a in answers], dtype=np.object_)}

    return infer


if __name__ == "__main__":
    port, instances, max_batch, delay_us = (int(a) for a in sys.argv[1:5])
    config = TritonConfig(http_address="127.0.0.1", http_port=port, allow_grpc=True, grpc_address="127.0.0.1",
                          grpc_port=port + 1, allow_metrics=False)
    with Triton(config=config) as triton:
        triton.bind(model_name="rescore", infer_func=[infer_function() for _ in range(instances)],
                    inputs=[Tensor(name="request", dtype=bytes, shape=(1,))],
                    outputs=[Tensor(name="response", dtype=bytes, shape=(1,))],
                    config=ModelConfig(max_batch_size=max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us)))
        print("ready", flush=True)
        triton.serve()
