"""The reference server for ``InferenceService`` manifests (``lmspec serve``).

>>> from lmspec.serve.server import serve
>>> serve(["examples/iris"])          # blocks; SIGTERM drains and exits 0

Speaks the Open Inference Protocol v2 over REST (with the ``generate`` extension for language
models) and, for causal language models, the OpenAI-compatible completions API. Nothing here is
imported by ``import lmspec``: FastAPI, uvicorn, numpy and torch load only when serving.

Modules: ``server`` (resolve, validate, listen), ``process`` (one uvicorn server: signals,
drain), ``workers`` (several processes), ``gate`` (auth, limits, request ids, metrics before
parsing), ``app`` (assembles the routes; loading, batched ``infer``), per protocol a package with
a data plane and a thin router (``oip``: ``dataplane`` and ``routes``; ``openai``: ``protocol``,
``serving`` and ``routes``), ``dataplane`` (what the planes share, with no HTTP in it),
``common`` (HTTP helpers the routers share), ``proxy`` (relaying to vLLM), ``generate`` (the
engine on the event loop), ``vllm`` (``engine: vllm``; what this machine offers is
:mod:`lmspec.domain.accelerators`), ``batcher``
(dynamic batching of OIP inference). The generation engine and the models it loads are
:mod:`lmspec.engine`.
"""
