# lmspec runner and server, CPU only.
#   docker build -f docker/cpu.Dockerfile -t REGISTRY/lmspec-runner:0.1.0 .
# The versions below must satisfy pyproject.toml (tests/cluster/test_docker.py checks them).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
ARG DEEPSPEED_VERSION=0.19.8
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/lmspec
ENV PATH=/opt/lmspec/bin:$PATH
# The CPU wheel of torch first, so that nothing later pulls the CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY runner ./runner
# The project itself, from this checkout; its dependencies follow pyproject.toml.
# hadolint ignore=DL3013
RUN pip install "deepspeed==${DEEPSPEED_VERSION}" ".[run,serve]"

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="lmspec-runner" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# DeepSpeed compiles its CPU optimizer ops with a C++ compiler on first use.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/lmspec /opt/lmspec
RUN useradd --create-home --uid 1000 lmspec \
    && mkdir -p /workspace \
    && chown lmspec:lmspec /workspace
ENV PATH=/opt/lmspec/bin:$PATH \
    DS_ACCELERATOR=cpu \
    PYTHONUNBUFFERED=1 \
    TORCH_EXTENSIONS_DIR=/home/lmspec/.cache/torch_extensions
USER 1000
WORKDIR /workspace
EXPOSE 8080
ENTRYPOINT ["lmspec"]
CMD ["--help"]
