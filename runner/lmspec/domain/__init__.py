"""Knowledge the validator and the runtime share, with no torch and no pydantic.

What belongs here: facts about the standard's files and models that both ``lmspec validate`` and
the runner need, so that neither imports the other: source formats by file extension
(:mod:`.formats`), the widths a signature declares (:mod:`.signature`), the ZeRO memory plan
(:mod:`.plan`), finding and sizing a pretrained base from its files (:mod:`.pretrained`), what a
chat template must mark (:mod:`.chat_template`) and what accelerators this machine offers
(:mod:`.accelerators`). Each module reads plain files at most; none imports torch, transformers,
numpy or pydantic, and none imports from the validator, data, model or anything above them.
"""
