"""What a model artefact is, shared by training and serving.

    build      a Model manifest → a ``torch.nn.Module`` (imports torch)
    export     the exported directory that ``lmspec run`` writes and ``lmspec serve`` loads
    plan       parameter counts and ZeRO memory, without torch (the validator uses it)
    signature  the input and output widths a Model's signature declares, without torch

Importing this package imports nothing heavy; each module loads torch only where it needs it.
"""
