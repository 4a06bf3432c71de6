# syntax=docker/dockerfile:1
# Tritone's orchestrator: the FastAPI service (song API, web page, job queue). It reaches Triton only through
# tritonclient, so the image has no torch and no GPU libraries.
#
#   docker build -f docker/orchestrator.Dockerfile -t tritone-orchestrator .   # from the repository root
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    TRITONE_DATA_DIR=/data

# libsndfile1: soundfile (flac/wav encode); fonts-wqy-microhei: CJK titles on the built-in cover renderer.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first (cached across code changes). The list, not pyproject's: pyproject pins the CPU torch wheel and
# the bundled CPU tritonserver for development machines, neither of which the API process imports.
COPY docker/requirements-orchestrator.txt /tmp/requirements-orchestrator.txt
RUN python -m pip install -r /tmp/requirements-orchestrator.txt

WORKDIR /opt/tritone
COPY pyproject.toml ./
COPY export ./export
COPY model_repository ./model_repository
COPY orchestrator ./orchestrator
# --no-deps: everything the orchestrator imports is already installed from the list above.
RUN python -m pip install --no-deps . && python -c "import orchestrator.settings"

RUN useradd --system --create-home --uid 10001 tritone && mkdir -p /data && chown tritone /data
USER tritone
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status != 200)"
# --timeout-graceful-shutdown: open connections get at most TRITONE_SHUTDOWN_GRACE_S (compose: 10 s; its
# stop_grace_period leaves room for the jobs to be handed back before Docker's SIGKILL).
CMD ["uvicorn", "--factory", "orchestrator.app:create_app", "--host", "0.0.0.0", "--port", "8080", "--proxy-headers", \
     "--timeout-graceful-shutdown", "10"]
