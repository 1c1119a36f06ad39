"""LoRA fine-tuning: ``lmspec run`` against hand-written loops and Hugging Face's trainers, on two
CPU ranks and in one process.

    python bench/finetune.py [--steps 30] [--stage 2] [--part all|two-rank|single] [--rounds 1]
                             [--layouts unpacked grouped packed] [--threads N] [--skip-trainer]
                             [--only lmspec|plain|trainer|peft|trl]

TRL is in the ``bench`` extra: ``pip install -e '.[run,bench]'``.

Builds a small pretrained base in Hugging Face format (a Llama-style model and a BPE tokenizer
trained on the licence texts; see examples/chat-base/make_base.py), then fine-tunes it with the
same LoRA adapters, data, seed and optimizer settings several ways.

Two ranks (``--part two-rank``), packed text (the licence texts, rows of 128 tokens), each run
started by ``torchrun``:

- lmspec: the runner's recipe (setup and train, as ``lmspec run`` does);
- plain: the loop a peft + DeepSpeed user writes by hand, fed the same batches in the same order;
- trainer: ``transformers.Trainer`` with the same DeepSpeed config (its own sampler and schedule,
  so its loss curve is compared loosely).

One process (``--part single``), chat data (examples/data/python-docs-qa.jsonl rendered with the
base's chat template, the assistant's answers trained, rows of up to 256 tokens), in three
layouts: packing off (a row is one conversation; a micro batch is padded to its longest row),
packing off with ``batch.groupByLength``, and packing on. Each run is a fresh process:

- lmspec: ``lmspec run JOB --nproc 1``, the command line itself; timed by its ``summary.json``
  (``trainSeconds``: the training loop, first step included);
- peft: the single-process loop a user writes: peft LoRA, ``torch.optim.AdamW``, no DeepSpeed,
  fed the same batches in the same order (the rows ``lmspec.train.order.epoch_rows`` gives, the
  function the recipe takes them from);
- trl: TRL's ``SFTTrainer`` fed the same conversations, tokenized and masked as lmspec did
  (``input_ids`` and ``labels``; packed rows with the ``seq_lengths`` TRL's own packing writes,
  trained padding-free as TRL trains packed data), in the same order (sequential sampler).

For each it prints steps/s and the ratio against each baseline (median over ``--rounds`` of the
ratio within a round, each round running every runner once), the padding (the fraction of the
input positions the model ran that were padding), the held-out loss after training (validation
and test conversations, mean over trained tokens, computed by one function for every runner) and
the training loss curve. Targets: two ranks, lmspec ≥ 0.95× plain and ≥ 1.0× Trainer; one
process, lmspec ≥ 0.9× peft and ≥ 1.0× TRL, held-out losses within ``LOSS_TOLERANCE``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
SIG = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}
CHAT_LENGTH = 256
"""Chat rows of up to 256 tokens (the base's context): conversations run from 54 to 256 tokens."""
LAYOUTS = {"unpacked": ("packing off", {"packing": False, "groupByLength": False}),
           "grouped": ("packing off, groupByLength", {"packing": False, "groupByLength": True}),
           "packed": ("packing on", {"packing": True, "groupByLength": False})}
LOSS_TOLERANCE = 0.02
"""Largest difference in held-out loss (nats per trained token) that counts as the same quality."""


def recorder(losses: list[float], times: list[float]) -> Any:
    """A Trainer callback that keeps the logged losses and the start and end times of training."""
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

        def on_log(self, _args: Any, _state: Any, _control: Any, logs: dict[str, float] | None = None,
                   **k: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

        def on_train_end(self, *a: Any, **k: Any) -> None:
            times.append(time.perf_counter())

    return Record()


def _model_doc(base: Path) -> dict[str, Any]:
    return {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "base"},
            "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": str(base)},
                     "signature": SIG}}


