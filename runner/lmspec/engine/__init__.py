"""The generation engine and the models it runs, shared by ``lmspec serve``, ``predict``,
``evaluate`` and ``report``.

>>> from lmspec.engine.predictor import load_export
>>> loaded = load_export("runs/chat-sft/export")
>>> engine = Engine(loaded.language_model.model, limits)       # lmspec.engine.core

Modules: ``core`` (the engine: KV cache and continuous batching), ``lm`` (causal language models:
loading a Hugging Face directory or an lmspec export, encoding client text), ``client_text``
(client text never becomes a control token), ``predictor`` (what a served model runs: a batch in,
a batch out), ``model_dir`` (the model directory an InferenceService serves). Nothing here knows
HTTP; nothing here is imported by ``import lmspec``: torch and transformers load only when a
model does.
"""
