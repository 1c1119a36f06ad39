"""The baseline of ``bench/serve.py``: an lmspec export served by KServe's ``ModelServer``.

    .venv-kserve/bin/python bench/kserve_server.py EXPORT_DIR PORT

Run with the interpreter of an environment where ``kserve`` is installed (it pins versions of
protobuf, psutil and others that may differ from lmspec's, so it usually lives in a venv of its
own). lmspec and torch are found through ``LMSPEC_BENCH_EXTRA_PATH`` (paths separated by ``:``),
appended after that environment's own packages so that KServe keeps its own FastAPI and uvicorn.

The prediction is ``Exported.predict`` itself — the same fitted preprocessing and the same torch
forward pass as ``lmspec serve`` runs — so the two servers differ only in what surrounds it.
Like ``lmspec serve``'s defaults, no per-request log lines are written: uvicorn's access log and
the ``kserve.trace`` log (two lines per request from KServe's timing middleware, on by default)
are turned off, so the baseline does not pay for output that lmspec does not write.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

for extra in os.environ.get("LMSPEC_BENCH_EXTRA_PATH", "").split(os.pathsep):
    if extra:
        sys.path.append(extra)

from typing import Any  # noqa: E402 - after the path set-up above

import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402

from lmspec.model.export import load_exported  # noqa: E402


class ExportModel(kserve.Model):
    def __init__(self, name: str, export: str) -> None:
        super().__init__(name)
        self.exported = load_exported(export)
        self.input_name = self.exported.manifest.spec.signature.inputs[0].name
        self.ready = True

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:
        x = payload.inputs[0].as_numpy()
        outputs = []
        for name, value in self.exported.predict({self.input_name: x}).items():
            outputs.append(InferOutput(name=name, shape=list(value.shape), datatype="FP32", data=value))
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(uuid.uuid4()))


def main() -> None:
    export, port = sys.argv[1], int(sys.argv[2])
    model = ExportModel("iris", export)
    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1,
                                enable_latency_logging=False)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