def write_job(tmp: Path, base: Path, steps: int, stage: int) -> Path:
    """Two ranks, packed licence text."""
    import yaml

    docs = [
        _model_doc(base),
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


def write_chat_job(folder: Path, base: Path, steps: int, stage: int, layout: dict[str, bool]) -> Path:
    """One process, chat conversations, in one of the ``LAYOUTS``."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    docs = [
        _model_doc(base),
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "qa"},
         "spec": {"sources": [{"path": str(REPO / "examples" / "data" / "python-docs-qa.jsonl")}],
                  "chat": {"format": "messages", "sequenceLength": CHAT_LENGTH, "overLength": "truncate",
                           "packing": layout["packing"],
                           "loss": {"trainOnPrompt": False, "roles": ["assistant"], "endOfTurn": True}},
                  "splits": {"ratios": {"train": 0.9, "validation": 0.05, "test": 0.05}, "seed": 0}}},
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "lora"},
         "spec": {"model": "base", "dataset": "qa", "loss": {"type": "causalLm"},
                  "adapter": {**LORA, "exportMerged": False},
                  "optimizer": {"type": "adamw", "lr": 2e-3}, "stopping": {"epochs": 100, "maxSteps": steps},
                  "batch": {"microBatchSize": 8, "groupByLength": layout["groupByLength"]},
                  "zero": {"stage": stage}, "resources": {"processesPerNode": 1},
                  "validation": {"interval": 10**6}, "evaluation": {"metrics": ["loss"]},
                  "logging": {"interval": 1, "progressBar": False}, "seed": 0,
                  "output": {"dir": str(folder / "run")}}},
    ]
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _prepared(job: Path) -> tuple[Any, Path, Any]:
    """The job's spec, base directory and prepared data (the splits lmspec trains on, from the
    same cache)."""
    from lmspec.data import prepare
    from lmspec.data.cost import default_cache_dir
    from lmspec.validator.core import load

    manifests = load([str(job)])
    tj = manifests.of_kind("TrainingJob")[0]
    model = manifests.of_kind("Model")[0]
    data_m = manifests.of_kind("Dataset")[0]
    base = Path(model.obj.spec.architecture.path)
    data = prepare(data_m.obj, data_m.base_dir, model_task="causal-lm", cache_dir=default_cache_dir(data_m.base_dir),
                   tokenizer_dir=base)
    return tj.obj.spec, base, data


def micro_batches(spec: Any, train: Any, *, rank: int = 0, world: int = 1) -> list[Any]:
    """This rank's micro batches of the whole run, as row arrays, in lmspec's order: whole
    optimizer steps of each epoch, ``stopping.maxSteps`` of them."""
    from lmspec.train.order import epoch_rows

    b = spec.batch
    mb, gas = b.micro_batch_size, b.gradient_accumulation_steps
    per_epoch = (len(train) // world) // mb // gas * gas
    wanted = spec.stopping.max_steps * gas
    out: list[Any] = []
    epoch = 0
    while len(out) < wanted:
        order = epoch_rows(train, seed=spec.seed, epoch=epoch, rank=rank, world=world, micro_batch=mb,
                           group_by_length=b.group_by_length)
        out += [order[m * mb:(m + 1) * mb] for m in range(per_epoch)][:wanted - len(out)]
        epoch += 1
    return out


def padding_of(train: Any, batches: list[Any]) -> float:
    """The fraction of input positions that are padding when each micro batch is padded to its
    longest row (lmspec's chat batches)."""
    real = sum(int(train.lengths[rows].sum()) for rows in batches)
    ran = sum(len(rows) * int(train.lengths[rows].max()) for rows in batches)
    return 1.0 - real / ran


def heldout_loss(model: Any, data: Any) -> float:
    """Mean loss per trained token over the validation and test rows (one function for every
    runner: the same rows, batches, positions and masking)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for split in (data.validation, data.test):
            for start in range(0, len(split), 8):
                b = split.batch(np.arange(start, min(start + 8, len(split))))
                pos = None if b.positions is None else torch.from_numpy(b.positions)
                logits = model(input_ids=torch.from_numpy(b.inputs), position_ids=pos, use_cache=False).logits
                y = torch.from_numpy(b.targets).reshape(-1)
                total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y,
                                               ignore_index=-100, reduction="sum"))
                count += int((y != -100).sum())
    return total / max(count, 1)


def _lora_model(base: Path) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    return get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                          LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], target_modules=LORA["targetModules"],
                                     task_type="CAUSAL_LM"))


# --- two ranks (one process per rank, under torchrun) ------------------------------------------


def worker_lmspec(job: Path, out: Path) -> dict[str, Any]:
    from lmspec.train.loop import Recipe
    from lmspec.train.rundir import select

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
    return {"seconds": recipe.train_seconds, "steps": recipe.progress.step, "losses": losses,
            # What happens before the first step: a DPO run scores its pairs with the reference.
            "referenceSeconds": recipe.criterion.reference_seconds, "trainRows": len(recipe.data.train)}


def worker_plain(job: Path, out: Path) -> dict[str, Any]:
    """peft + DeepSpeed by hand: the batches, seeds and config lmspec uses, nothing else."""
    import deepspeed
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from lmspec.train.dsconfig import deepspeed_config, lr_lambda
    from lmspec.train.order import seed_for

    spec, base, data = _prepared(job)
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    steps, mb = spec.stopping.max_steps, spec.batch.micro_batch_size
    torch.manual_seed(spec.seed)
    model = _lora_model(base)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(spec),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(spec.schedule, spec.optimizer.lr,
                                                                                  steps)))
    train = data.train
    per_epoch = (len(train) // world) // mb
    batches = micro_batches(spec, train, rank=rank, world=world)
    losses: list[float] = []
    started = time.perf_counter()
    for i, rows in enumerate(batches):
        epoch, micro = divmod(i, per_epoch)
        b = train.batch(rows)
        x, y = torch.from_numpy(b.inputs), torch.from_numpy(b.targets)
        torch.manual_seed(seed_for(spec.seed, epoch, micro, rank, 1))
        logits = engine(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        engine.backward(loss)
        engine.step()
        t = torch.tensor([float(loss.detach())], dtype=torch.float64)
        dist.all_reduce(t)
        losses.append(float(t) / world)
    return {"seconds": time.perf_counter() - started, "steps": len(batches), "losses": losses}


def worker_trainer(job: Path, out: Path) -> dict[str, Any]:
    """transformers.Trainer with the DeepSpeed config lmspec generates."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainingArguments

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
    model = _lora_model(base)
    train = data.train

    class Rows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return len(train)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            # Trainer's models shift labels themselves: labels are the inputs.
            ids = torch.from_numpy(train.batch(np.array([i])).inputs[0])
            return {"input_ids": ids, "labels": ids.clone()}

    losses: list[float] = []
    times: list[float] = []

    trainer = Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[recorder(losses, times)])
    trainer.train()
    return {"seconds": times[-1] - times[0], "steps": trainer.state.global_step, "losses": losses}


