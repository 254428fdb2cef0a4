# The rescoring service (and the rescorer / rescorer-train CLIs).
#   docker build -t rescorer .                                 # CPU (the default)
#   docker build -t rescorer:cuda --build-arg DEVICE=cu128 .   # CUDA: torch from PyTorch's cu128 index
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" rescorer
# Configured by RESCORER_* environment variables (every rescorer-server option has one).
# Inside the container the service listens on 0.0.0.0 so that the published port reaches it;
# outside a container it binds 127.0.0.1 unless told otherwise.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
# cpu, or the CUDA build of torch that matches the hosts' drivers (cu126, cu128, ...)
ARG DEVICE=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# The README's install: torch 2.13.0 from PyTorch's index for DEVICE, then the project with
# its server extra (a CPU build first, so that nothing pulls CUDA wheels into a CPU image).
RUN pip install --index-url "https://download.pytorch.org/whl/${DEVICE}" torch==2.13.0
COPY pyproject.toml README.md ./
COPY rescorer ./rescorer
COPY training ./training
COPY server ./server
# DL3013 (pin versions): this installs the project itself; its dependencies' bounds are in pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[server]"

# The final stage: the virtual environment only (no build tools, no sources beyond the package).
FROM python:${PYTHON_VERSION}-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --create-home --uid 10001 rescorer
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RESCORER_MODEL_DIR=/models RESCORER_HOST=0.0.0.0 RESCORER_PORT=8000
USER 10001
WORKDIR /home/rescorer
EXPOSE 8000
# ready = every model loaded and self-tested (GET /readyz 200)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['RESCORER_PORT'] + '/readyz', timeout=4)"]
CMD ["rescorer-server"]
