"""The rescoring service: FastAPI over the `rescorer` library, batching across requests."""