# --- one process -------------------------------------------------------------------------------


def worker_peft(job: Path, out: Path) -> dict[str, Any]:
    """The single-process loop a peft user writes: plain torch, no DeepSpeed, lmspec's batches."""
    import torch
    import torch.nn.functional as F

    from lmspec.train.dsconfig import lr_lambda

    spec, base, data = _prepared(job)
    opt_spec = spec.optimizer
    torch.manual_seed(spec.seed)
    model = _lora_model(base)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opt_spec.lr, betas=tuple(opt_spec.betas), eps=opt_spec.eps,
                            weight_decay=opt_spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(spec.schedule, opt_spec.lr, spec.stopping.max_steps))
    train = data.train
    batches = micro_batches(spec, train)
    assert spec.batch.gradient_accumulation_steps == 1, "the loop below steps after every micro batch"
    losses: list[float] = []
    ran = real = 0
    model.train()
    started = time.perf_counter()
    for rows in batches:
        b = train.batch(rows)
        x, y = torch.from_numpy(b.inputs), torch.from_numpy(b.targets)
        pos = None if b.positions is None else torch.from_numpy(b.positions)
        logits = model(input_ids=x, position_ids=pos, use_cache=False).logits
        # The mean over the batch's trained tokens (masked targets are -100).
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        loss.backward()
        if spec.gradient_clipping > 0:
            torch.nn.utils.clip_grad_norm_(params, spec.gradient_clipping)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        ran += x.numel()
        real += int(train.lengths[rows].sum())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "steps": len(batches), "losses": losses, "padding": 1.0 - real / ran,
            "heldout": heldout_loss(model, data), "threads": torch.get_num_threads()}


