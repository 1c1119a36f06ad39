"""The OpenAI-compatible API for causal language models: ``/v1/models``, ``/v1/completions`` and
``/v1/chat/completions``.

Modules: ``protocol`` (request bodies), ``serving`` (the work, with no HTTP in it: request checks,
prompts, sampling settings, answers), ``routes`` (the router: parses HTTP, calls ``serving``,
writes the answer or the event stream).
"""
