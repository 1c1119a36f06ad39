#!/usr/bin/env bash
# The lmspec quickstart, end to end on the CPU with files in this repository (no downloads):
# validate the iris manifests (lmspec.io/v1beta1), train the classifier with DeepSpeed, serve it,
# send one request.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh run,serve
venv=${VENV:-.venv}
lmspec="$venv/bin/lmspec"
export DS_ACCELERATOR=cpu

echo "==> lmspec validate examples/iris"
"$lmspec" validate examples/iris

echo "==> lmspec plan examples/iris"
"$lmspec" plan examples/iris

echo "==> lmspec run examples/iris"
# A fresh run each time: lmspec refuses to train over an earlier run's checkpoints.
rm -rf examples/iris/runs/iris-train
"$lmspec" run examples/iris

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "==> lmspec serve examples/iris --port $port"
# The server stops with this script however it ends (an error, Ctrl-C, a CI timeout's TERM):
# the trap is set before the server starts.
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi' EXIT
"$lmspec" serve examples/iris --port "$port" &
server=$!
ready=
for _ in $(seq 1 120); do
  if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v2/health/ready')" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$server" 2>/dev/null || { echo "==> lmspec serve exited before it was ready (see above)" >&2; exit 1; }
  sleep 0.5
done
[ -n "$ready" ] || { echo "==> lmspec serve was not ready after 60 s" >&2; exit 1; }

echo "==> POST /v2/models/iris/infer  (one flower: 5.1, 3.5, 1.4, 0.2)"
"$venv/bin/python" - "$port" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
body = {"id": "quickstart-1",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/iris/infer", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(req))
print(json.dumps(answer, indent=2))
outputs = {o["name"]: o["data"] for o in answer["outputs"]}
print("predicted species:", outputs["label"][0])
PY
