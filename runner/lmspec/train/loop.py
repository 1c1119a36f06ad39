"""The training recipe: setup → train → evaluate → save, on every rank.

>>> Recipe(job_manifest, manifests, run_dir, resume=False).run()

What it does, in order:

- setup: join the process group; prepare the data (this rank's shard); build the model (inside
  ``deepspeed.zero.Init`` at ZeRO stage 3, with the weights it gets at any other stage); hand it
  to DeepSpeed with the generated config and the schedule's ``LambdaLR``; write ``lock.json``;
  resume from the newest complete checkpoint.
- train: epochs of seeded, per-epoch permutations of the training split, sharded across ranks;
  augmentation on training batches; gradient accumulation, clipping, warm-up and decay happen
  inside DeepSpeed; metrics every ``logging.interval`` steps; validation every
  ``validation.interval`` steps (or each epoch) with early stopping; checkpoints every
  ``checkpointing.interval`` steps and at the end.
- evaluate: test-split metrics, reduced across ranks; predictions on the first test rows
  (``final_predictions.npy`` beside ``final_inputs.npy``) to check the export against.
- save: fp32 weights gathered from any ZeRO stage, exported by rank 0 to ``<run>/export``. A
  language model's full weights are streamed: gathered one parameter at a time and written into
  Hugging Face safetensors shards as they fill, so no rank ever holds the whole model.

Determinism: every random draw is derived from (seed, epoch, micro batch, rank), never from a
generator's running state, so a resumed run sees exactly the batches, augmentation noise and
dropout masks the uninterrupted run would have.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._version import __version__
from ..model.build import CausalLM, build_model
from ..model.pretrained import BaseError, ResolvedBase
from ..standard import Dataset, Model, Pretrained, TrainingJob
from ..validator.core import Manifest, ManifestSet
from . import checkpoint
from .dsconfig import deepspeed_config, lr_lambda
from .metrics import MetricsLog, Sums, compute_loss
from .preference import (
    PREFERENCE_LOSSES,
    REFERENCE_FILE,
    Objective,
    Window,
    disable_dropout,
    reference_logps,
    sequence_logps,
)
from .tracking import open_trackers
from .world import World

if TYPE_CHECKING:
    from ..model.hf_shards import ShardStats

PREDICTION_ROWS = 64
"""Test rows whose final predictions are saved beside the export, to check it reproduces them."""
CHECK_ROWS = 4
"""The same for a language model, whose outputs are a row's length × its vocabulary."""
CHECK_POSITIONS = 4
"""Positions of each such row whose whole-vocabulary logits are kept (the argmax of every
position is kept too)."""


def check_positions(length: int) -> np.ndarray:
    """The positions of a row whose logits the export check keeps: spread over the row, the
    first and the last included."""
    return np.unique(np.linspace(0, length - 1, num=min(CHECK_POSITIONS, length)).round().astype(np.int64))


def _group_by_length(order: np.ndarray, lengths: np.ndarray, group: int, seed: int) -> np.ndarray:
    """Rows in windows of 64 groups, sorted by length within each window (longest first);
    the groups of a window are then put in a seeded order, so a batch's rows have similar
    lengths while the epoch still mixes long and short batches."""
    from ..data.split import permutation

    window = group * 64
    out = []
    for w, start in enumerate(range(0, len(order), window)):
        part = order[start:start + window]
        part = part[np.argsort(-lengths[part], kind="stable")]
        whole = len(part) // group * group
        groups = part[:whole].reshape(-1, group)
        out.append(groups[permutation(len(groups), seed + w)].reshape(-1))
        out.append(part[whole:])
    return np.concatenate(out) if out else order


