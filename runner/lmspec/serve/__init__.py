"""The reference server for ``InferenceService`` manifests (``lmspec serve``).

>>> from lmspec.serve.server import serve
>>> serve(["examples/iris"])          # blocks; SIGTERM drains and exits 0

Speaks the Open Inference Protocol v2 over REST (with the ``generate`` extension for language
models) and, for causal language models, the OpenAI-compatible completions API. Nothing here is
imported by ``import lmspec``: FastAPI, uvicorn, numpy and torch load only when serving.
"""
