"""DPO with LoRA: lmspec's recipe against TRL's ``DPOTrainer``, in one process and on two ranks.

    python bench/preference.py [--steps 20] [--part all|single|two-rank] [--rounds 1] [--pairs 400]

TRL is in the ``bench`` extra: ``pip install -e '.[run,bench]'``.

Builds a small pretrained base in Hugging Face format (a 4-layer, width-128 Llama-style model
and a BPE tokenizer trained on the licence texts; examples/chat-base/make_base.py) and preference
pairs (a short answer preferred to a rambling one, over a few hundred prompts), then trains the
same LoRA adapters (r 16 on q/k/v/o) with the sigmoid DPO loss (β 0.1), the same hyperparameters
and the same pairs in the same order, in fp32:

- lmspec: the runner's recipe (setup and train, as ``lmspec run`` does); the reference
  log-probabilities are computed once before the first step (counted apart from the steps);
- trl: ``DPOTrainer`` with ``ref_model=None`` on the peft model (the reference is the base with
  the adapter disabled, one extra forward pass per step), fed the pairs as conversations in
  lmspec's order (a sequential sampler; on two ranks, the micro batches interleaved as
  accelerate deals them out), tokenized by TRL itself with the same chat template.

It prints steps/s and the ratio (median over ``--rounds``, each round running both), peak RSS,
and the largest per-step loss difference over the run (the curves are computed independently,
from the same data and initial weights). Targets: per-step loss within 1e-3 of TRL over the
first 20 steps; steps/s ≥ 1.0× TRL in one process and on two ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("DS_ACCELERATOR", "cpu")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "examples" / "chat-base"))

import finetune  # noqa: E402  (the shared pieces: the LoRA base, micro batches, the launchers)

BETA = 0.1
LOSS_TOLERANCE = 1e-3
"""Largest per-step difference of the DPO loss that counts as the same computation."""
SEQUENCE_LENGTH = 128
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

SUBJECTS = ["the sea", "a river", "the moon", "a forest", "the desert", "a city", "the mountains", "a garden",
            "the wind", "a library", "the rain", "a bridge", "the stars", "an island", "a market", "the snow"]
ASKS = ["Describe {}.", "What is {} like?", "Tell me about {}.", "Say something about {}.", "Write a line on {}."]


def pairs(n: int) -> list[dict[str, Any]]:
    """Conversational pairs: a short, direct answer (chosen) over a padded, rambling one."""
    out = []
    for i in range(n):
        s = SUBJECTS[i % len(SUBJECTS)]
        q = ASKS[(i // len(SUBJECTS)) % len(ASKS)].format(s)
        out.append({"prompt": [{"role": "user", "content": q}],
                    "chosen": [{"role": "assistant", "content": f"{s.capitalize()} is quiet and wide."}],
                    "rejected": [{"role": "assistant",
                                  "content": f"Well, {s}, hmm, let me see, it is, you know, sort of a thing."}]})
    return out


def write_job(folder: Path, base: Path, steps: int, stage: int, nproc: int, n_pairs: int) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pairs(n_pairs)))
    docs = [
        finetune._model_doc(base),
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "prefs"},
         "spec": {"sources": [{"path": str(data)}],
                  "chat": {"format": "preference", "sequenceLength": SEQUENCE_LENGTH, "template": TEMPLATE},
                  "splits": {"ratios": {"train": 0.9, "validation": 0.1, "test": 0.0}, "seed": 0}}},
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "dpo"},
         "spec": {"model": "base", "dataset": "prefs", "loss": {"type": "dpo", "beta": BETA},
                  "adapter": {**finetune.LORA, "exportMerged": False},
                  "optimizer": {"type": "adamw", "lr": 1e-3}, "stopping": {"epochs": 100, "maxSteps": steps},
                  "batch": {"microBatchSize": 8}, "zero": {"stage": stage},
                  "resources": {"processesPerNode": nproc}, "validation": {"interval": 10**6},
                  "evaluation": {"enabled": False},
                  "logging": {"interval": 1, "progressBar": False}, "seed": 0,
                  "output": {"dir": str(folder / "run")}}},
    ]
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _records_in_order(spec: Any, data: Any, job: Path, world: int) -> list[dict[str, Any]]:
    """The training pairs as TRL reads them, in the order lmspec trains them: step by step, each
    rank's micro batch in turn (accelerate deals consecutive batches to ranks 0, 1, ...)."""
    import yaml

    from lmspec.data.split import ratio_split

    docs = list(yaml.safe_load_all(job.read_text()))
    source = Path(docs[1]["spec"]["sources"][0]["path"])
    records = [json.loads(line) for line in source.read_text().splitlines()]
    s = docs[1]["spec"]["splits"]
    train_idx = ratio_split(len(records), s["ratios"], s["seed"])["train"]
    per_rank = [finetune.micro_batches(spec, data.train, rank=r, world=world) for r in range(world)]
    out = []
    for step in range(len(per_rank[0])):
        for r in range(world):
            out += [records[int(train_idx[int(row)])] for row in per_rank[r][step]]
    return out


