"""Training throughput of a GPT-2-small-shaped decoder on one CUDA GPU, the way ``lmspec run``
drives DeepSpeed (same builders, same generated config: bf16, ZeRO-2, AdamW).

    python bench/train_gpu.py                     # defaults below
    python bench/train_gpu.py --micro-batch 8 --steps 40 --stage 2

Needs: one CUDA GPU, and ``pip install -e '.[run]'`` with a CUDA build of torch and deepspeed
(no DeepSpeed ops are compiled: the optimizer is torch's AdamW). Data are random token ids
(throughput does not depend on them); nothing is downloaded.

Prints tokens/s and MFU. FLOPs per token are 6·N + 12·L·H·Q·T (the PaLM paper's estimate, as
nanoGPT computes it; N excludes position embeddings), and the peak is an ASSUMPTION:
989 TFLOP/s, the H200 (and H100 SXM) dense bf16 tensor-core figure. Pass --peak-tflops for
other GPUs (A100: 312).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30, help="measured steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--stage", type=int, default=2, choices=[0, 1, 2, 3])
    parser.add_argument("--activation-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense bf16 peak of the GPU (default: H200/H100 SXM, 989)")
    args = parser.parse_args()

    os.environ.setdefault("DS_ACCELERATOR", "cuda")
    import torch

    if not torch.cuda.is_available():
        print("bench/train_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    import deepspeed

    from lmspec.domain.plan import count_parameters
    from lmspec.model.build import build_model
    from lmspec.train.dsconfig import deepspeed_config, lr_lambda
    from lmspec.train.world import World
    from lmspec.v1alpha1 import ModelSpec, TrainingJobSpec

    vocab, width, depth, heads = 50257, 768, 12, 12
    model_spec = ModelSpec.model_validate({
        "task": "causal-lm",
        "architecture": {"type": "transformer", "vocabSize": vocab, "contextLength": args.context,
                         "width": width, "depth": depth, "heads": heads},
        "signature": {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
                      "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, vocab]}]},
    }, strict=False)
    job = TrainingJobSpec.model_validate({
        "model": "gpt2-small", "dataset": "synthetic", "loss": {"type": "causalLm"},
        "optimizer": {"type": "adamw", "lr": 6e-4, "betas": [0.9, 0.95], "weightDecay": 0.1},
        "schedule": {"type": "cosine", "warmupSteps": 2},
        "batch": {"microBatchSize": args.micro_batch},
        "precision": {"bf16": {"enabled": True}},
        "gradientClipping": 1.0,
        "zero": {"stage": args.stage},
        "activationCheckpointing": {"enabled": args.activation_checkpointing},
        "resources": {"accelerator": "cuda"},
    }, strict=False)

    World(0, 0, 1).init(backend="nccl")
    torch.cuda.set_device(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    cfg = deepspeed_config(job)
    total = args.warmup + args.steps
    if args.stage == 3:
        with deepspeed.zero.Init(config_dict_or_path=cfg):
            model = build_model(model_spec)
    else:
        model = build_model(model_spec)
    if args.activation_checkpointing:
        model.enable_activation_checkpointing()  # type: ignore[operator]
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=list(model.parameters()), config=cfg,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(job.schedule, job.optimizer.lr, total)))

    n_params = count_parameters(model_spec).params or 0
    n_flops_params = n_params - args.context * width  # nanoGPT: position embeddings excluded
    flops_per_token = 6 * n_flops_params + 12 * depth * heads * (width // heads) * args.context
    tokens_per_step = args.micro_batch * args.context

    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, vocab, (args.micro_batch, args.context + 1), device="cuda", generator=gen)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step() -> float:
        logits = engine(x)
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, vocab), y.view(-1))
        engine.backward(loss)
        engine.step()
        return float(loss)

    t0 = time.perf_counter()
    first_loss = step()
    torch.cuda.synchronize()
    first_step = time.perf_counter() - t0
    for _ in range(args.warmup - 1):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        last_loss = step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0

    tokens_s = args.steps * tokens_per_step / elapsed
    achieved = tokens_s * flops_per_token
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, deepspeed {deepspeed.__version__}")
    print(f"model: {n_params / 1e6:.1f}M parameters (GPT-2 small shape), context {args.context}, "
          f"micro batch {args.micro_batch}, bf16, ZeRO-{args.stage}")
    print(f"time to first step: {first_step:.2f}s; loss {first_loss:.3f} → {last_loss:.3f}")
    print(f"steps/s: {args.steps / elapsed:.2f}; tokens/s: {tokens_s:,.0f}")
    print(f"MFU: {100 * achieved / (args.peak_tflops * 1e12):.1f}% "
          f"({achieved / 1e12:.1f} TFLOP/s of an assumed {args.peak_tflops:.0f} TFLOP/s bf16 dense peak)")
    print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
