"""The environment checks: what ``lmspec validate --check-env``, ``lmspec run`` and ``lmspec serve``
verify on this machine before they start.

>>> report = lmspec.validator.core.validate(["examples/iris"], env_checks=default_checks())

They read the files the manifests name (:mod:`.files`: digests, pretrained bases, chat
tokenizers, templates and records; and the engine this machine offers), the data itself
(:mod:`.data`) and a TrainingJob's base with its adapter and data (:mod:`.job`), without
importing torch. They sit above :mod:`lmspec.data` and :mod:`lmspec.model` and are handed to
the validator's environment layer (:mod:`lmspec.validator.environment`) as parameters: the
validator never imports them.
"""

from __future__ import annotations

from ..validator.environment import EnvironmentChecks
from . import data, files, job


def default_checks() -> EnvironmentChecks:
    """The checks of ``lmspec validate --check-env``, ``lmspec run`` and ``lmspec serve``, one
    function per concern, in order: a Model's pretrained base, an InferenceService's engine,
    referenced files and digests, chat tokenizers, templates and records; the data itself; a
    TrainingJob's base with its adapter and data."""
    return EnvironmentChecks(
        manifest=(files.pretrained_base, files.engine, files.referenced_files, files.chat_files),
        contents=(data.check_dataset,),
        jobs=(job.job_environment,),
    )


__all__ = ["default_checks"]
