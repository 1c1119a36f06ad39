"""LoRA fine-tuning: ``lmspec run`` against a hand-written peft + DeepSpeed loop, and against the
Hugging Face ``Trainer`` with the same DeepSpeed config, on two CPU ranks.

    python bench/finetune.py [--steps 30] [--stage 2] [--skip-trainer]

Builds a small pretrained base in Hugging Face format (a Llama-style model and a BPE tokenizer
trained on the licence texts; see examples/chat-base/make_base.py), then fine-tunes it with the
same LoRA adapters, data, batches, seed and DeepSpeed config three times, each with two ranks
started by ``torchrun``:

- lmspec: the runner's recipe (setup and train, as ``lmspec run`` does);
- plain: the loop a peft + DeepSpeed user writes by hand, fed the same batches in the same order;
- trainer: ``transformers.Trainer`` with the same DeepSpeed config (its own sampler and schedule,
  so its loss curve is compared loosely).

Prints steps/s of each, the ratios (targets: ≥ 0.95 vs plain, ≥ 1.0 vs Trainer), the loss curves'
largest difference, and the peak RSS of every rank.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DS_ACCELERATOR", "cpu")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "chat-base"))

LORA = {"type": "lora", "rank": 16, "alpha": 32, "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def write_job(tmp: Path, base: Path, steps: int, stage: int) -> Path:
    import yaml

    sig = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
           "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}
    docs = [
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "base"},
         "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": str(base)}, "signature": sig}},
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "licenses"},
         "spec": {"sources": [{"path": str(REPO / "examples" / "data" / "licenses" / "*.txt"), "format": "text"}],
                  "features": [{"name": "text", "dtype": "string"}],
                  "preprocessing": [{"type": "tokenize",
                                     "tokenizer": {"type": "file", "path": str(base / "tokenizer.json")}},
                                    {"type": "pack", "sequenceLength": 128}],
                  "splits": {"ratios": {"train": 0.9, "validation": 0.05, "test": 0.05}, "seed": 0}}},
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "lora"},
         "spec": {"model": "base", "dataset": "licenses", "loss": {"type": "causalLm"}, "adapter": LORA,
                  "optimizer": {"type": "adamw", "lr": 2e-3}, "stopping": {"epochs": 100, "maxSteps": steps},
                  "batch": {"microBatchSize": 8}, "zero": {"stage": stage},
                  "resources": {"processesPerNode": 2}, "validation": {"interval": 10**6},
                  "logging": {"interval": 1, "progressBar": False}, "seed": 0,
                  "output": {"dir": str(tmp / "run")}}},
    ]
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# --- the three workers (one process per rank) ------------------------------------------------


def worker_lmspec(job: Path, out: Path) -> dict[str, Any]:
    from lmspec.train.launch import select
    from lmspec.train.loop import Recipe

    manifests, picked = select([str(job)], None)
    run_dir = out / "lmspec-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = Recipe(picked, manifests, run_dir, resume=False)
    recipe.setup()
    recipe.train()
    losses: list[float] = []
    if recipe.log is not None:
        recipe.log.close()
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in records if r["split"] == "train"]
    return {"seconds": recipe.train_seconds, "steps": recipe.step, "losses": losses}


def _prepared(job: Path) -> tuple[Any, Any, Any]:
    """The job's spec, base directory and prepared data (the same arrays lmspec trains on)."""
    from lmspec.data import prepare
    from lmspec.validator.core import load

    manifests = load([str(job)])
    tj = manifests.of_kind("TrainingJob")[0]
    model = manifests.of_kind("Model")[0]
    data_m = manifests.of_kind("Dataset")[0]
    data = prepare(data_m.obj, data_m.base_dir, model_task="causal-lm")
    return tj.obj.spec, Path(model.obj.spec.architecture.path), data


