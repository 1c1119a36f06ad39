"""The Open Inference Protocol v2 (REST), with the ``generate`` extension for language models.

Modules: ``protocol`` (request bodies, also the OpenAPI document), ``dataplane`` (the work, with
no HTTP in it: metadata, decoding and checking inference inputs, choosing and encoding outputs,
generation settings), ``routes`` (the router: parses HTTP, calls the data plane, writes the
answer).
"""