def worker_trl(job: Path, out: Path) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from lmspec.train.dsconfig import deepspeed_config

    spec, base, data = finetune._prepared(job)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    opt = spec.optimizer
    ds = {"deepspeed": deepspeed_config(spec)} if world > 1 else {}
    args = DPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=spec.batch.micro_batch_size,
        gradient_accumulation_steps=spec.batch.gradient_accumulation_steps, max_steps=spec.stopping.max_steps,
        learning_rate=opt.lr, weight_decay=opt.weight_decay, adam_beta1=opt.betas[0], adam_beta2=opt.betas[1],
        adam_epsilon=opt.eps, max_grad_norm=spec.gradient_clipping, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", report_to=[], seed=spec.seed, use_cpu=True, disable_tqdm=True,
        bf16=False, gradient_checkpointing=False, beta=BETA, loss_type=["sigmoid"], max_length=None,
        precompute_ref_log_probs=False, disable_dropout=True, dataloader_drop_last=True, **ds)
    torch.manual_seed(spec.seed)
    model = finetune._lora_model(base)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokenizer.chat_template = TEMPLATE
    rows = datasets.Dataset.from_list(_records_in_order(spec, data, job, world))
    losses: list[float] = []
    times: list[float] = []
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=rows, processing_class=tokenizer,
                         callbacks=[finetune.recorder(losses, times)])
    # The rows are in lmspec's order already: take them as they are.
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    return {"seconds": times[-1] - times[0], "steps": trainer.state.global_step, "losses": losses,
            "threads": torch.get_num_threads()}


WORKERS = {"lmspec": finetune.worker_lmspec, "trl": worker_trl}