def _trl_rows(train: Any, batches: list[Any]) -> dict[str, list[Any]]:
    """The micro batches' rows as TRL takes pre-tokenized data: each conversation's token ids, its
    labels (the id where lmspec trains the token, else -100; the model shifts them), and for packed
    rows the conversations' lengths, as TRL's own packing writes them."""
    import numpy as np

    ids_col: list[list[int]] = []
    labels_col: list[list[int]] = []
    lengths_col: list[list[int]] = []
    for r in (int(r) for rows in batches for r in rows):
        ids_parts, label_parts, lengths = [], [], []
        for d in train.row_docs[train.row_ptr[r]:train.row_ptr[r + 1]]:
            a, b = int(train.docs[d]), int(train.docs[d + 1])
            ids = train.store.read(a, b).astype(np.int64)
            ids_parts.append(ids)
            label_parts.append(np.where(train.store.read_mask(a, b), ids, -100))
            lengths.append(b - a)
        ids_col.append(np.concatenate(ids_parts).tolist())
        labels_col.append(np.concatenate(label_parts).tolist())
        lengths_col.append(lengths)
    out = {"input_ids": ids_col, "labels": labels_col}
    if train.packing:
        out["seq_lengths"] = lengths_col
    return out


def worker_trl(job: Path, out: Path) -> dict[str, Any]:
    """TRL's SFTTrainer on the same rows in the same order; fp32, no activation checkpointing, as
    the other runners (TRL's defaults are bf16 and checkpointing on)."""
    import datasets
    import torch
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    spec, base, data = _prepared(job)
    train = data.train
    batches = micro_batches(spec, train)
    packed = bool(train.packing)
    opt = spec.optimizer
    assert spec.schedule.type == "constant" and spec.schedule.warmup_steps == 0
    args = SFTConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=spec.batch.micro_batch_size,
        gradient_accumulation_steps=spec.batch.gradient_accumulation_steps, max_steps=spec.stopping.max_steps,
        learning_rate=opt.lr, weight_decay=opt.weight_decay, adam_beta1=opt.betas[0], adam_beta2=opt.betas[1],
        adam_epsilon=opt.eps, max_grad_norm=spec.gradient_clipping, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to=[], seed=spec.seed, use_cpu=True, disable_tqdm=True,
        bf16=False, gradient_checkpointing=False, shuffle_dataset=False,
        # A row of up to CHAT_LENGTH inputs is one token more in TRL's form: nothing is cut.
        packing=False, padding_free=packed, max_length=None if packed else CHAT_LENGTH + 1)
    torch.manual_seed(spec.seed)
    model = _lora_model(base)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    rows = datasets.Dataset.from_dict(_trl_rows(train, batches))

    losses: list[float] = []
    times: list[float] = []
    counted = {"ran": 0, "real": 0}

    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                         callbacks=[recorder(losses, times)])
    collate = trainer.data_collator

    def counting(examples: list[dict[str, Any]]) -> dict[str, Any]:
        # What the model runs: every position of the padded batch; real ones are the tokens.
        batch = collate(examples)
        counted["ran"] += batch["input_ids"].numel()
        counted["real"] += sum(len(e["input_ids"]) for e in examples)
        return batch

    trainer.data_collator = counting
    # The rows are in lmspec's order already: take them as they are (transformers 5 also has
    # train_sampling_strategy="sequential"; this works with 4 too).
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    return {"seconds": times[-1] - times[0], "steps": trainer.state.global_step, "losses": losses,
            "padding": 1.0 - counted["real"] / max(counted["ran"], 1),
            "heldout": heldout_loss(trainer.model, data), "threads": torch.get_num_threads()}


WORKERS = {"lmspec": worker_lmspec, "plain": worker_plain, "trainer": worker_trainer,
           "peft": worker_peft, "trl": worker_trl}


