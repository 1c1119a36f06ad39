"""Overhead of the lmspec runner over a plain, hand-written DeepSpeed loop.

    python bench/train.py [--steps 120] [--stage 2]

Trains the same model (the tinylm example, 2 blocks of width 64), on the same data, batches and
seed, twice in one process: once with lmspec's recipe, once with a minimal DeepSpeed loop. Prints
steps/s of both, their ratio (target ≥ 0.95), the recipe's time to first step, and checks that the
two loss curves match step for step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
REPO = Path(__file__).resolve().parents[1]


def job_files(tmp: Path, steps: int, stage: int) -> tuple[list[str], Path]:
    import yaml

    ex = REPO / "examples" / "tinylm"
    docs = [yaml.safe_load((ex / f).read_text()) for f in ("dataset.yaml", "model.yaml", "train.yaml")]
    docs[0]["spec"]["sources"][0]["path"] = str(REPO / "examples" / "data" / "licenses" / "*.txt")
    run_dir = tmp / "run"
    spec = docs[2]["spec"]
    spec["stopping"] = {"epochs": 100, "maxSteps": steps}
    spec["zero"] = {"stage": stage}
    spec["validation"] = {"interval": 10**6}          # training speed only
    spec["checkpointing"] = {"interval": None}
    spec["logging"] = {"interval": 1, "progressBar": False}
    spec["output"] = {"dir": str(run_dir)}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return [str(path)], run_dir


def run_lmspec(paths: list[str], run_dir: Path) -> tuple[float, float, list[float], object]:
    from lmspec.train.loop import Recipe
    from lmspec.train.rundir import select

    manifests, job = select(paths, None)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(job, manifests, run_dir, resume=False)
    recipe.setup()
    recipe.train()
    assert recipe.log is not None
    recipe.log.close()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    return recipe.train_seconds, recipe.first_step_s or 0.0, losses, recipe


def run_plain(recipe: object, steps: int) -> tuple[float, list[float]]:
    """The loop a DeepSpeed user would write by hand, fed the recipe's batches."""
    import deepspeed
    import torch

    from lmspec.model.build import build_model
    from lmspec.train.dsconfig import deepspeed_config, lr_lambda
    from lmspec.train.order import epoch_rows, seed_for

    r = recipe  # the recipe's prepared data and spec, so both loops see identical inputs
    spec = r.spec  # type: ignore[attr-defined]
    train = r.data.train  # type: ignore[attr-defined]
    mb, gas = spec.batch.micro_batch_size, spec.batch.gradient_accumulation_steps
    torch.manual_seed(spec.seed)
    model = build_model(r.model_obj.spec)  # type: ignore[attr-defined]
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=list(model.parameters()), config=deepspeed_config(spec),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(spec.schedule, spec.optimizer.lr, steps)))
    per_epoch = (len(train) // mb) // gas * gas
    losses: list[float] = []
    step, epoch, window = 0, 0, 0.0
    started = time.perf_counter()
    while step < steps:
        order = epoch_rows(train, seed=spec.seed, epoch=epoch, rank=0, world=1, micro_batch=mb,
                           group_by_length=spec.batch.group_by_length)
        for micro in range(per_epoch):
            batch = train.batch(order[micro * mb:(micro + 1) * mb])
            x, y = torch.from_numpy(batch.inputs), torch.from_numpy(batch.targets)
            torch.manual_seed(seed_for(spec.seed, epoch, micro, 0, 1))
            logits = engine(x)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            engine.backward(loss)
            engine.step()
            window += float(loss.detach())
            if (micro + 1) % gas == 0:
                step += 1
                losses.append(window / gas)
                window = 0.0
                if step == steps:
                    break
        epoch += 1
    return time.perf_counter() - started, losses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--stage", type=int, default=2, choices=[0, 1, 2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, run_dir = job_files(Path(tmp), args.steps, args.stage)
        t_lmspec, first, lmspec_losses, recipe = run_lmspec(paths, run_dir)
        t_plain, plain_losses = run_plain(recipe, args.steps)
    # Both loops include their first (warm-up) step, so they are compared like for like.
    lmspec_rate, plain_rate = args.steps / t_lmspec, args.steps / t_plain
    print(f"model: tinylm example, ZeRO stage {args.stage}, {args.steps} steps, 1 CPU process")
    print(f"lmspec run:     {lmspec_rate:7.2f} steps/s   (time to first step {first:.3f}s)")
    print(f"plain DeepSpeed:{plain_rate:7.2f} steps/s")
    print(f"ratio:          {lmspec_rate / plain_rate:7.3f}   (target ≥ 0.95)")
    diff = max(abs(a - b) for a, b in zip(lmspec_losses, plain_losses, strict=True))
    same = len(lmspec_losses) == len(plain_losses) and diff <= 1e-6 * max(1.0, abs(plain_losses[0]))
    print(f"loss curves:    {'match' if same else 'DIFFER'} (max |Δ| {diff:.2e} over {len(plain_losses)} steps; "
          f"first {plain_losses[0]:.4f}, last {plain_losses[-1]:.4f})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
