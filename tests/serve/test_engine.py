"""The generation engine in-process: greedy output equal to ``generate`` while sequences join
and leave the batch, prompts are prefilled together or in chunks, and sequences are cancelled;
limits on sequences and the KV budget; models loaded from Hugging Face directories, with a LoRA
adapter merged and in another dtype."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from lmspec.engine.core import Busy, Engine, EngineLimits, SamplingParams
from lmspec.engine.lm import load_hf_dir
from lmspec.v1alpha1.inferenceservice import Placement


def limits(**kw: Any) -> EngineLimits:
    base = {"max_sequences": 8, "max_waiting": 16, "max_model_length": 256, "kv_cache_tokens": 4096,
            "prefill_chunk_tokens": 24}
    return EngineLimits(**{**base, **kw})


def reference(model: Any, ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return [int(t) for t in out[0, len(ids):]]


@pytest.fixture(scope="module")
def gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                      bos_token_id=0, eos_token_id=0)).eval()


def test_greedy_equals_generate_while_the_batch_changes(gpt2: Any) -> None:
    torch.manual_seed(1)
    prompts = [torch.randint(1, 256, (n,)).tolist() for n in (5, 40, 17, 3, 60, 9)]
    counts = [20, 12, 20, 7, 20, 15]
    expected = [reference(gpt2, p, n) for p, n in zip(prompts, counts, strict=True)]
    engine = Engine(gpt2, limits())
    with torch.inference_mode():
        seqs = [engine.add(prompts[0], SamplingParams(counts[0]), frozenset())]
        engine.step()
        engine.step()
        for p, n in zip(prompts[1:], counts[1:], strict=True):  # join one per iteration
            seqs.append(engine.add(p, SamplingParams(n), frozenset()))
            engine.step()
        victim = engine.add(prompts[1], SamplingParams(30), frozenset())
        engine.step()
        victim.cancel()
        while engine.has_work:
            engine.step()
    # Prompts of 40 and 60 tokens were prefilled in chunks of 24; short ones together.
    assert [s.generated for s in seqs] == expected
    assert all(s.finish_reason == "length" for s in seqs)
    assert victim.finish_reason is None and len(victim.generated) < 30
    assert engine.running == [] and engine._cache is None  # every row freed


def test_eos_and_max_model_length_end_sequences(gpt2: Any) -> None:
    ids = [5, 6, 7]
    free = reference(gpt2, ids, 10)
    engine = Engine(gpt2, limits(max_model_length=8))
    with torch.inference_mode():
        stopped = engine.add(ids, SamplingParams(10), frozenset({free[3]}))
        capped = engine.add(ids, SamplingParams(10), frozenset())
        while engine.has_work:
            engine.step()
    first = free.index(free[3])
    assert stopped.generated == free[:first] and stopped.finish_reason == "stop"
    assert capped.generated == free[:5] and capped.finish_reason == "length"  # 3 + 5 = 8 tokens


def test_limits_on_sequences_waiting_and_kv_budget(gpt2: Any) -> None:
    engine = Engine(gpt2, limits(max_sequences=2, max_waiting=3, kv_cache_tokens=60))
    seqs = [engine.add([1, 2, 3], SamplingParams(17), frozenset()) for _ in range(3)]
    with pytest.raises(Busy):
        engine.add([1], SamplingParams(1), frozenset())
    with torch.inference_mode():
        engine.step()
        # Each reserves 20 tokens; 2 rows × 20 fit in 60, 3 rows would too, but maxSequences is 2.
        assert engine.counts() == (2, 1)
        while engine.has_work:
            engine.step()
    assert all(len(s.generated) == 17 for s in seqs)
    tight = Engine(gpt2, limits(kv_cache_tokens=30))
    for _ in range(2):
        tight.add([1, 2, 3], SamplingParams(17), frozenset())
    with torch.inference_mode():
        tight.step()
    assert tight.counts() == (1, 1)  # a second 20-token reservation would need 40 > 30


def test_seeded_sampling_and_logprobs(gpt2: Any) -> None:
    engine = Engine(gpt2, limits())
    params = SamplingParams(12, temperature=1.0, top_p=0.9, seed=3, logprobs=2, prompt_logprobs=True)
    with torch.inference_mode():
        a = engine.add([4, 5, 6], params, frozenset())
        b = engine.add([4, 5, 6], params, frozenset())
        while engine.has_work:
            engine.step()
    assert a.generated == b.generated and len(a.pending) == 12
    assert all(t.logprob is not None and t.logprob <= 0 and len(t.top) == 2 for t in a.pending)
    assert [t.id for t in a.prompt_info] == [4, 5, 6] and a.prompt_info[0].logprob is None


# peft 0.21 still calls a transformers method that transformers 5 deprecates.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_lora_adapter_is_merged_into_its_base(llama: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    base = AutoModelForCausalLM.from_pretrained(llama)
    tuned = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    tuned.save_pretrained(adapter)
    # As a fine-tuning run leaves it: the base named by a path relative to the adapter.
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = os.path.relpath(llama, adapter)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    lm = load_hf_dir(adapter, Placement())
    ids = lm.encode("The server")
    engine = Engine(lm.model, limits())
    with torch.inference_mode():
        seq = engine.add(ids, SamplingParams(8), frozenset())
        while engine.has_work:
            engine.step()
    expected = reference(tuned.merge_and_unload().eval(), ids, 8)
    assert seq.generated == expected[: len(seq.generated)] and seq.generated
    assert lm.has_chat_template and lm.eos == frozenset({1, 4})


def test_placement_dtype(llama: Path) -> None:
    lm = load_hf_dir(llama, Placement(dtype="bfloat16"))
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    with torch.inference_mode():
        engine = Engine(lm.model, limits())
        seq = engine.add(lm.encode("Hi"), SamplingParams(4), frozenset())
        while engine.has_work:
            engine.step()
    assert len(seq.generated) == 4



def _failing_once(llama: Path, max_tokens: int) -> tuple[list[str], str, Engine]:
    """Two requests in an engine whose first iteration raises after its forward passes (where no
    sequence is to blame); then one more request. What each got, and the engine."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from lmspec.serve.generate import EngineRunner, Sampling
    from lmspec.serve.metrics import Metrics

    lm = load_hf_dir(llama, Placement())
    engine = Engine(lm.model, limits())
    trim, failures = engine._trim, [RuntimeError("cache columns out of step")]

    def trim_failing_once() -> None:
        if failures:
            raise failures.pop()
        trim()

    engine._trim = trim_failing_once  # type: ignore[method-assign]
    # Greedy: the same tokens on every run, so whether a sequence ends in the first iteration
    # (an end-of-sequence token) does not depend on chance.
    sampling = Sampling(max_tokens=max_tokens, temperature=0.0)

    async def scenario() -> tuple[list[str], str]:
        executor = ThreadPoolExecutor(1)
        runner = EngineRunner(lm, engine, executor, Metrics())
        runner.start()
        try:
            gens = [runner.generation(lm.encode(t), sampling) for t in ("Hi", "The server")]
            outcomes = []
            for gen in gens:
                try:
                    outcomes.append(await asyncio.wait_for(gen.text(), 60))
                except RuntimeError as exc:
                    outcomes.append(f"error: {exc}")
            after = await asyncio.wait_for(runner.generation(lm.encode("Hi"), sampling).text(), 60)
            return outcomes, after
        finally:
            await runner.stop()
            executor.shutdown()

    outcomes, after = asyncio.run(scenario())
    return outcomes, after, engine