def run_worker(mode: str, job: Path, out: Path, workers: dict[str, Any] | None = None) -> None:
    """One runner in this process (``workers``: another benchmark's runners by name); writes
    its result and peak RSS beside the other ranks'."""
    result = (workers or WORKERS)[mode](job, out)
    rank = int(os.environ.get("RANK", "0"))
    result["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(result))


# --- the driver ---------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "runner"), os.environ.get("PYTHONPATH", "")])}


def _check(mode: str, done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if "Warning" not in line]
        first = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), max(0, len(lines) - 60))
        raise SystemExit(f"{mode} failed:\n" + "\n".join(lines[first:first + 60]))


def launch(mode: str, job: Path, out: Path) -> dict[str, Any]:
    from lmspec.train.world import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           __file__, "--worker", mode, "--job", str(job), "--out", str(out)]
    _check(mode, subprocess.run(cmd, env=_env(), capture_output=True, text=True))
    ranks = [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in (0, 1)]
    return {**ranks[0], "rss": [r["peakRssMiB"] for r in ranks]}


def launch_single(mode: str, job: Path, out: Path, prepared: tuple[Any, Path, Any]) -> dict[str, Any]:
    """One single-process run in a fresh process; lmspec through its command line."""
    out.mkdir(parents=True, exist_ok=True)
    if mode != "lmspec":
        cmd = [sys.executable, __file__, "--worker", mode, "--job", str(job), "--out", str(out)]
        _check(mode, subprocess.run(cmd, env=_env(), capture_output=True, text=True))
        return dict(json.loads((out / f"{mode}-rank0.json").read_text()))
    run_dir = out / "lmspec-run"
    # The base and the data lie outside the job's folder: a run reads them only when allowed.
    cmd = [sys.executable, "-m", "lmspec", "run", str(job), "--nproc", "1", "--output", str(run_dir),
           "--allow-outside", str(prepared[1]), "--allow-outside", str(REPO / "examples" / "data")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    _check(mode, done)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec, base, data = prepared
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    threads = next((line.split()[1] for line in done.stdout.splitlines() if "torch thread" in line), "?")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                                      str(run_dir / "export" / "adapter"))
    return {"seconds": summary["trainSeconds"], "steps": summary["steps"],
            "losses": [r["loss"] for r in records if r["split"] == "train"],
            # The recipe pads each micro batch of these rows to its longest: computed, not observed.
            "padding": padding_of(data.train, micro_batches(spec, data.train)),
            "heldout": heldout_loss(model, data), "threads": threads}


def two_rank(args: argparse.Namespace, tmp: Path, base: Path) -> bool:
    """Runs the two-rank part; False when the lmspec and plain loss curves differ."""
    modes = ["lmspec", "plain"] + ([] if args.skip_trainer else ["trainer"])
    if args.only:
        modes = [m for m in modes if m in args.only or m == "plain"]
    job = write_job(tmp, base, args.steps, args.stage)
    results: dict[str, dict[str, Any]] = {}
    for m in modes:
        try:
            results[m] = launch(m, job, tmp)
        except SystemExit as e:  # report the others even if one runner fails
            print(e, file=sys.stderr)
    modes = [m for m in modes if m in results]
    plain = results["plain"]
    print(f"\nTwo ranks: LoRA (r {LORA['rank']}, q/k/v/o) on a 4-layer, width-128 Llama-style base; ZeRO stage "
          f"{args.stage}; {args.steps} steps of 2 ranks × 8 sequences of 128 tokens; CPU")
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
        return True
    same = max(abs(a - b) for a, b in zip(results["lmspec"]["losses"], plain["losses"], strict=True)) < 1e-4
    print(f"lmspec and plain loss curves {'match' if same else 'DIFFER'}; targets: lmspec/plain ≥ 0.95"
          + ("" if args.skip_trainer else ", lmspec/trainer ≥ 1.0 (ratio column is vs plain)"))
    return same