def epoch_rows(split: Any, *, seed: int, epoch: int, rank: int, world: int, micro_batch: int,
               group_by_length: bool) -> np.ndarray:
    """A rank's training rows of an epoch, in order: a seeded permutation of the split, dealt
    to the ranks in turn (``rank, rank + world, …`` of the first ``len // world × world``, so
    every rank gets as many). With ``group_by_length``, each window of 64 global micro batches
    is sorted by row length and its micro batches shuffled. Micro batch ``m`` of the epoch is
    ``rows[m * micro_batch:(m + 1) * micro_batch]``."""
    from ..data.split import permutation

    order = permutation(len(split), _seed(seed, epoch))
    order = order[:len(order) // world * world]
    lengths = getattr(split, "lengths", None)
    if group_by_length and lengths is not None:
        order = _group_by_length(order, np.asarray(lengths), micro_batch * world, _seed(seed, epoch, 2))
        # A global micro batch is consecutive: rank r takes its r-th slice.
        full = len(order) // (micro_batch * world) * (micro_batch * world)
        head = order[:full].reshape(-1, world, micro_batch)[:, rank, :].reshape(-1)
        return np.concatenate([head, order[full:][rank::world]])
    return order[rank::world]


FAULT_ENV = "LMSPEC_FAULT_AT"
"""Fault injection for resume and failure tests: ``RANK:STEP`` kills that rank (SIGKILL) just
after optimizer step STEP. Never set in normal use."""


def _checkpoint_layout(lm: Any) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    """What ``save_pretrained`` does to the weights before writing them: transformers' reverse
    of the conversions some architectures apply when loading (renamed or fused weights), done
    per shard, as transformers does for offloaded weights. A no-op for most models."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without load-time weight conversions
        return None

    def convert(shard: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = revert_weight_conversion(lm, shard)
        return out

    return convert


class TrainError(Exception):
    """A user-facing problem found while training (printed without a traceback)."""


def _seed(*parts: int) -> int:
    # A stable 63-bit mix of the parts (Python's hash() is salted per process).
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) % 2**64
    return h % 2**63


def copy_into_partitioned(model: torch.nn.Module, reference: torch.nn.Module | None) -> None:
    """Copy ``reference``'s parameters and buffers (given on rank 0 only) into a model built under
    ``deepspeed.zero.Init``, one module at a time so that only one module is ever gathered whole.
    Collective: every rank calls it."""
    import deepspeed

    ref = dict(reference.named_modules()) if reference is not None else None
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            if ref is None:
                continue
            source = ref[name]
            with torch.no_grad():
                for (pname, p), q in zip(module.named_parameters(recurse=False),
                                         source.parameters(recurse=False), strict=True):
                    if p.shape != q.shape:
                        raise TrainError(f"{name}.{pname}: built as {tuple(p.shape)} under ZeRO-3, "
                                         f"{tuple(q.shape)} without it")
                    p.copy_(q)
                for b, c in zip(module.buffers(recurse=False), source.buffers(recurse=False), strict=True):
                    b.copy_(c)


class Recipe:
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
        self.run_dir = run_dir
        self.resume = resume or self.spec.checkpointing.resume
        self.world = World.from_env()
        self.ckpt_dir = run_dir / "checkpoints"
        # Progress through the data; restored from a checkpoint on resume.
        self.step = 0
        self.epoch = 0
        self.micro = 0  # next micro batch within the epoch
        self.best: float | None = None
        self.bad_validations = 0
        self.stopped_early = False
        self.log: MetricsLog | None = None
        self.resumed_at: int | None = None
        self.first_step_s: float | None = None
        self.print_progress = False
        self.train_seconds = 0.0
        self.base: ResolvedBase | None = None
        self.manifests = manifests
        self.params: dict[str, int] = {}
        self.partitioned_load = False
        self._hf_ds_config: Any = None
        self.export_stats: dict[str, int] | None = None
        self.last_train_loss: float | None = None
        """The mean training loss of the last logging window (for summary.json)."""
        self.last_validation: dict[str, float] | None = None
        # Preference tuning (loss dpo or simpo): its objective, the statistics of the current
        # logging window, and DPO's reference log-probabilities per split.
        self.objective = Objective.of(self.spec.loss) if self.spec.loss.type in PREFERENCE_LOSSES else None
        self.pref_window = Window()
        self.reference: dict[str, np.ndarray] = {}
        self.reference_seconds = 0.0
        fault = os.environ.get(FAULT_ENV, "")
        self.fault = tuple(int(v) for v in fault.split(":")) if fault else None

    # --- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        spec = self.spec
        if self.resume:
            # DeepSpeed fails deep inside loading a checkpoint from another world size or ZeRO
            # stage. `lmspec run` checks before it launches; this guards ranks started otherwise,
            # before anything (lock.json included) is written.
            mismatch = checkpoint.resume_mismatch(self.ckpt_dir, world_size=self.world.size,
                                                  zero_stage=spec.zero.stage)
            if mismatch is not None:
                raise TrainError(mismatch)
        cpu = spec.resources.accelerator == "cpu"
        self.world.init(backend="gloo" if cpu else "nccl")
        self.device = torch.device("cpu") if cpu else torch.device("cuda", self.world.local_rank)
        if not cpu:
            torch.cuda.set_device(self.device)
        self.ds_config = deepspeed_config(spec, self.job_manifest.base_dir)
        self.shard_bytes = self._shard_bytes()
        self._resolve_base()
        self._setup_data()
        if self.resume:
            self._check_same_data()
        self._setup_model()
        self._check_vocabulary()
        self._setup_engine()
        if self.world.is_main:
            self._write_lock()
        if self.objective is not None and self.objective.needs_reference:
            self._setup_reference()  # from the starting weights: before a checkpoint is loaded
        if self.resume:
            self._load_checkpoint()
        if self.world.is_main:
            trackers = open_trackers(spec.logging, self.run_dir, job_name=self.job.metadata.name)
            self.log = MetricsLog(self.run_dir / "metrics.jsonl", trackers, keep_until=self.step)
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
        # Chat data masks tokens out of the loss: it is normalised by the trained tokens of the
        # whole optimizer step (all micro batches, all ranks), not averaged per micro batch.
        self.token_weighted = bool(self.data.train.token_weighted)
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
        if self.objective is not None:
            disable_dropout(model)
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
                                   bnb_4bit_compute_dtype=self.input_dtype_for_spec(),
                                   bnb_4bit_use_double_quant=True)  # type: ignore[no-untyped-call]
        lm = AutoModelForCausalLM.from_pretrained(str(self.base.directory), quantization_config=quant,
                                                  device_map={"": self.device}, local_files_only=True)
        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=False)  # type: ignore[no-untyped-call]
        return CausalLM(lm)

    def input_dtype_for_spec(self) -> torch.dtype:
        prec = self.spec.precision
        return torch.bfloat16 if prec.bf16.enabled else torch.float16 if prec.fp16.enabled else torch.float32

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
        prec = self.spec.precision
        self.input_dtype = torch.bfloat16 if prec.bf16.enabled else torch.float16 if prec.fp16.enabled \
            else torch.float32

    def _write_lock(self) -> None:
        import deepspeed

        lock = {
            "lmspec": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "deepspeed": deepspeed.__version__,
            "seed": self.spec.seed,
            "worldSize": self.world.size,
            "dataFingerprint": self.data.fingerprint,
            "dataFiles": self._lock_files(),
            "dataCache": self._lock_path(self.data.cache) if self.data.cache is not None else None,
            "deepspeedConfig": self.ds_config,
            "parameters": self.params,
        }
        if self.base is not None:
            lock["base"] = {**self.base.lock(), "loadedPartitioned": self.partitioned_load}
            lock["base"]["directory"] = self._lock_path(Path(lock["base"]["directory"]))
        if self.data.counts is not None:
            lock["dataCounts"] = self.data.counts
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "lock.json").write_text(json.dumps(lock, indent=2) + "\n")

    def _lock_path(self, path: Path) -> str:
        """A path as ``lock.json`` writes every path: relative to the run directory (the one
        holding ``lock.json``), with ``/`` separators, so a project moved whole stays valid."""
        return Path(os.path.relpath(path.resolve(), self.run_dir.resolve())).as_posix()

    def _lock_files(self) -> dict[str, str]:
        """``dataFiles``: the digest of each file the data was prepared from, by its lock path."""
        base = self.data_manifest.base_dir
        return {self._lock_path(Path(k) if Path(k).is_absolute() else base / k): v for k, v in self.data.files.items()}

    def _check_same_data(self) -> None:
        """A resumed run must see the data its checkpoints were trained on."""
        try:
            before = json.loads((self.run_dir / "lock.json").read_text())
        except (OSError, ValueError):
            return
        was = before.get("dataFiles") if isinstance(before, dict) else None
        if not isinstance(was, dict):
            return
        now = self._lock_files()
        changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
        if changed:
            raise TrainError(
                f"cannot resume {self.run_dir}: the data changed since the run started "
                f"({', '.join(changed[:5])}{' …' if len(changed) > 5 else ''} differ from lock.json); "
                "restore the data, or train from scratch into a new directory (--output)")

    def _load_checkpoint(self) -> None:
        # Every digest is checked before DeepSpeed deserialises anything; a damaged checkpoint
        # is passed over for the newest intact one, never trained on.
        tag, skipped = checkpoint.newest_intact(self.ckpt_dir)
        if self.world.is_main:
            for problem in skipped:
                print(f"lmspec: warning: skipping a damaged checkpoint: {problem}")
        if tag is None:
            if skipped:
                raise TrainError(f"no intact checkpoint to resume in {self.ckpt_dir} (see above); "
                                 "train from scratch into a new directory (--output)")
            if self.world.is_main:
                print(f"lmspec: no complete checkpoint in {self.ckpt_dir}; starting from scratch")
            return
        if skipped and self.world.is_main:
            print(f"lmspec: falling back to the newest intact checkpoint, {self.ckpt_dir / tag}")
        import pickle

        try:
            with checkpoint.safe_loading(self.engine):
                _, state = self.engine.load_checkpoint(str(self.ckpt_dir), tag=tag)
        except pickle.UnpicklingError as exc:
            raise TrainError(f"refusing to load {self.ckpt_dir / tag}: it holds pickled objects other "
                             f"than tensors and DeepSpeed's own state ({str(exc).splitlines()[0]})") from None
        # The partitioned ZeRO optimizers restore their states but not the param groups' current
        # learning rate; take it from the restored schedule, or the first step would use the
        # rate the schedule set at construction.
        sched = self.engine.lr_scheduler
        for group, lr in zip(sched.optimizer.param_groups, sched.get_last_lr(), strict=True):
            group["lr"] = lr
        self.step, self.epoch, self.micro = state["step"], state["epoch"], state["micro"]
        self.best, self.bad_validations = state["best"], state["bad_validations"]
        # A run that stopped early ends where it stopped, however often it is resumed.
        self.stopped_early = bool(state.get("stopped_early", False))
        self.resumed_at = self.step
        if self.world.is_main:
            print(f"lmspec: resumed from {self.ckpt_dir / tag} (step {self.step})")

    # --- train ---------------------------------------------------------------------------------

    def train(self) -> None:
        spec, engine = self.spec, self.engine
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
        step_tokens = 0
        train = self.data.train
        while self.epoch < spec.stopping.epochs and not self._done():
            if order_epoch != self.epoch:
                order, order_epoch = self._epoch_rows(self.epoch), self.epoch
            batch = train.batch(order[self.micro * mb:(self.micro + 1) * mb])
            x, y = batch.inputs, batch.targets
            if self.token_weighted and self.micro % gas == 0:
                step_tokens = self._step_tokens(train.trained_tokens(order[self.micro * mb:(self.micro + gas) * mb]))
            # Derived from (seed, epoch, micro batch, rank) only: a resumed run draws the same.
            if self.task != "causal-lm":
                rng = np.random.default_rng(_seed(spec.seed, self.epoch, self.micro, self.world.rank))
                x = self.data.transform.augment(x, rng)
            self._seed_generators(_seed(spec.seed, self.epoch, self.micro, self.world.rank, 1))
            out = engine(self._inputs(x), **self._positions(batch.positions))
            if self.objective is not None:
                rows = order[self.micro * mb:(self.micro + 1) * mb]
                loss = self._preference_loss(out, y, rows, "train", self.pref_window)
            elif self.token_weighted:
                # DeepSpeed divides by gradientAccumulationSteps and averages over ranks; this
                # scale makes the step's gradient that of the mean over its trained tokens.
                scale = gas * self.world.size / max(step_tokens, 1)
                loss = compute_loss(out, self._targets(y), spec.loss, reduction="sum") * scale
            else:
                loss = compute_loss(out, self._targets(y), spec.loss)
            engine.backward(loss)
            engine.step()
            self.micro += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainError(
                    f"the training loss is {loss_value} at step {self.step + 1} (epoch {self.epoch}); "
                    "the weights are no longer usable, so the run stops without exporting. Lower "
                    "optimizer.lr, enable gradient clipping, or check the data for extreme values")
            window_loss += loss_value
            window_micro += 1
            if self.micro % gas:
                continue
            # An optimizer step is complete.
            self.step += 1
            if self.first_step_s is None:
                self.first_step_s = time.perf_counter() - started
            if self.micro == self.micro_per_epoch:
                self.epoch, self.micro = self.epoch + 1, 0
            samples = window_micro * mb * self.world.size
            rate = samples / max(time.perf_counter() - window_start, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", samples_s=f"{rate:.0f}")
            if self.step % spec.logging.interval == 0 or self.step == self.total_steps:
                self._log_train(window_loss / window_micro, rate)
                window_loss, window_micro, window_start = 0.0, 0, time.perf_counter()
            interval = spec.validation.interval
            if (interval and self.step % interval == 0) or (interval is None and self.micro == 0):
                self._validate()
            every = spec.checkpointing.interval
            if every and self.step % every == 0 and not self._done():
                self._save_checkpoint()
            if self.fault is not None and self.fault == (self.world.rank, self.step):
                os.kill(os.getpid(), 9)
        self.train_seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        self._save_checkpoint()

    def _setup_reference(self) -> None:
        """DPO's reference log-probabilities: the starting model's, of every training pair and
        of the validation and test pairs that are evaluated. Computed once and kept in the run
        directory, so a resumed run (whose weights are no longer the starting ones) reads them."""
        from ..data.split import spaced_rows

        path = self.run_dir / REFERENCE_FILE
        names = {"train": "all", "validation": self.spec.validation.max_samples,
                 "test": self.spec.evaluation.max_samples}
        splits = {n: getattr(self.data, n) for n in names}
        # Only a resumed run reads them back: a fresh run in the same directory may start from
        # other weights (a base trained again), so it scores the pairs again.
        if self.resume and path.is_file():
            with np.load(path) as saved:
                self.reference = {n: saved[n] for n in names if n in saved.files}
            if all(n in self.reference and len(self.reference[n]) == len(splits[n]) for n in names):
                return
        if self.resume and checkpoint.complete_tags(self.ckpt_dir):
            raise TrainError(f"{path} is missing or does not match the data: DPO's reference "
                             "log-probabilities come from the starting weights, which a checkpoint no "
                             "longer holds; start the run afresh (without resume)")
        assert self.objective is not None
        started = time.perf_counter()
        self.engine.eval()
        for n, split in splits.items():
            rows = spaced_rows(len(split), names[n]) if len(split) else np.zeros(0, dtype=np.int64)
            self.reference[n] = reference_logps(
                self.engine, split, rows, micro_batch=self.spec.batch.micro_batch_size,
                rank=self.world.rank, world=self.world.size, to_device=self._inputs,
                average=self.objective.average)
        self.engine.train()
        self.reference_seconds = time.perf_counter() - started
        if self.world.is_main:
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **self.reference)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
            os.replace(tmp, path)
            pairs = sum(int(np.isfinite(r[:, 0]).sum()) for r in self.reference.values())
            print(f"lmspec: reference log-probabilities of {pairs:,} pairs from the starting model "
                  f"({time.perf_counter() - started:.1f}s), kept in {path.name}", flush=True)

    def _preference_loss(self, out: torch.Tensor, targets: np.ndarray, rows: np.ndarray, split: str,
                         window: Window) -> torch.Tensor:
        assert self.objective is not None
        logps = sequence_logps(out, self._targets(targets), average=self.objective.average)
        ref = torch.from_numpy(self.reference[split][rows]) if self.objective.needs_reference else None
        loss, stats = self.objective.loss(logps, ref)
        window.add(loss, stats)
        return loss

    def _done(self) -> bool:
        return self.stopped_early or self.step >= self.total_steps

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

    def _step_tokens(self, local: int) -> int:
        if self.world.size == 1:  # nothing to add up, and a collective costs a thread handoff
            return local
        import torch.distributed as dist

        t = torch.tensor([local], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t)

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

        return tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True)

    def _log_train(self, local_loss: float, rate: float) -> None:
        loss = local_loss
        values: dict[str, float] = {}
        if self.objective is not None:
            values = self.pref_window.values(world_size=self.world.size)
            self.pref_window = Window()
            loss = values["loss"]
        elif self.world.size > 1:
            import torch.distributed as dist

            t = torch.tensor([local_loss], dtype=torch.float64)
            dist.all_reduce(t)
            loss = float(t) / self.world.size
        self.last_train_loss = loss
        if self.log is not None:
            lr = float(self.engine.get_lr()[0])
            self.log.write("train", self.step, values or {"loss": loss},
                           epoch=self.epoch, lr=lr, samples_per_s=round(rate, 2))
            if self.print_progress:
                extra = f" reward accuracy {values['rewardAccuracy']:.3f}" if values else ""
                print(f"lmspec: step {self.step}/{self.total_steps} epoch {self.epoch} loss {loss:.4f}{extra} "
                      f"lr {lr:.3g} {rate:.0f} samples/s", flush=True)

    def _validate(self) -> None:
        v = self.spec.validation
        if len(self.data.validation) == 0:
            return
        values = self.evaluate_split(self.data.validation, v.metrics, max_samples=v.max_samples,
                                     name="validation")
        self.last_validation = values
        if self.log is not None:
            self.log.write("validation", self.step, values, epoch=self.epoch)
        es = v.early_stopping
        if es is None:
            return
        value = values.get(es.metric)
        if value is None:
            value = self.evaluate_split(self.data.validation, [es.metric],
                                        max_samples=v.max_samples)[es.metric]
        better = self.best is None or (
            value < self.best - es.min_delta if es.mode == "min" else value > self.best + es.min_delta)
        if better:
            self.best, self.bad_validations = value, 0
        else:
            self.bad_validations += 1
            if self.bad_validations >= es.patience:
                self.stopped_early = True
                if self.log is not None:
                    self.log.event("earlyStop", self.step, metric=es.metric, best=self.best)
                if self.world.is_main:
                    print(f"lmspec: early stopping at step {self.step}: validation {es.metric} "
                          f"has not improved for {es.patience} validations (best {self.best:.6g})")

    def _save_checkpoint(self) -> None:
        if checkpoint.tag_for(self.step) in checkpoint.complete_tags(self.ckpt_dir):
            return
        state = {"step": self.step, "epoch": self.epoch, "micro": self.micro,
                 "best": self.best, "bad_validations": self.bad_validations,
                 "stopped_early": self.stopped_early,
                 "world_size": self.world.size, "zero_stage": self.spec.zero.stage}
        checkpoint.save(self.engine, self.ckpt_dir, step=self.step, state=state,
                        keep_last=self.spec.checkpointing.keep_last)
        if self.log is not None:
            self.log.event("checkpoint", self.step)

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
        sums = Sums()
        pref = Window() if self.objective is not None else None
        key = next((n for n in ("train", "validation", "test") if getattr(self.data, n) is split), "")
        for b in range(batches):
            rows = idx[b * mb:(b + 1) * mb]
            use = rows if len(rows) else chosen[:1]
            batch = split.batch(use)
            out = self.engine(self._inputs(batch.inputs), **self._positions(batch.positions))
            if len(rows) and pref is not None:
                self._preference_loss(out, batch.targets, rows, key, pref)
            elif len(rows):
                sums.add(out, self._targets(batch.targets), self.task)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        self.engine.train()
        # A preference loss reports its loss and every reward statistic.
        values = pref.values(world_size=self.world.size) if pref is not None else sums.reduce().values(metrics)
        if self.world.is_main and name:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            print(f"lmspec: {name} at step {self.step}: {shown} ({len(chosen)} of {len(split)} samples, "
                  f"{time.perf_counter() - started:.1f}s)", flush=True)
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
                self.log.write("test", self.step, values)
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
        np.save(self.run_dir / "final_inputs.npy", np.concatenate(inputs))
        if positions:
            np.save(self.run_dir / "final_positions.npy", np.concatenate(positions))
        np.save(self.run_dir / "final_predictions.npy", np.concatenate(logits))
        if at is not None:
            np.save(self.run_dir / "final_prediction_positions.npy", at)
            np.save(self.run_dir / "final_argmax.npy", np.concatenate(argmax))

    # --- save ----------------------------------------------------------------------------------

    @staticmethod
    def _shard_bytes() -> int:
        """The export's shard size, read before training so that a bad setting is refused at
        the start, not after the last step."""
        from ..model.hf_shards import ShardError, max_shard_bytes

        try:
            return max_shard_bytes()
        except ShardError as exc:
            raise TrainError(str(exc)) from None

    def _gather(self, p: torch.Tensor) -> torch.Tensor | None:
        """One parameter, whole and fp32 (collective: every rank calls it in step): a copy on
        rank 0, None on the others. Trained parameters come from the optimizer's fp32 master
        copy; frozen ones (the base under LoRA) are gathered from their ZeRO-3 partitions."""
        import deepspeed
        from deepspeed.utils import safe_get_full_fp32_param

        keep = self.world.is_main
        full = safe_get_full_fp32_param(p) if p.requires_grad else None
        if full is None and hasattr(p, "ds_id"):  # a frozen ZeRO-3 partition
            with deepspeed.zero.GatheredParameters([p]):
                full = p.detach().float().cpu().clone() if keep else None
        elif full is None:  # not managed by a ZeRO or bf16 optimizer: the parameter is fp32
            full = p.detach()
        return full.detach().float().cpu().clone() if keep and full is not None else None

    def _buffers(self, module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor | None]]:
        """The buffers a state dict holds (never partitioned)."""
        persistent = set(module.state_dict())
        for name, b in module.named_buffers():
            if name in persistent:
                yield name, (b.detach().cpu().clone() if self.world.is_main else None)

    def full_weights(self, *, trainable_only: bool = False) -> Iterator[tuple[str, torch.Tensor | None]]:
        """Each fp32 weight, whole, one at a time, from any ZeRO stage: ``(name, tensor)`` on
        rank 0, ``(name, None)`` on the other ranks. Collective: every rank must consume it to
        the end, in step. Nothing is kept between items, so a caller that writes each weight
        out holds one whole parameter at a time, not the model."""
        module = self.engine.module
        for name, p in module.named_parameters():
            if trainable_only and not p.requires_grad:
                continue
            yield name, self._gather(p)
        if not trainable_only:
            yield from self._buffers(module)

    def merged_weights(self) -> Iterator[tuple[str, torch.Tensor | None]]:
        """The base's weights with the LoRA update merged in, one at a time, named as in the
        base's checkpoint (collective, like :meth:`full_weights`). Each adapted layer's weight
        is gathered with its two LoRA factors and merged as peft's ``merge_and_unload`` does,
        ``W + scaling · transpose(B @ A)``, from the fp32 copies; ``modulesToSave`` layers give
        their trained copy."""
        from peft.tuners.lora import LoraLayer
        from peft.utils.other import transpose

        peft_model: Any = self.engine.module.lm
        adapter = peft_model.active_adapter
        layers: dict[str, Any] = {n: m for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
        lead = "base_model.model."
        saved = f".modules_to_save.{adapter}."

        def base_name(name: str) -> str:
            name = name[len(lead):] if name.startswith(lead) else name
            return name.replace(".base_layer.", ".").replace(saved, ".")

        for name, p in peft_model.named_parameters():
            owner, _, leaf = name.rpartition(".")
            if ".lora_" in name or ".original_module." in name:  # merged below / replaced by the copy
                continue
            layer = layers.get(owner.removesuffix(".base_layer"))
            if layer is None or leaf != "weight" or not owner.endswith(".base_layer"):
                yield base_name(name), self._gather(p)
                continue
            w = self._gather(p)
            a = self._gather(layer.lora_A[adapter].weight)
            b = self._gather(layer.lora_B[adapter].weight)
            if w is not None and a is not None and b is not None:
                w += transpose(b @ a, layer.fan_in_fan_out) * layer.scaling[adapter]
            yield base_name(name), w
        for name, t in self._buffers(peft_model):
            if ".lora_" not in name and ".original_module." not in name:
                yield base_name(name), t

    def full_state_dict(self, *, trainable_only: bool = False) -> dict[str, torch.Tensor]:
        """fp32 weights, whole, from any ZeRO stage (collective; complete on rank 0 only, empty
        on the others). Holds the whole model: for small models and adapters."""
        return {name: t for name, t in self.full_weights(trainable_only=trainable_only) if t is not None}

    def stream_hf_weights(self, module: CausalLM, *, merged: bool = False) -> tuple[Path, ShardStats] | None:
        """Write the language model's weights (``merged``: the base with the LoRA update merged
        in) as Hugging Face safetensors shards, streamed (collective): each weight is gathered on
        every rank in turn and rank 0 appends it to the current shard, writing the shard out when
        it is full; the other ranks keep nothing. Returns, on rank 0, the staging directory
        holding the shards and what was written."""
        import shutil
        import tempfile

        from ..model.hf_shards import ShardWriter

        wrapped: Any = module.lm
        lm: Any = wrapped.get_base_model() if merged else wrapped
        staging: Path | None = None
        writer: ShardWriter | None = None
        if self.world.is_main:
            staging = Path(tempfile.mkdtemp(prefix=".export-weights.", dir=self.run_dir))
            writer = ShardWriter(staging, self.shard_bytes, convert=_checkpoint_layout(lm))
        prefix = "lm."
        weights = self.merged_weights() if merged else (
            (name[len(prefix):] if name.startswith(prefix) else name, t) for name, t in self.full_weights())
        try:
            for name, tensor in weights:
                if writer is not None and tensor is not None:
                    writer.add(name, tensor)
                del tensor
            if writer is None or staging is None:
                return None
            return staging, writer.close()
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise

    def save(self) -> Path:
        import shutil

        from ..model.export import save_export

        out = self.run_dir / "export"
        module = self.engine.module
        write_hf = None
        streamed: tuple[Path, ShardStats] | None = None
        state: dict[str, torch.Tensor] | None = None
        adapter = self.spec.adapter
        if isinstance(module, CausalLM) and adapter is None:
            # Full weights are streamed into shards: no rank ever holds the whole model.
            streamed = self.stream_hf_weights(module)
        elif isinstance(module, CausalLM):
            assert adapter is not None
            state = self.full_state_dict(trainable_only=True)  # the adapter only: small
            if adapter.export_merged and adapter.type == "lora":
                # A 4-bit (qlora) base has no fp32 weights to gather: it is merged from the
                # base's files on rank 0 instead.
                streamed = self.stream_hf_weights(module, merged=True)
        else:
            state = self.full_state_dict()
        if not self.world.is_main:
            return out
        try:
            if isinstance(module, CausalLM):
                write_hf = self._hf_writer(module, state, streamed[0] if streamed else None,
                                           streamed[1].dtype if streamed else None)
            save_export(out, self.model_obj, state, self.data.transform.state_dict(),
                        job=self.job.metadata.name, metrics={}, input_width=self.input_width,
                        write_hf=write_hf)
        finally:
            if streamed is not None:
                shutil.rmtree(streamed[0], ignore_errors=True)
        if streamed is not None:
            stats = streamed[1]
            # The most weight bytes rank 0 held at once while exporting (the pending shard and
            # the parameter just gathered), against the size of all the weights.
            self.export_stats = {"shards": stats.shards, "weightBytes": stats.total_bytes,
                                 "peakHeldBytes": stats.peak_held_bytes}
            print(f"lmspec: exported {stats.total_bytes} bytes of weights in {stats.shards} "
                  f"shard(s), holding at most {stats.peak_held_bytes} bytes at once")
        return out

    def finish(self, out: Path, metrics: dict[str, float]) -> None:
        """Rank 0: the test metrics into the export's ``export.json``, and ``summary.json``."""
        if not self.world.is_main:
            return
        from ..model.export import record_metrics

        record_metrics(out, metrics)
        # Completed passes over the training split (2.86, not 2): the micro batches trained.
        epochs = round(self.epoch + self.micro / self.micro_per_epoch, 4)
        summary: dict[str, Any] = {"parameters": self.params, "steps": self.step, "epochs": epochs,
                                   "trainLoss": self.last_train_loss,
                                   "validation": self.last_validation,
                                   "stoppedEarly": self.stopped_early,
                                   "firstStepSeconds": self.first_step_s,
                                   "trainSeconds": self.train_seconds, "test": metrics}
        if self.export_stats is not None:
            summary["export"] = self.export_stats
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.log is not None:
            self.log.trackers.artifacts(self.run_dir)

    def _tokenizer_dir(self) -> Path | None:
        """The Hugging Face tokenizer directory exported with the model: the pretrained base's,
        else the directory of the Dataset's ``tokenizer.json`` when it is a whole tokenizer
        directory (``tokenizer_config.json``, chat template), so special tokens and the chat
        template travel with a model trained from scratch."""
        from ..standard import Tokenize

        if self.base is not None:
            return self.base.directory
        for step in self.data_obj.spec.preprocessing:
            if isinstance(step, Tokenize) and step.tokenizer.type == "file":
                path = Path(step.tokenizer.path)
                directory = (path if path.is_absolute() else self.data_manifest.base_dir / path).parent
                if (directory / "tokenizer_config.json").is_file() and path.name == "tokenizer.json":
                    return directory
        return None

    def _hf_writer(self, module: CausalLM, state: dict[str, torch.Tensor] | None,
                   weights_dir: Path | None, weights_dtype: str | None = None) -> Any:
        """The function that writes the Hugging Face part of the export: the adapter in
        ``state`` (LoRA), the streamed weight shards in ``weights_dir`` (full fine-tuning, or
        the merged LoRA model) of type ``weights_dtype``, the config and the tokenizer."""
        from ..model.adapters import merge_adapter, save_adapter
        from ..model.hf_tokenizer import hf_tokenizer
        from ..model.pretrained import load_base_tokenizer

        adapter = self.spec.adapter
        base = self.base
        # ZeRO-3 stays configured for transformers while this object lives; the export loads
        # and saves plain, whole models on rank 0.
        self._hf_ds_config = None
        lm_tokenizer = self.data.transform.tokenizer
        tokenizer_dir = self._tokenizer_dir()
        if tokenizer_dir is not None:
            tokenizer = load_base_tokenizer(tokenizer_dir)
        else:
            assert lm_tokenizer is not None  # a causal-lm dataset always has one
            tokenizer = hf_tokenizer(lm_tokenizer.state_dict())
        template = self._data_template()
        if template is not None:
            # The template the training data was rendered with, so servers format chat
            # requests as training did; save_pretrained writes it to chat_template.jinja.
            tokenizer.chat_template = template

        def write(tmp: Path) -> dict[str, Any]:
            info: dict[str, Any] = {"parameters": self.params,
                                    "base": base.lock() if base is not None else None}
            prefix = "lm."
            if adapter is not None:
                assert base is not None  # the validator requires a pretrained base for adapters
                assert state is not None
                named = {k[len(prefix):]: v for k, v in state.items()}
                peft_model: Any = module.lm
                save_adapter(peft_model, named, tmp / "adapter")
                tokenizer.save_pretrained(str(tmp / "adapter"))
                info["adapter"] = {"type": adapter.type, "path": "adapter", "merged": adapter.export_merged}
                if adapter.export_merged and weights_dir is None:
                    merged: Any = merge_adapter(base.directory, tmp / "adapter")
                    merged.save_pretrained(str(tmp))
            if weights_dir is not None:
                for f in weights_dir.iterdir():
                    os.replace(f, tmp / f.name)
                wrapped: Any = module.lm
                lm: Any = wrapped.get_base_model() if adapter is not None else wrapped
                # What save_pretrained writes beside the weights, recorded the same way. The
                # type is the written weights' (fp32 master weights after bf16 or fp16 training),
                # not the engine module's: loading with dtype="auto" must not cast them.
                lm.config.dtype = weights_dtype or str(lm.dtype).split(".")[1]
                lm.config.architectures = [type(lm).__name__]
                lm.config.save_pretrained(str(tmp))
                if lm.can_generate():
                    lm.generation_config.save_pretrained(str(tmp))
            if adapter is None or adapter.export_merged:
                tokenizer.save_pretrained(str(tmp))
            return info

        return write

    def _data_template(self) -> str | None:
        """The chat template the Dataset declares (``chat.template`` or ``chat.templatePath``),
        else None: the exported tokenizer then keeps its own."""
        from ..data.chat_template import find_template

        chat = self.data_obj.spec.chat
        if chat is None or chat.format == "text" or (chat.template is None and chat.template_path is None):
            return None
        found = find_template(chat, self.data_manifest.base_dir, None)
        return found.text if found is not None else None

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
                print(f"lmspec: trained {self.step} steps in {time.perf_counter() - started:.1f}s"
                      + (f"; test {shown}" if shown else "") + f"; exported to {out}")
            failed = False
            return metrics
        finally:
            if self.log is not None:
                self.log.close(failed=failed)