def launch(mode: str, job: Path, out: Path, nproc: int) -> dict[str, Any]:
    from lmspec.train.world import free_port

    out.mkdir(parents=True, exist_ok=True)
    if nproc == 1:
        cmd = [sys.executable, __file__, "--worker", mode, "--job", str(job), "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(free_port()), __file__, "--worker", mode, "--job", str(job), "--out", str(out)]
    finetune._check(mode, subprocess.run(cmd, env=finetune._env(), capture_output=True, text=True))
    ranks = [json.loads((out / f"{mode}-rank{r}.json").read_text()) for r in range(nproc)]
    return {**ranks[0], "rss": [r["peakRssMiB"] for r in ranks]}


def part(args: argparse.Namespace, tmp: Path, base: Path, nproc: int) -> list[str]:
    stage = 0 if nproc == 1 else 2
    job = write_job(tmp / f"np{nproc}", base, args.steps, stage, nproc, args.pairs)
    runs: dict[str, list[dict[str, Any]]] = {"lmspec": [], "trl": []}
    for r in range(args.rounds):
        for m in (["lmspec", "trl"] if r % 2 == 0 else ["trl", "lmspec"]):
            runs[m].append(launch(m, job, tmp / f"np{nproc}" / f"round{r}-{m}", nproc))
            res = runs[m][-1]
            print(f"{nproc} process(es), round {r + 1}, {m}: {res['steps'] / res['seconds']:.2f} steps/s "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    title = "one process" if nproc == 1 else f"{nproc} ranks, ZeRO-{stage}"
    print(f"\nDPO, {title}: LoRA (r {finetune.LORA['rank']}, q/k/v/o) on a 4-layer, width-128 Llama-style "
          f"base; {args.steps} steps of {nproc} × 8 pairs; fp32; CPU, {os.cpu_count()} cores")
    # lmspec scores the reference once, before the first step; TRL at every step. Per epoch the
    # two cost the same forward passes: the epoch column counts lmspec's reference pass in.
    pairs_per_step = 8 * nproc
    epoch_steps = runs["lmspec"][-1]["trainRows"] // pairs_per_step
    print("| runner | steps/s | vs TRL | one epoch, reference included | vs TRL | loss step 1 → last | "
          "max abs Δloss vs TRL | peak RSS per rank |")
    print("|---|---|---|---|---|---|---|---|")
    epoch_s = {m: epoch_steps / statistics.median(x["steps"] / x["seconds"] for x in runs[m])
               + statistics.median(x.get("referenceSeconds", 0.0) for x in runs[m]) for m in runs}
    verdicts = []
    for m in ("lmspec", "trl"):
        rs = runs[m]
        rate = statistics.median(x["steps"] / x["seconds"] for x in rs)
        ratios = [a["steps"] / a["seconds"] / (b["steps"] / b["seconds"]) for a, b in zip(rs, runs["trl"], strict=True)]
        last, trl = rs[-1], runs["trl"][-1]
        n = min(len(last["losses"]), len(trl["losses"]), 20)
        gap = max(abs(a - b) for a, b in zip(last["losses"][:n], trl["losses"][:n], strict=True))
        rss = " / ".join(f"{x:.0f}" for x in last["rss"])
        print(f"| {m} | {rate:.2f} | {statistics.median(ratios):.2f} | {epoch_s[m]:.1f} s | "
              f"{epoch_s['trl'] / epoch_s[m]:.2f} | {last['losses'][0]:.4f} → "
              f"{last['losses'][-1]:.4f} | {gap:.1e} | {rss} MiB |")
        if m == "lmspec":
            verdicts.append(f"{title}: lmspec/TRL {statistics.median(ratios):.2f} steps/s (target ≥ 1.0: "
                            f"{'met' if statistics.median(ratios) >= 1.0 else 'MISSED'}); per-step loss within "
                            f"{gap:.1e} of TRL over {n} steps (target ≤ {LOSS_TOLERANCE}: "
                            f"{'met' if gap <= LOSS_TOLERANCE else 'MISSED'}); an epoch ({epoch_steps} steps) "
                            f"with the reference pass {epoch_s['trl'] / epoch_s['lmspec']:.2f}× TRL's speed; "
                            f"reference log-probabilities of {last['trainRows']} pairs in "
                            f"{last['referenceSeconds']:.1f}s")
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--part", choices=["all", "single", "two-rank"], default="all")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        finetune.run_worker(args.worker, args.job, args.out, WORKERS)
        return 0
    from make_base import make_base

    verdicts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = make_base(tmp / "base", hidden_size=128, intermediate_size=352, layers=4, heads=4, kv_heads=2,
                         context=256)
        if args.part in ("all", "single"):
            verdicts += part(args, tmp, base, 1)
        if args.part in ("all", "two-rank"):
            verdicts += part(args, tmp, base, 2)
    print("\n".join(verdicts))
    return 0 if all("MISSED" not in v for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
