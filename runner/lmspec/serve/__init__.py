"""The reference server for ``InferenceService`` manifests (``lmspec serve``).

>>> from lmspec.serve.server import serve
>>> serve(["examples/iris"])          # blocks; SIGTERM drains and exits 0

Speaks the Open Inference Protocol v2 over REST (with the ``generate`` extension for language
models) and, for causal language models, the OpenAI-compatible completions API. Nothing here is
imported by ``import lmspec``: FastAPI, uvicorn, numpy and torch load only when serving.

Modules: ``server`` (process, signals, drain), ``workers`` (several processes), ``gate`` (auth,
limits, request ids, metrics before parsing), ``app`` (assembles the routes; OIP routes),
``openai_api`` (OpenAI routes), ``proxy`` (relaying to vLLM), ``common`` (request helpers the
protocol modules share), ``engine`` (KV cache and continuous batching), ``generate`` (the engine
on the event loop), ``lm`` and ``predictor`` (loading models), ``vllm`` and ``accelerators``
(``engine: vllm``), ``batcher`` (dynamic batching of OIP inference).
"""