def worker_plain(job: Path, out: Path) -> dict[str, Any]:
    """peft + DeepSpeed by hand: the batches, seeds and config lmspec uses, nothing else."""
    import deepspeed
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmspec.data.split import Split, permutation
    from lmspec.train.dsconfig import deepspeed_config, lr_lambda
    from lmspec.train.loop import _seed

    spec, base, data = _prepared(job)
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    steps, mb = spec.stopping.max_steps, spec.batch.micro_batch_size
    torch.manual_seed(spec.seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                           LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], target_modules=LORA["targetModules"],
                                      task_type="CAUSAL_LM"))
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(spec),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(spec.schedule, spec.optimizer.lr,
                                                                                  steps)))
    train = data.train
    per_epoch = (len(train) // world) // mb
    losses: list[float] = []
    step, epoch = 0, 0
    started = time.perf_counter()
    while step < steps:
        order = permutation(len(train), _seed(spec.seed, epoch))
        shard = Split(train.inputs[order], train.targets[order]).shard(rank, world)
        for micro in range(per_epoch):
            x = torch.from_numpy(shard.inputs[micro * mb:(micro + 1) * mb])
            y = torch.from_numpy(shard.targets[micro * mb:(micro + 1) * mb])
            torch.manual_seed(_seed(spec.seed, epoch, micro, rank, 1))
            logits = engine(input_ids=x, use_cache=False).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
            engine.backward(loss)
            engine.step()
            t = torch.tensor([float(loss.detach())], dtype=torch.float64)
            dist.all_reduce(t)
            losses.append(float(t) / world)
            step += 1
            if step == steps:
                break
        epoch += 1
    return {"seconds": time.perf_counter() - started, "steps": step, "losses": losses}


def worker_trainer(job: Path, out: Path) -> dict[str, Any]:
    """transformers.Trainer with the DeepSpeed config lmspec generates."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from lmspec.train.dsconfig import deepspeed_config

    spec, base, data = _prepared(job)
    ds = deepspeed_config(spec)
    opt = spec.optimizer
    args = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=spec.batch.micro_batch_size,
        gradient_accumulation_steps=spec.batch.gradient_accumulation_steps, max_steps=spec.stopping.max_steps,
        learning_rate=opt.lr, weight_decay=opt.weight_decay, adam_beta1=opt.betas[0], adam_beta2=opt.betas[1],
        adam_epsilon=opt.eps, max_grad_norm=spec.gradient_clipping, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to=[], deepspeed=ds, seed=spec.seed,
        dataloader_drop_last=True, disable_tqdm=True, use_cpu=True)
    torch.manual_seed(spec.seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                           LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], target_modules=LORA["targetModules"],
                                      task_type="CAUSAL_LM"))
    train = data.train

    class Rows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return len(train)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            # Trainer's models shift labels themselves: labels are the inputs.
            ids = torch.from_numpy(train.inputs[i])
            return {"input_ids": ids, "labels": ids.clone()}

    losses: list[float] = []
    times: list[float] = []

    class Record(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, float] | None = None,
                   **k: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

        def on_train_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

    trainer = Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[Record()])
    trainer.train()
    return {"seconds": times[-1] - times[0], "steps": trainer.state.global_step, "losses": losses}


WORKERS = {"lmspec": worker_lmspec, "plain": worker_plain, "trainer": worker_trainer}


def run_worker(mode: str, job: Path, out: Path) -> None:
    result = WORKERS[mode](job, out)
    rank = int(os.environ.get("RANK", "0"))
    result["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(result))


# --- the driver ---------------------------------------------------------------------------------


def launch(mode: str, job: Path, out: Path) -> dict[str, Any]:
    from lmspec.train.world import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           __file__, "--worker", mode, "--job", str(job), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "runner"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if "Warning" not in line]
        first = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), max(0, len(lines) - 60))
        raise SystemExit(f"{mode} failed:\n" + "\n".join(lines[first:first + 60]))
    ranks = [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in (0, 1)]
    return {**ranks[0], "rss": [r["peakRssMiB"] for r in ranks]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--stage", type=int, default=2, choices=[0, 1, 2, 3])
    parser.add_argument("--skip-trainer", action="store_true")
    parser.add_argument("--only", choices=list(WORKERS), action="append", help="run only these (with plain)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.job, args.out)
        return 0
    from make_base import make_base

    modes = ["lmspec", "plain"] + ([] if args.skip_trainer else ["trainer"])
    if args.only:
        modes = [m for m in modes if m in args.only or m == "plain"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = make_base(tmp / "base", hidden_size=128, intermediate_size=352, layers=4, heads=4, kv_heads=2,
                         context=256)
        job = write_job(tmp, base, args.steps, args.stage)
        results: dict[str, dict[str, Any]] = {}
        for m in modes:
            try:
                results[m] = launch(m, job, tmp)
            except SystemExit as e:  # report the others even if one runner fails
                print(e, file=sys.stderr)
        modes = [m for m in modes if m in results]
    plain = results["plain"]
    print(f"LoRA (r {LORA['rank']}, q/k/v/o) on a 4-layer, width-128 Llama-style base; ZeRO stage {args.stage}; "
          f"{args.steps} steps of 2 ranks × 8 sequences of 128 tokens; CPU")
    print("| runner | steps/s | ratio | loss first → last | max abs Δloss vs plain | peak RSS rank 0 / 1 |")
    print("|---|---|---|---|---|---|")
    for m in modes:
        r = results[m]
        rate = r["steps"] / r["seconds"]
        ratio = rate / (plain["steps"] / plain["seconds"])
        n = min(len(r["losses"]), len(plain["losses"]))
        diff = max(abs(a - b) for a, b in zip(r["losses"][:n], plain["losses"][:n], strict=True))
        print(f"| {m} | {rate:.2f} | {ratio:.3f} | {r['losses'][0]:.3f} → {r['losses'][-1]:.3f} | {diff:.2e} | "
              f"{r['rss'][0]:.0f} / {r['rss'][1]:.0f} MiB |")
    if "lmspec" not in results:
        return 0
    same = max(abs(a - b) for a, b in zip(results["lmspec"]["losses"], plain["losses"], strict=True)) < 1e-4
    print(f"lmspec and plain loss curves {'match' if same else 'DIFFER'}; targets: lmspec/plain ≥ 0.95"
          + ("" if args.skip_trainer else ", lmspec/trainer ≥ 1.0 (ratio column is vs plain)"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