def test_a_failed_iteration_fails_every_request_and_the_engine_goes_on(llama: Path) -> None:
    """An iteration that raises outside any one sequence's forward pass must not leave requests
    waiting on a runner that stopped: they all get the error, and the next request is served
    from an empty engine."""
    outcomes, after, engine = _failing_once(llama, max_tokens=6)
    assert outcomes == ["error: cache columns out of step"] * 2
    assert after and not engine.has_work


def test_sequences_that_ended_in_a_failed_iteration_get_their_answer(llama: Path) -> None:
    """A sequence that got its last token in the iteration that then failed has left the batch
    already: it must still be answered (with its text, since it finished), never left waiting."""
    outcomes, after, engine = _failing_once(llama, max_tokens=1)
    assert all(o and not o.startswith("error") for o in outcomes), outcomes
    assert after and not engine.has_work


def test_steps_record_no_autograd_history(gpt2: Any) -> None:
    """The server calls ``step`` from its compute thread, outside any ``inference_mode`` block: the
    batch's cache must still hold plain inference tensors, not a growing autograd graph."""
    assert any(p.requires_grad for p in gpt2.parameters())
    engine = Engine(gpt2, limits())
    seq = engine.add([3, 4, 5], SamplingParams(6), frozenset())
    for _ in range(3):
        engine.step()
    keys = engine._cache.layers[0].keys
    assert keys.is_inference() and keys.grad_fn is None
    while engine.has_work:
        engine.step()
    assert len(seq.generated) == 6


def test_decode_steps_append_in_place(gpt2: Any) -> None:
    """A decode step writes its token's keys and values into spare room of the batch's cache
    instead of copying the whole cache (what concatenation would do at every token)."""
    engine = Engine(gpt2, limits())
    with torch.inference_mode():
        engine.add(list(range(1, 30)), SamplingParams(40), frozenset())
        engine.add(list(range(1, 9)), SamplingParams(40), frozenset())
        for _ in range(3):
            engine.step()
        layer = engine._cache.layers[0]
        buffer, length = layer._k.data_ptr(), layer.keys.shape[-2]
        for _ in range(10):
            engine.step()
        assert layer._k.data_ptr() == buffer and layer.keys.shape[-2] == length + 10
