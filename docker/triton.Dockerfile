# syntax=docker/dockerfile:1
# Tritone's inference server: NVIDIA's NGC Triton image (TensorRT, ONNX Runtime and Python backends, CUDA) plus the
# Python code Tritone's Python-backend models import (the LLM stages, the sampler loop, the ONNX Runtime stand-in).
#
#   docker build -f docker/triton.Dockerfile -t tritone-triton .          # from the repository root
#   docker run --gpus all --shm-size=2g -p 8000-8002:8000-8002 -v tritone-models:/models tritone-triton
#
# The model repository is mounted at /models (build TensorRT engines into it on the target GPU: docs/building-
# engines.md). To bake a finished repository into the image instead, build a derived image:
#   FROM tritone-triton
#   COPY my-repository/ /models/
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver
# 25.10 = Triton 2.62 on CUDA 13.0 (Ubuntu 24.04, Python 3.12). Another release: change TRITON_TAG and TORCH_INDEX_URL
# together (the torch wheel must match the image's CUDA major version).
ARG TRITON_TAG=25.10-py3
FROM ${TRITON_IMAGE}:${TRITON_TAG}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
# 1: install TensorRT's Python bindings at the version of the server's own TensorRT, so `tritone export --target gpu`
# can run inside this image. Engines only deserialize under the TensorRT version that built them: never build them
# with a different pip `tensorrt` than the one the server links.
ARG WITH_TENSORRT_PYTHON=1
ARG TENSORRT_PIP_PACKAGE=tensorrt-cu13

# Ubuntu 24.04 marks the system Python as externally managed; this image is single-purpose, so pip owns it.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

# torch for the image's CUDA, from PyTorch's wheel index (PyPI's default torch wheel targets another CUDA).
RUN python3 -m pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# The Python-backend models' dependencies (numpy<2: see the comment in the file).
COPY docker/requirements-triton.txt /tmp/requirements-triton.txt
RUN python3 -m pip install -r /tmp/requirements-triton.txt

RUN if [ "${WITH_TENSORRT_PYTHON}" = "1" ]; then \
      lib="$(ls /usr/lib/*-linux-gnu/libnvinfer.so.*.*.* 2>/dev/null | sort -V | tail -n 1)"; \
      if [ -z "${lib}" ]; then echo "no libnvinfer in the base image; set WITH_TENSORRT_PYTHON=0" >&2; exit 1; fi; \
      version="${lib##*.so.}"; \
      echo "server TensorRT ${version}: installing ${TENSORRT_PIP_PACKAGE}==${version}.*"; \
      python3 -m pip install "${TENSORRT_PIP_PACKAGE}==${version}.*"; \
    fi

# The tritone package itself. --no-deps: pyproject pins the CPU torch wheel and the bundled CPU tritonserver (for
# development machines); here the server is the image's own and the dependencies were installed above.
WORKDIR /opt/tritone
COPY pyproject.toml ./
COPY export ./export
COPY model_repository ./model_repository
COPY orchestrator ./orchestrator
RUN python3 -m pip install --no-deps . && python3 -c "import model_repository.onnx.session, export.contracts"

RUN mkdir -p /models
VOLUME /models

EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4).status != 200)"
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=explicit", "--load-model=*"]
