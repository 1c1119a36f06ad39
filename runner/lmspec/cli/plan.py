"""``lmspec plan``: parameter counts and ZeRO memory per device, without torch."""

from __future__ import annotations

from typing import Any

import click

from ..domain.plan import Count, all_states, count_parameters, lora_parameters, model_states, parse_bytes, speed_notes
from ..validator.core import ManifestSet, load
from ..validator.index import index_of
from ._errors import note_skipped, reported


def _count(manifests: ManifestSet, model_name: str, dataset_name: str | None) -> Count:
    model = manifests.get("Model", model_name)
    assert model is not None
    dataset = manifests.get("Dataset", dataset_name) if dataset_name else None
    n_features = len(dataset.obj.spec.features) if dataset is not None else None
    return count_parameters(model.obj.spec, n_features=n_features or None,
                            pretrained_dir=index_of(manifests.manifests).pretrained_dir(model.obj))


def _size(n: int) -> str:
    """Binary units, as DeepSpeed's estimators print them: ``12.50 GiB``."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:8.2f} {unit:3s}"


@click.command("plan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--job", "job_name", help="Plan only this TrainingJob (and its Model).")
def command(paths: tuple[str, ...], job_name: str | None) -> None:
    """Print each Model's parameter count and, for each TrainingJob, the model-state memory per
    device at every ZeRO stage and offload choice (ZeRO paper formulas; activations excluded).
    The job's own choice is marked with *."""
    with reported(LookupError):
        manifests = load(list(paths))
        jobs = manifests.of_kind("TrainingJob")
        if job_name is not None:
            jobs = [manifests.pick("TrainingJob", job_name, option="--job")]
    note_skipped(manifests.report)
    models = manifests.of_kind("Model")
    if job_name is not None:
        models = [m for m in models if m.name == jobs[0].obj.spec.model]
    for m in models:
        c = _count(manifests, m.name, None)
        shown = f"{c.params:,}" if c.params is not None else c.note
        click.echo(f"Model {m.name}: {shown} parameters")
    for j in jobs:
        spec = j.obj.spec
        c = _count(manifests, spec.model, spec.dataset)
        world = spec.resources.nodes * spec.resources.processes_per_node
        precision = "bf16" if spec.precision.bf16.enabled else "fp16" if spec.precision.fp16.enabled else "fp32"
        click.echo(f"\nTrainingJob {j.name}: Model {spec.model}, {world} data-parallel rank(s), "
                   f"{precision}, optimizer {spec.optimizer.type}")
        if c.params is None or c.largest_layer is None:
            click.echo(f"  parameter count {c.note}; no memory plan")
            continue
        model = manifests.get("Model", spec.model)
        directory = index_of(manifests.manifests).pretrained_dir(model.obj) if model is not None else None
        trainable = lora_parameters(spec, directory) if directory is not None else None
        chosen = model_states(spec, c.params, c.largest_layer, trainable=trainable)
        limit = parse_bytes(spec.resources.memory_per_device) if spec.resources.memory_per_device else None
        click.echo(f"  {c.params:,} parameters, largest layer {c.largest_layer:,}"
                   + (f"; {trainable:,} trained (adapter)" if trainable is not None else ""))
        click.echo("    stage  offload               device         host" + ("  fits" if limit else ""))
        for s in all_states(spec, c.params, c.largest_layer, trainable=trainable):
            mark = "*" if (s.stage, s.offload) == (chosen.stage, chosen.offload) else " "
            fits = ("   yes" if s.device_bytes <= limit else "    no") if limit else ""
            click.echo(f"  {mark} {s.stage:5d}  {s.offload:16s} {_size(s.device_bytes)} {_size(s.host_bytes)}{fits}")
        if limit:
            click.echo(f"  memoryPerDevice {spec.resources.memory_per_device}")
        for note in speed_notes(spec):
            click.echo(f"  slow: {note}")
        _data_cost(manifests, j)


def _data_cost(manifests: ManifestSet, job: Any) -> None:
    """Tokens, token shards on disk and resident memory of a language model's data."""
    from ..data.cost import data_cost

    spec = job.obj.spec
    dataset = manifests.get("Dataset", spec.dataset)
    if dataset is None:
        return
    ds = dataset.obj.spec
    length = ds.chat.sequence_length if ds.chat is not None else next(
        (s.sequence_length for s in ds.preprocessing if getattr(s, "type", "") == "pack"), None)
    if length is None:
        return
    c = data_cost(ds, dataset.base_dir, sequence_length=length, micro_batch=spec.batch.micro_batch_size)
    approx = "" if c.exact else "~"
    click.echo(f"  data: Dataset {dataset.name}: {approx}{c.tokens:,} tokens ({c.basis})")
    click.echo(f"    token shards on disk {_size(c.disk_bytes).strip()}; memory for the data: preparing "
               f"~{_size(c.prepare_rss).strip()}, training ~{_size(c.train_rss).strip()} per rank")
    if spec.loss.type == "dpo":
        # The reference is not a second model: its log-probabilities, computed once.
        pairs = f"{c.documents // 2:,} pairs: {_size(16 * (c.documents // 2)).strip()}" if c.documents else \
            "16 bytes a pair"
        click.echo("    dpo reference: the starting model's log-probabilities of every pair, computed in one "
                   f"forward pass before the first step and kept in memory and the run directory ({pairs}); "
                   "no second copy of the model")
