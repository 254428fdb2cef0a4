# The rescoring service (and the rescorer / rescorer-train CLIs), CPU build.
#   docker build -t rescorer .
#   docker run -p 8000:8000 -v $PWD/models:/models:ro rescorer
# Inside the container the service must listen on 0.0.0.0 to be reachable through the
# published port; outside a container it binds 127.0.0.1 unless told otherwise.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# The CPU build of torch first, pinned, so that the project install pulls no CUDA wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY rescorer ./rescorer
COPY training ./training
COPY server ./server
RUN pip install '.[server]'

RUN useradd --create-home rescorer
USER rescorer
ENV RESCORER_MODEL_DIR=/models RESCORER_HOST=0.0.0.0 RESCORER_PORT=8000
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
CMD ["sh", "-c", "rescorer-server --model-dir \"$RESCORER_MODEL_DIR\" --host \"$RESCORER_HOST\" --port \"$RESCORER_PORT\""]