def single(args: argparse.Namespace, tmp: Path, base: Path) -> None:
    modes = [m for m in ("lmspec", "peft", "trl") if not args.only or m in args.only or m == "lmspec"]
    jobs = {LAYOUTS[key][0]: write_chat_job(tmp / key, base, args.steps, args.stage, LAYOUTS[key][1])
            for key in args.layouts}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    loads: list[float] = []
    for r in range(args.rounds):
        for key, (name, job) in zip(args.layouts, jobs.items(), strict=True):
            prepared = _prepared(job)
            # Alternate the order within a round, so neither side always runs first.
            for m in modes if r % 2 == 0 else modes[::-1]:
                result = launch_single(m, job, tmp / f"round{r}" / f"{key}-{m}", prepared)
                runs.setdefault((name, m), []).append(result)
                # Other work on the machine moves every figure: say how busy it was.
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1}, {name}, {m}: {result['steps'] / result['seconds']:.2f} steps/s "
                      f"(load average {loads[-1]:.1f})", flush=True)
    print(f"\nOne process: LoRA (r {LORA['rank']}, q/k/v/o) on a 4-layer, width-128 Llama-style base; ZeRO stage "
          f"{args.stage} for lmspec; {args.steps} steps of 8 chat rows (up to {CHAT_LENGTH} tokens); "
          f"{args.rounds} round(s); CPU, {os.cpu_count()} cores, load average {min(loads):.1f} to {max(loads):.1f}")
    print("| data | runner | steps/s | vs peft | vs TRL | padding | held-out loss | train loss first → last |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for name in jobs:
        for m in modes:
            rs = runs[(name, m)]
            rate = statistics.median(x["steps"] / x["seconds"] for x in rs)
            cells = []
            for base_mode in ("peft", "trl"):
                if base_mode not in modes:
                    cells.append("—")
                    continue
                ratios = [a["steps"] / a["seconds"] / (b["steps"] / b["seconds"])
                          for a, b in zip(rs, runs[(name, base_mode)], strict=True)]
                cells.append(f"{statistics.median(ratios):.2f}")
                if m == "lmspec":
                    target = 0.9 if base_mode == "peft" else 1.0
                    verdicts.append(f"{name}: lmspec/{base_mode} {statistics.median(ratios):.2f} "
                                    f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}; target ≥ {target}: "
                                    f"{'met' if statistics.median(ratios) >= target else 'MISSED'})")
            last = rs[-1]
            print(f"| {name} | {m} | {rate:.2f} | {cells[0]} | {cells[1]} | {100 * last['padding']:.1f} % | "
                  f"{last['heldout']:.4f} | {last['losses'][0]:.3f} → {last['losses'][-1]:.3f} |")
        held = {m: runs[(name, m)][-1]["heldout"] for m in modes}
        spread = max(held.values()) - min(held.values())
        verdicts.append(f"{name}: held-out losses within {spread:.4f} "
                        f"({'equal' if spread <= LOSS_TOLERANCE else 'NOT equal'} within {LOSS_TOLERANCE})")
        if "peft" in modes:
            a, b = runs[(name, "lmspec")][-1]["losses"], runs[(name, "peft")][-1]["losses"]
            gap = max(abs(x - y) for x, y in zip(a, b, strict=True))
            verdicts.append(f"{name}: lmspec vs peft train loss curves, max |Δ| {gap:.2e}")
    threads = {m: runs[(next(iter(jobs)), m)][-1]["threads"] for m in modes}
    print("torch threads: " + ", ".join(f"{m} {t}" for m, t in threads.items()))
    print("\n".join(verdicts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--stage", type=int, default=2, choices=[0, 1, 2, 3])
    parser.add_argument("--rounds", type=int, default=1, help="single process: runs of each runner, interleaved")
    parser.add_argument("--threads", type=int,
                        help="OMP_NUM_THREADS for every runner [default: each runner's own: the cores for one process]")
    parser.add_argument("--part", choices=["all", "two-rank", "single"], default="all")
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS),
                        help="single process: " + "; ".join(f"{k}: {v[0]}" for k, v in LAYOUTS.items()))
    parser.add_argument("--skip-trainer", action="store_true")
    parser.add_argument("--only", choices=list(WORKERS), action="append",
                        help="run only these (with the baseline: plain for two ranks, lmspec for one process)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.job, args.out)
        return 0
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every run; lmspec honours it too
    from make_base import make_base

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = make_base(tmp / "base", hidden_size=128, intermediate_size=352, layers=4, heads=4, kv_heads=2,
                         context=256)
        same = two_rank(args, tmp, base) if args.part in ("all", "two-rank") else True
        if args.part in ("all", "single"):
            single(args, tmp, base)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
