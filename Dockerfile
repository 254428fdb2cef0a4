# Image for the rescorer library and CLIs (training and scoring on CPU).
# The HTTP service will be added to this image with server/.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# CPU build of torch first, pinned, so that the project install does not pull CUDA wheels.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY rescorer ./rescorer
COPY training ./training
RUN pip install .

RUN useradd --create-home rescorer
USER rescorer
ENTRYPOINT ["rescorer"]
CMD ["--help"]
