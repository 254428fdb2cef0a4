"""The rescoring service: FastAPI over the `rescorer` library, batching across requests."""

import os

# oneDNN (PyTorch's CPU LSTM kernels) caches one primitive per input shape, 1024 by default;
# a service sees a new (batch, length) shape with nearly every batch, and that cache grew the
# resident memory by about 170 MB over 10,000 requests (bench/server_load.py). A small cache
# keeps memory flat. Set before torch is imported; an explicit environment value wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
