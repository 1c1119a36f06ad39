"""The training recipe: setup → train → evaluate → save, on every rank.

>>> Recipe(job_manifest, manifests, run_dir, resume=False).run()

Features, in the order they happen:

- setup: join the process group; resolve the pretrained base; prepare the data (this rank's
  shard); build the model (inside ``deepspeed.zero.Init`` at ZeRO stage 3, a pretrained base
  loaded partitioned, 4-bit for QLoRA, LoRA attached, activation checkpointing); hand it to
  DeepSpeed with the generated config and the schedule's ``LambdaLR``; write ``lock.json``;
  score DPO's reference; resume from the newest intact checkpoint.
- train: epochs of seeded, per-epoch permutations of the training split, sharded across ranks
  (optionally grouped by length); augmentation on training batches; gradient accumulation,
  clipping, warm-up and decay happen inside DeepSpeed; metrics every ``logging.interval``
  steps; validation every ``validation.interval`` steps (or each epoch) with early stopping;
  checkpoints every ``checkpointing.interval`` steps and at the end.
- evaluate: test-split metrics, reduced across ranks; predictions on the first test rows
  (``final_predictions.npy`` beside ``final_inputs.npy``) to check the export against.
- save: fp32 weights gathered from any ZeRO stage, exported by rank 0 to ``<run>/export``;
  ``summary.json``.

Its parts, each a module of this package:

    runstate   lock.json, checkpoints and resume (the run's Progress)
    criterion  the loss, one call per micro batch (preference: DPO and SimPO)
    order      the rows of each epoch and the seeds of every random draw
    gather     whole weights out of (and into) ZeRO partitions
    export     the export: Hugging Face shards streamed, adapters, tokenizer
    check      the sample kept to check the export
    faults     the one fault-injection seam (LMSPEC_FAULT_AT), for tests

Determinism: every random draw is derived from (seed, epoch, micro batch, rank), never from a
generator's running state, so a resumed run sees exactly the batches, augmentation noise and
dropout masks the uninterrupted run would have.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..domain.pretrained import BaseError
from ..model.build import CausalLM, build_model
from ..model.pretrained import ResolvedBase
from ..standard import Dataset, Model, Pretrained, TrainingJob
from ..validator.core import Manifest, ManifestSet
from . import export, faults
from .check import CHECK_ROWS, PREDICTION_ROWS, CheckSample, check_positions, write_check_sample
from .criterion import Criterion
from .dsconfig import deepspeed_config, lr_lambda
from .errors import TrainError
from .gather import copy_into_partitioned
from .metrics import MetricsLog
from .order import epoch_rows, seed_for
from .preference import PREFERENCE_LOSSES, PreferenceCriterion
from .runstate import Progress, RunState
from .tracking import open_trackers
from .world import World

__all__ = ["Recipe", "TrainError"]


class Recipe:
    """One rank's run of a TrainingJob: ``setup()``, ``train()``, ``save()``, ``evaluate()``,
    in that order (``run()``); every rank runs it in step."""

    def __init__(self, job: Manifest, manifests: ManifestSet, run_dir: Path, *, resume: bool) -> None:
        self.job_manifest = job
        self.job: TrainingJob = job.obj
        self.spec = self.job.spec
        model_m = manifests.get("Model", self.spec.model)
        data_m = manifests.get("Dataset", self.spec.dataset)
        assert model_m is not None and data_m is not None  # references were validated
        self.model_manifest, self.data_manifest = model_m, data_m
        self.model_obj: Model = model_m.obj
        self.data_obj: Dataset = data_m.obj
        self.task = self.model_obj.spec.task
        self.manifests = manifests
        self.run_dir = run_dir
        self.resume = resume or self.spec.checkpointing.resume
        self.world = World.from_env()
        self.run_state = RunState(run_dir, self.world, zero_stage=self.spec.zero.stage,
                                  keep_last=self.spec.checkpointing.keep_last)
        self.progress = Progress()
        """How far training got through the data; restored from a checkpoint on resume."""
        self.kill_point = faults.kill_point()
        self.log: MetricsLog | None = None
        self.resumed_at: int | None = None
        self.first_step_s: float | None = None
        self.print_progress = False
        self.train_seconds = 0.0
        self.base: ResolvedBase | None = None
        self.params: dict[str, int] = {}
        self.partitioned_load = False
        self._hf_ds_config: Any = None
        self.export_stats: dict[str, int] | None = None
        self.last_train_loss: float | None = None
        """The mean training loss of the last logging window (for summary.json)."""
        self.last_validation: dict[str, float] | None = None

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        spec = self.spec
        if self.resume:
            self.run_state.check_resumable()
        cpu = spec.resources.accelerator == "cpu"
        self.world.init(backend="gloo" if cpu else "nccl")
        self.device = torch.device("cpu") if cpu else torch.device("cuda", self.world.local_rank)
        if not cpu:
            torch.cuda.set_device(self.device)
        self.ds_config = deepspeed_config(spec, self.job_manifest.base_dir)
        prec = spec.precision
        self.input_dtype = torch.bfloat16 if prec.bf16.enabled else torch.float16 if prec.fp16.enabled \
            else torch.float32
        self.shard_bytes = export.shard_bytes()
        self._resolve_base()
        self._setup_data()
        if self.resume:
            self.run_state.check_same_data(self.data.files, self.data_manifest.base_dir)
        self._setup_criterion()
        self._setup_model()
        self._check_vocabulary()
        self._setup_engine()
        self._setup_export()
        if self.world.is_main:
            self.run_state.write_lock(seed=spec.seed, data=self.data, data_dir=self.data_manifest.base_dir,
                                      ds_config=self.ds_config, params=self.params, base=self.base,
                                      partitioned_load=self.partitioned_load)
        # From the starting weights: before a checkpoint is loaded.
        self.criterion.prepare(self.engine, self.data, run_dir=self.run_dir, resume=self.resume,
                               has_checkpoint=self.resume and self.run_state.has_checkpoint(),
                               micro_batch=spec.batch.micro_batch_size,
                               max_samples={"train": "all", "validation": spec.validation.max_samples,
                                            "test": spec.evaluation.max_samples},
                               to_device=self._inputs)
        if self.resume:
            restored = self.run_state.load(self.engine)
            if restored is not None:
                self.progress, self.resumed_at = restored, restored.step
        if self.world.is_main:
            trackers = open_trackers(spec.logging, self.run_dir, job_name=self.job.metadata.name)
            self.log = MetricsLog(self.run_dir / "metrics.jsonl", trackers, keep_until=self.progress.step)
            if self.resumed_at is not None:
                self.log.event("resume", self.resumed_at)

    def _resolve_base(self) -> None:
        arch = self.model_obj.spec.architecture
        if not isinstance(arch, Pretrained):
            return
        from ..model.export import export_dir_for
        from ..model.pretrained import resolve

        def export_dir_of(name: str) -> Path | None:
            job = self.manifests.get("TrainingJob", name)
            return export_dir_for(job) if job is not None else None

        try:
            self.base = resolve(arch, self.model_manifest.base_dir, export_dir_of=export_dir_of)
        except BaseError as e:
            raise TrainError(f"Model {self.model_obj.metadata.name!r}: {e}") from None
        if self.world.is_main:
            where = f" (commit {self.base.commit})" if self.base.commit else ""
            print(f"lmspec: pretrained base {self.base.source}{where} at {self.base.directory}, "
                  f"sha256 {self.base.sha256}")

    def _setup_data(self) -> None:
        from ..data import prepare
        from ..data.cost import default_cache_dir

        # One cache per Dataset, shared by every job on it (and by evaluate and report); chat
        # data that declares no tokenizer uses the pretrained base's.
        self.data = prepare(self.data_obj, self.data_manifest.base_dir, model_task=self.task,
                            cache_dir=default_cache_dir(self.data_manifest.base_dir),
                            rank=self.world.rank, world_size=self.world.size,
                            tokenizer_dir=self.base.directory if self.base is not None else None)
        if self.data.counts is not None and self.world.is_main:
            for name, c in self.data.counts.items():
                if "pairs" in c:
                    print(f"lmspec: {name} data: {c['pairs']} preference pairs, {c['truncated']} truncated, "
                          f"{c['droppedOverLength']} dropped as too long; {c['trainedTokens']} trained "
                          "answer tokens")
                elif "conversations" in c:
                    print(f"lmspec: {name} data: {c['conversations']} conversations, {c['truncated']} "
                          f"truncated, {c['droppedOverLength']} dropped as too long, "
                          f"{c['droppedUntrained']} dropped with no trained token; {c['sequences']} "
                          f"sequences, {c['trainedTokens']} trained tokens")
                else:
                    print(f"lmspec: {name} data: {c['documents']:,} document(s), {c['tokens']:,} tokens, "
                          f"{c['sequences']:,} sequences")
            print(f"lmspec: data cache {self.data.cache} ({self.data.disk_bytes:,} bytes of tokens)")
        b = self.spec.batch
        per_rank = len(self.data.train) // self.world.size
        self.micro_per_epoch = per_rank // b.micro_batch_size
        self.steps_per_epoch = self.micro_per_epoch // b.gradient_accumulation_steps
        if self.steps_per_epoch == 0:
            need = b.micro_batch_size * b.gradient_accumulation_steps * self.world.size
            raise TrainError(
                f"the training split of Dataset {self.data_obj.metadata.name!r} has "
                f"{len(self.data.train)} rows, fewer than one optimizer step needs "
                f"(microBatchSize × gradientAccumulationSteps × world size = {need})")
        # Whole optimizer steps only: a partial accumulation would leak into the next epoch.
        self.micro_per_epoch = self.steps_per_epoch * b.gradient_accumulation_steps
        total = self.steps_per_epoch * self.spec.stopping.epochs
        if self.spec.stopping.max_steps is not None:
            total = min(total, self.spec.stopping.max_steps)
        self.total_steps = total

    def _setup_criterion(self) -> None:
        # Chat data masks tokens out of the loss: it is normalised by the trained tokens of the
        # whole optimizer step (all micro batches, all ranks), not averaged per micro batch.
        loss = self.spec.loss
        kind = PreferenceCriterion if loss.type in PREFERENCE_LOSSES else Criterion
        self.criterion: Criterion = kind(loss, self.task, self.world,
                                         token_weighted=bool(self.data.train.token_weighted),
                                         accumulation=self.spec.batch.gradient_accumulation_steps)

    def _setup_model(self) -> None:
        import deepspeed

        spec = self.model_obj.spec
        width = int(self.data.train.inputs.shape[1]) if self.task != "causal-lm" else None
        self.input_width = width
        torch.manual_seed(self.spec.seed)  # the same initial weights on every rank
        base_dir = self.model_manifest.base_dir
        if self.base is not None:
            model = self._load_pretrained()
        elif self.spec.zero.stage == 3:
            # Rank 0 builds the model as every other stage does (same seed, on the CPU, initial
            # weights loaded); the others need not. Its values are then copied into the
            # partitioned model. Initialising under zero.Init itself is not equivalent: Hugging
            # Face's post_init runs on already-partitioned (empty) parameters and does nothing,
            # and on GPUs the construction draws from the device's generator, not the CPU's.
            reference = build_model(spec, input_width=width, base_dir=base_dir) if self.world.is_main else None
            if self.task == "causal-lm":
                # zero.Init patches tensor constructors, which breaks torch._dynamo if it is first
                # imported inside (transformers imports it lazily): import it beforehand.
                importlib.import_module("torch._dynamo")
                importlib.import_module("transformers.generation.utils")
            # Partition parameters as they are created instead of materialising the whole model
            # on every rank first.
            with deepspeed.zero.Init(config_dict_or_path=self.ds_config):
                model = build_model(spec.model_copy(update={"initial_weights": None}), input_width=width)
            copy_into_partitioned(model, reference)
        else:
            model = build_model(spec, input_width=width, base_dir=base_dir)
        if self.spec.adapter is not None and isinstance(model, CausalLM):
            from ..model.adapters import AdapterError, attach_lora

            try:
                model.lm = attach_lora(model.lm, self.spec.adapter)
            except AdapterError as e:
                raise TrainError(f"TrainingJob {self.job.metadata.name!r}: {e}") from None
        if self.spec.activation_checkpointing.enabled and isinstance(model, CausalLM):
            model.enable_activation_checkpointing()
        self.criterion.prepare_model(model)
        self.model = model
        from ..model.adapters import count_params

        trainable, total = count_params(model)
        self.params = {"trainable": trainable, "total": total}
        if self.world.is_main:
            print(f"lmspec: {trainable:,} trainable parameters of {total:,} "
                  f"({100.0 * trainable / max(total, 1):.2f}%)")

    def _load_pretrained(self) -> torch.nn.Module:
        """The base, loaded partitioned at ZeRO-3 (never whole on one rank)."""
        from ..model.build import ModelError, load_pretrained

        assert self.base is not None
        adapter = self.spec.adapter
        if adapter is not None and adapter.type == "qlora":
            return self._load_quantized()
        if self.spec.zero.stage == 3:
            from transformers.integrations.deepspeed import HfDeepSpeedConfig

            importlib.import_module("torch._dynamo")
            importlib.import_module("transformers.generation.utils")
            # transformers reads the ZeRO-3 config through a weak reference to this object while
            # it creates and loads the model: it must stay alive until then (kept on self).
            self._hf_ds_config = HfDeepSpeedConfig(self.ds_config)  # type: ignore[no-untyped-call]
        try:
            model = load_pretrained(self.base.directory)
        except ModelError as e:
            raise TrainError(str(e)) from None
        # Recorded in the lock: at ZeRO-3 every parameter must be a partition (has a ds_id).
        self.partitioned_load = all(hasattr(p, "ds_id") for p in model.parameters())
        return model

    def _load_quantized(self) -> torch.nn.Module:
        """QLoRA: the frozen base in 4-bit NF4 (CUDA and bitsandbytes only; the validator
        refuses it on CPU)."""
        assert self.base is not None
        if importlib.util.find_spec("bitsandbytes") is None:
            raise TrainError("adapter.type qlora needs the bitsandbytes package: pip install bitsandbytes")
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=self.input_dtype,
                                   bnb_4bit_use_double_quant=True)  # type: ignore[no-untyped-call]
        lm = AutoModelForCausalLM.from_pretrained(str(self.base.directory), quantization_config=quant,
                                                  device_map={"": self.device}, local_files_only=True)
        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=False)  # type: ignore[no-untyped-call]
        return CausalLM(lm)

    def _check_vocabulary(self) -> None:
        """A token id beyond the model's embeddings would fail deep in the forward pass."""
        config = getattr(getattr(self.model, "lm", None), "config", None)
        vocab = getattr(config, "vocab_size", None)
        if self.task != "causal-lm" or not isinstance(vocab, int):
            return
        store = getattr(self.data.train, "store", None)
        top = store.max_id if store is not None else -1
        if top >= vocab:
            raise TrainError(f"Dataset {self.data_obj.metadata.name!r} has token id {top}, but Model "
                             f"{self.model_obj.metadata.name!r} has a vocabulary of {vocab}: the "
                             "tokenizer does not belong to this model")

    def _setup_engine(self) -> None:
        import deepspeed

        def scheduler(optimizer: torch.optim.Optimizer) -> Any:
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lr_lambda(self.spec.schedule, self.spec.optimizer.lr, self.total_steps))

        self.engine, _, _, _ = deepspeed.initialize(
            model=self.model, model_parameters=[p for p in self.model.parameters() if p.requires_grad],
            config=self.ds_config, lr_scheduler=scheduler)

    def _setup_export(self) -> None:
        self.exporter = export.Exporter(
            self.run_dir, keep=self.world.is_main, shard_bytes=self.shard_bytes, model_obj=self.model_obj,
            data_obj=self.data_obj, data_dir=self.data_manifest.base_dir, job_name=self.job.metadata.name,
            adapter=self.spec.adapter, base=self.base, params=self.params, transform=self.data.transform,
            input_width=self.input_width)

    # --- train ---------------------------------------------------------------------------------

    def train(self) -> None:
        spec, engine, p = self.spec, self.engine, self.progress
        gas = spec.batch.gradient_accumulation_steps
        mb = spec.batch.micro_batch_size
        bar = self._progress_bar()
        # Without a bar (output not a terminal: a log file, a batch job), a line per logging
        # interval shows progress instead.
        self.print_progress = bar is None and self.world.is_main
        engine.train()
        window_loss, window_micro, window_start = 0.0, 0, time.perf_counter()
        started = time.perf_counter()
        order: np.ndarray = np.zeros(0, dtype=np.int64)
        order_epoch = -1
        train = self.data.train
        while p.epoch < spec.stopping.epochs and not p.done(self.total_steps):
            if order_epoch != p.epoch:
                order, order_epoch = self._epoch_rows(p.epoch), p.epoch
            rows = order[p.micro * mb:(p.micro + 1) * mb]
            batch = train.batch(rows)
            x = batch.inputs
            if p.micro % gas == 0:
                self.criterion.start_step(train, order[p.micro * mb:(p.micro + gas) * mb])
            # Derived from (seed, epoch, micro batch, rank) only: a resumed run draws the same.
            if self.task != "causal-lm":
                rng = np.random.default_rng(seed_for(spec.seed, p.epoch, p.micro, self.world.rank))
                x = self.data.transform.augment(x, rng)
            self._seed_generators(seed_for(spec.seed, p.epoch, p.micro, self.world.rank, 1))
            out = engine(self._inputs(x), **self._positions(batch.positions))
            loss = self.criterion.loss(out, self._targets(batch.targets), rows)
            engine.backward(loss)
            engine.step()
            p.micro += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainError(
                    f"the training loss is {loss_value} at step {p.step + 1} (epoch {p.epoch}); "
                    "the weights are no longer usable, so the run stops without exporting. Lower "
                    "optimizer.lr, enable gradient clipping, or check the data for extreme values")
            window_loss += loss_value
            window_micro += 1
            if p.micro % gas:
                continue
            # An optimizer step is complete.
            p.step += 1
            if self.first_step_s is None:
                self.first_step_s = time.perf_counter() - started
            if p.micro == self.micro_per_epoch:
                p.epoch, p.micro = p.epoch + 1, 0
            samples = window_micro * mb * self.world.size
            rate = samples / max(time.perf_counter() - window_start, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.0f}")
            if p.step % spec.logging.interval == 0 or p.step == self.total_steps:
                self._log_train(window_loss / window_micro, rate)
                window_loss, window_micro, window_start = 0.0, 0, time.perf_counter()
            interval = spec.validation.interval
            if (interval and p.step % interval == 0) or (interval is None and p.micro == 0):
                self._validate()
            every = spec.checkpointing.interval
            if every and p.step % every == 0 and not p.done(self.total_steps):
                self._save_checkpoint()
            self.kill_point(self.world.rank, p.step)
        self.train_seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        self._save_checkpoint()

    def _epoch_rows(self, epoch: int) -> np.ndarray:
        b = self.spec.batch
        return epoch_rows(self.data.train, seed=self.spec.seed, epoch=epoch, rank=self.world.rank,
                          world=self.world.size, micro_batch=b.micro_batch_size,
                          group_by_length=b.group_by_length)

    def _seed_generators(self, seed: int) -> None:
        """Seed the random generators this rank draws from: the CPU's, and its own GPU's.

        Not ``torch.manual_seed``: it also queues a seed for every other device type torch
        knows (CUDA, XPU, MTIA) that is not initialised, capturing the Python stack for each,
        which costs about half a millisecond per micro batch; the draws are the same."""
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def _positions(self, positions: np.ndarray | None) -> dict[str, torch.Tensor]:
        """``position_ids`` of chat data (they restart at each packed conversation)."""
        if positions is None:
            return {}
        return {"position_ids": torch.from_numpy(np.ascontiguousarray(positions)).to(self.device)}

    def _inputs(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        return t if self.task == "causal-lm" else t.to(self.input_dtype)

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y)).to(self.device)

    def _progress_bar(self) -> Any:
        if not (self.world.is_main and self.spec.logging.progress_bar and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.progress.step, unit="step", dynamic_ncols=True)

    def _log_train(self, local_loss: float, rate: float) -> None:
        values = self.criterion.train_values(local_loss)
        loss = values["loss"]
        self.last_train_loss = loss
        if self.log is not None:
            step, epoch = self.progress.step, self.progress.epoch
            lr = float(self.engine.get_lr()[0])
            self.log.write("train", step, values, epoch=epoch, lr=lr, samples_per_s=round(rate, 2))
            if self.print_progress:
                print(f"lmspec: step {step}/{self.total_steps} epoch {epoch} loss {loss:.4f}"
                      f"{self.criterion.progress(values)} lr {lr:.3g} {rate:.0f} samples/s", flush=True)

    def _validate(self) -> None:
        v, p = self.spec.validation, self.progress
        if len(self.data.validation) == 0:
            return
        values = self.evaluate_split(self.data.validation, v.metrics, max_samples=v.max_samples,
                                     name="validation")
        self.last_validation = values
        if self.log is not None:
            self.log.write("validation", p.step, values, epoch=p.epoch)
        es = v.early_stopping
        if es is None:
            return
        value = values.get(es.metric)
        if value is None:
            value = self.evaluate_split(self.data.validation, [es.metric],
                                        max_samples=v.max_samples)[es.metric]
        better = p.best is None or (
            value < p.best - es.min_delta if es.mode == "min" else value > p.best + es.min_delta)
        if better:
            p.best, p.bad_validations = value, 0
        else:
            p.bad_validations += 1
            if p.bad_validations >= es.patience:
                p.stopped_early = True
                if self.log is not None:
                    self.log.event("earlyStop", p.step, metric=es.metric, best=p.best)
                if self.world.is_main:
                    print(f"lmspec: early stopping at step {p.step}: validation {es.metric} "
                          f"has not improved for {es.patience} validations (best {p.best:.6g})")

    def _save_checkpoint(self) -> None:
        if self.run_state.save(self.engine, self.progress) and self.log is not None:
            self.log.event("checkpoint", self.progress.step)

    # --- evaluate ------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_split(self, split: Any, metrics: list[str], *, max_samples: int | str = "all",
                       name: str = "") -> dict[str, float]:
        """Metrics of ``max_samples`` rows of a split (evenly spaced, the same whatever the
        world size), each rank taking every ``world``-th of them; reduced across ranks."""
        self.engine.eval()
        mb = self.spec.batch.micro_batch_size
        from ..data.split import spaced_rows

        chosen = spaced_rows(len(split), max_samples)
        idx = chosen[self.world.rank::self.world.size]
        # Every rank runs the same number of forward passes: ZeRO-3 gathers parameters
        # collectively inside forward, so a rank with fewer rows runs a discarded pass.
        per_rank = math.ceil(len(chosen) / self.world.size)
        batches = math.ceil(per_rank / mb)
        started = time.perf_counter()
        bar = self._eval_bar(name, batches)
        key = next((n for n in ("train", "validation", "test") if getattr(self.data, n) is split), "")
        tally = self.criterion.tally(key)
        for b in range(batches):
            rows = idx[b * mb:(b + 1) * mb]
            use = rows if len(rows) else chosen[:1]
            batch = split.batch(use)
            out = self.engine(self._inputs(batch.inputs), **self._positions(batch.positions))
            if len(rows):
                tally.add(out, self._targets(batch.targets), rows)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        self.engine.train()
        values = tally.values(metrics)
        if self.world.is_main and name:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"lmspec: {name} at step {self.progress.step}: {shown} ({len(chosen)} of {len(split)} "
                  f"samples, {time.perf_counter() - started:.1f}s)", flush=True)
        return values

    def _eval_bar(self, name: str, batches: int) -> Any:
        # A bar for evaluations long enough to wonder about, on a terminal only (the run log
        # gets one line per evaluation instead).
        if not (name and batches >= 20 and self.world.is_main and self.spec.logging.progress_bar
                and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=batches, desc=name, unit="batch", leave=False, dynamic_ncols=True)

    def evaluate(self) -> dict[str, float]:
        """The test metrics (``evaluation.maxSamples`` of the test split)."""
        ev = self.spec.evaluation
        test = self.data.test
        values: dict[str, float] = {}
        if ev.enabled and len(test) > 0:
            values = self.evaluate_split(test, ev.metrics, max_samples=ev.max_samples, name="test")
            if self.log is not None:
                self.log.write("test", self.progress.step, values)
        return values

    @torch.no_grad()
    def save_check_sample(self) -> None:
        """Outputs of the trained engine on a few test rows, kept by rank 0 beside the export
        to check that the export reproduces them (every rank runs the forward passes, as ZeRO-3
        requires). Bounded: a language model keeps the argmax of every position and the logits
        of a few positions, never whole-vocabulary logits of whole rows."""
        source = self.data.test if len(self.data.test) > 0 else self.data.train
        lm = self.task == "causal-lm"
        rows = np.arange(min(len(source), CHECK_ROWS if lm else PREDICTION_ROWS))
        self.engine.eval()
        inputs, positions, argmax, logits = [], [], [], []
        at = check_positions(source.length) if lm else None
        # A language model's rows one at a time: a row's logits (length × vocabulary) are the
        # most ever held. Rows are sequenceLength wide, so they stack.
        for r in [np.array([r]) for r in rows] if lm else [rows]:
            batch = source.batch(r, pad_to_longest=False) if lm else source.batch(r)
            out = self.engine(self._inputs(batch.inputs), **self._positions(batch.positions)).float()
            inputs.append(batch.inputs)
            if batch.positions is not None:
                positions.append(batch.positions)
            if at is None:
                logits.append(out.cpu().numpy())
            else:
                argmax.append(out.argmax(-1).to(torch.int32).cpu().numpy())
                logits.append(out[:, at].cpu().numpy())
        self.engine.train()
        if not self.world.is_main:
            return
        write_check_sample(self.run_dir, CheckSample(
            np.concatenate(inputs), np.concatenate(positions) if positions else None, np.concatenate(logits),
            at, np.concatenate(argmax) if at is not None else None))

    # --- save ----------------------------------------------------------------------------------

    def save(self) -> Path:
        """The export (collective: every rank gathers the weights; rank 0 writes them)."""
        module = self.engine.module
        gathered = self.exporter.gather(module)
        if not self.world.is_main:
            return self.exporter.out
        # ZeRO-3 stays configured for transformers while this object lives; the export loads
        # and saves plain, whole models on rank 0.
        self._hf_ds_config = None
        self.export_stats = self.exporter.write(module, gathered)
        return self.exporter.out

    def finish(self, out: Path, metrics: dict[str, float]) -> None:
        """Rank 0: the test metrics into the export's ``export.json``, and ``summary.json``."""
        if not self.world.is_main:
            return
        from ..model.export import record_metrics

        record_metrics(out, metrics)
        p = self.progress
        # Completed passes over the training split (2.86, not 2): the micro batches trained.
        epochs = round(p.epoch + p.micro / self.micro_per_epoch, 4)
        summary: dict[str, Any] = {"parameters": self.params, "steps": p.step, "epochs": epochs,
                                   "trainLoss": self.last_train_loss,
                                   "validation": self.last_validation,
                                   "stoppedEarly": p.stopped_early,
                                   "firstStepSeconds": self.first_step_s,
                                   "trainSeconds": self.train_seconds, "test": metrics}
        if self.export_stats is not None:
            summary["export"] = self.export_stats
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.log is not None:
            self.log.trackers.artifacts(self.run_dir)

    # --- entry point ---------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        self.setup()
        failed = True
        try:
            started = time.perf_counter()
            self.train()
            # The export is written before anything else is computed: a failure in the final
            # evaluation must not cost the trained model.
            out = self.save()
            metrics = self.evaluate()
            self.finish(out, metrics)
            self.save_check_sample()
            if self.world.is_main:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                print(f"lmspec: trained {self.progress.step} steps in {time.perf_counter() - started:.1f}s"
                      + (f"; test {shown}" if shown else "") + f"; exported to {out}")
            failed = False
            return metrics
        finally:
            if self.log is not None:
                self.log.close(failed=failed)
