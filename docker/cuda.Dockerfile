# lmspec runner and server for NVIDIA GPUs.
#   docker build -f docker/cuda.Dockerfile -t REGISTRY/lmspec-runner:0.1.0-cuda .
# A -devel CUDA base: DeepSpeed compiles its fused ops (Adam, ZeRO-3 prefetch) with nvcc on first use.
# The versions below must satisfy pyproject.toml (tests/cluster/test_docker.py checks them).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-devel-ubuntu24.04

FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG DEEPSPEED_VERSION=0.19.8
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-dev python3-venv ninja-build \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/lmspec
ENV PATH=/opt/lmspec/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY runner ./runner
# The project itself, from this checkout; its dependencies follow pyproject.toml.
# hadolint ignore=DL3013
RUN pip install "deepspeed==${DEEPSPEED_VERSION}" ".[run,serve]"
LABEL org.opencontainers.image.title="lmspec-runner" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# Ubuntu images ship a user with uid 1000; lmspec takes its place.
RUN userdel --remove ubuntu \
    && useradd --create-home --uid 1000 lmspec \
    && mkdir -p /workspace \
    && chown lmspec:lmspec /workspace
ENV PYTHONUNBUFFERED=1 \
    TORCH_EXTENSIONS_DIR=/home/lmspec/.cache/torch_extensions
USER 1000
WORKDIR /workspace
EXPOSE 8080
ENTRYPOINT ["lmspec"]
CMD ["--help"]
