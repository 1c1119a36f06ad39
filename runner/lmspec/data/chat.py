"""Chat data → token ids and loss masks: the tokenizer, the template and the trained tokens.

>>> # tok, directory, files = load_tokenizer(chat, base_dir, fallback_dir=None)
>>> # encoder = Encoder(tok, find_template(chat, base_dir, directory), chat)
>>> # e = encoder.encode(conversation)        # e.ids, e.trained: one flag per token

Each conversation is rendered with the chat template by ``transformers``'
``apply_chat_template(..., return_assistant_tokens_mask=True)``, which reports the tokens inside
the template's ``{% generation %}`` blocks. A conversation of ``n`` tokens gives ``n - 1`` model
inputs and targets (the targets are the inputs shifted by one token; an untrained target is
-100), so one fits a sequence when ``n <= sequenceLength + 1``.

The length policy, splitting and packing are :mod:`.lmprep`'s; rows are formed by
:class:`.lm.ChatSplit`. Needs ``transformers`` (the ``run`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import sha256_file
from ..standard import Chat, ChatTokenizer
from .chat_template import Template, resolve
from .conversations import Conversation
from .errors import DataError
from .pairs import Pair


@dataclass
class Encoded:
    """One conversation as token ids and a per-token flag: is this token trained?"""

    ids: list[int]
    trained: list[bool]
    conversation: Conversation


def load_tokenizer(chat: Chat, base_dir: Path, fallback_dir: Path | None) -> tuple[Any, Path | None, list[Path]]:
    """A ``transformers`` fast tokenizer: the manifest's, else the one in ``fallback_dir`` (the
    training job's pretrained model); returns it, its directory (None for a lone file) and the
    files it was read from."""
    try:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast
    except ImportError:
        raise DataError("chat data needs the transformers package", field="spec.chat",
                        hint="pip install 'lmspec[run]'") from None
    ref = chat.tokenizer
    if ref is None and fallback_dir is None:
        raise DataError("chat data needs a tokenizer, and none is declared", field="spec.chat.tokenizer",
                        hint="set chat.tokenizer to the model's tokenizer directory")
    if ref is not None and not isinstance(ref, ChatTokenizer):  # a lone tokenizer.json
        path = resolve(ref.path, base_dir)
        if not path.is_file():
            raise DataError(f"tokenizer file {path} does not exist", field="spec.chat.tokenizer.path")
        if ref.sha256 is not None and (digest := sha256_file(path)) != ref.sha256:
            raise DataError(f"sha256 mismatch: the manifest pins {ref.sha256}, the file has {digest}",
                            file=str(path), field="spec.chat.tokenizer.sha256")
        try:
            tok: Any = PreTrainedTokenizerFast(tokenizer_file=str(path))  # type: ignore[no-untyped-call]
        except Exception as e:  # tokenizers raises plain Exceptions for a bad file
            raise DataError(f"cannot load tokenizer: {e}", file=str(path), field="spec.chat.tokenizer") from None
        return tok, None, [path]
    directory = resolve(ref.path, base_dir) if ref is not None else fallback_dir
    assert directory is not None
    where = "spec.chat.tokenizer.path" if ref is not None else "spec.chat.tokenizer"
    if not (directory / "tokenizer.json").is_file():
        raise DataError(f"{directory} has no tokenizer.json", field=where,
                        hint="point chat.tokenizer at a Hugging Face tokenizer directory")
    try:
        tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as e:  # transformers raises many kinds for a broken directory
        raise DataError(f"cannot load the tokenizer in {directory}: {e}", field=where) from None
    if not getattr(tok, "is_fast", False):
        raise DataError(f"the tokenizer in {directory} is not a fast tokenizer", field=where)
    return tok, directory, tokenizer_files(directory)


def tokenizer_files(directory: Path) -> list[Path]:
    """The files of a tokenizer directory that tokenization depends on (digested into the lock)."""
    names = ("special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json")
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and (p.name.startswith("tokenizer") or p.suffix == ".jinja" or p.name in names))


def tokenizer_source(chat: Chat, base_dir: Path, fallback_dir: Path | None) -> list[Path]:
    """The tokenizer's files, found without loading it (for the cache fingerprint)."""
    ref = chat.tokenizer
    if ref is not None and not isinstance(ref, ChatTokenizer):
        path = resolve(ref.path, base_dir)
        return [path] if path.is_file() else []
    directory = resolve(ref.path, base_dir) if ref is not None else fallback_dir
    return tokenizer_files(directory) if directory is not None and directory.is_dir() else []


class Encoder:
    """Turns conversations into ids and trained-token flags for one tokenizer, template and loss."""

    def __init__(self, tok: Any, template: Template | None, chat: Chat) -> None:
        self.tok = tok
        self.template = template
        self.chat = chat
        self.loss = chat.loss
        eot = chat.loss.end_of_turn_token
        if eot is not None:
            eot_id = tok.convert_tokens_to_ids(eot)
            if eot_id is None or eot_id == tok.unk_token_id or eot not in tok.get_vocab():
                raise DataError(f"end-of-turn token {eot!r} is not in the tokenizer's vocabulary",
                                field="spec.chat.loss.endOfTurnToken")
            self.eot_id: int | None = int(eot_id)
        else:
            self.eot_id = None if tok.eos_token_id is None else int(tok.eos_token_id)
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.eot_id
        self.pad_id = int(pad) if pad is not None else 0

    def encode(self, conv: Conversation) -> Encoded:
        if conv.is_text:
            ids = list(self.tok(conv.messages[0]["content"], add_special_tokens=False)["input_ids"])
            if self.eot_id is not None:
                ids.append(self.eot_id)  # the document's end is learnt like a turn's
            return Encoded(ids, [True] * len(ids), conv)
        assert self.template is not None  # checked by check_template
        roles: set[str] = set(self.loss.roles)
        want_marks = not self.loss.train_on_prompt and "assistant" in roles
        try:
            enc = self.tok.apply_chat_template(
                conv.messages, chat_template=self.template.text, tokenize=True, return_dict=True,
                return_assistant_tokens_mask=want_marks)
        except Exception as e:  # jinja2 errors, raise_exception() in templates, ...
            raise DataError(f"the chat template fails on this conversation: {e}", file=conv.file,
                            row=conv.row, unit=conv.unit, field=self.template.field) from None
        ids = [int(i) for i in enc["input_ids"]]
        if self.loss.train_on_prompt:
            return Encoded(ids, [True] * len(ids), conv)
        trained = [bool(m) for m in enc["assistant_masks"]] if want_marks else [False] * len(ids)
        others = roles - {"assistant"}
        if others:
            for start, end in self._role_spans(conv, ids, others):
                for t in range(start, end):
                    trained[t] = True
        self._end_of_turn(ids, trained)
        if not any(trained) and any(m["role"] in roles and m["content"] for m in conv.messages):
            raise DataError(
                f"the chat template marks no token of this conversation's {'/'.join(sorted(roles))} "
                "turns, so its loss mask would be all zero", file=conv.file, row=conv.row,
                unit=conv.unit, field=self.template.field,
                hint="the {% generation %} block must enclose each assistant message")
        return Encoded(ids, trained, conv)

    def encode_pair(self, pair: Pair, where: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
        """The ids of a preference pair's prompt and of each answer. The prompt is rendered with
        the generation prompt, each whole conversation (prompt and answer) on its own, as TRL
        does: the answer's ids are those of the whole conversation past the prompt's. Where the
        last tokens of the prompt merge with the answer's first (a template ending in a space
        before a byte-level BPE word), the prompt is cut where the two tokenizations part, so
        that both sequences of a pair still share it."""
        assert self.template is not None  # checked by check_template
        conv = Conversation(pair.prompt, where.get("file", ""), where.get("row", 0), where.get("unit", "row"), 0)
        prompt_text = self._render(pair.prompt, conv, generation_prompt=True)
        prompt = self._ids(prompt_text)
        wholes: list[list[int]] = []
        for answer in (pair.chosen, pair.rejected):
            full = self._render(pair.prompt + answer, conv)
            if not full.startswith(prompt_text):
                raise DataError("the chat template renders the prompt differently when an answer "
                                "follows it, so the answer's tokens cannot be told apart",
                                file=conv.file, row=conv.row, unit=conv.unit, field=self.template.field)
            wholes.append(self._ids(full))
        shared = min(_common_prefix(prompt, w) for w in wholes)
        return prompt[:shared], wholes[0][shared:], wholes[1][shared:]

    def _ids(self, text: str) -> list[int]:
        return [int(i) for i in self.tok(text, add_special_tokens=False)["input_ids"]]

    def _render(self, messages: list[dict[str, str]], conv: Conversation, *, generation_prompt: bool = False) -> str:
        assert self.template is not None
        try:
            text = self.tok.apply_chat_template(messages, chat_template=self.template.text, tokenize=False,
                                                add_generation_prompt=generation_prompt)
        except Exception as e:
            raise DataError(f"the chat template fails on this conversation: {e}", file=conv.file,
                            row=conv.row, unit=conv.unit, field=self.template.field) from None
        return str(text)

    def _role_spans(self, conv: Conversation, ids: list[int], roles: set[str]) -> list[tuple[int, int]]:
        """Token ranges of the turns of ``roles`` other than assistant. transformers marks only
        assistant turns, so the conversation is rendered one turn longer at a time: each turn is
        the text it adds, mapped to tokens through the tokenizer's character offsets."""
        spans: list[tuple[int, int]] = []
        prev = ""
        for i, m in enumerate(conv.messages):
            cur = self._render(conv.messages[:i + 1], conv)
            if not cur.startswith(prev):
                raise DataError(
                    "the chat template does not render this conversation turn by turn (a longer "
                    "conversation changes the text of earlier turns), so turns of roles other "
                    "than assistant cannot be located", file=conv.file, row=conv.row, unit=conv.unit,
                    field="spec.chat.loss.roles", hint="train only the assistant role with this template")
            if m["role"] in roles:
                spans.append((len(prev), len(cur)))
            prev = cur
        enc = self.tok(prev, add_special_tokens=False, return_offsets_mapping=True)
        if [int(i) for i in enc["input_ids"]] != ids:
            raise DataError("the rendered conversation tokenizes differently from the template's "
                            "own tokenization", file=conv.file, row=conv.row, unit=conv.unit,
                            field="spec.chat.loss.roles")
        out: list[tuple[int, int]] = []
        offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        for lo, hi in spans:
            hit = [t for t, (a, b) in enumerate(offsets) if a < hi and b > lo]
            if hit:
                out.append((hit[0], hit[-1] + 1))
        return out

    def _end_of_turn(self, ids: list[int], trained: list[bool]) -> None:
        """Apply ``loss.endOfTurn`` at the end of each trained run of tokens."""
        if self.eot_id is None:
            return
        n = len(ids)
        t = 0
        while t < n:
            if not trained[t]:
                t += 1
                continue
            end = t
            while end < n and trained[end]:
                end += 1
            if self.loss.end_of_turn:
                if end < n and ids[end] == self.eot_id:
                    trained[end] = True
                    end += 1
            else:
                k = end
                while k > t and ids[k - 1] == self.eot_id:
                    trained[k - 1] = False
                    k -= 1
            t = end


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def one_conversation(messages: list[dict[str, str]], where: dict[str, Any], file_id: int) -> Conversation:
    """A conversation read at ``where`` (file, row, unit) of source file ``file_id``."""
    return Conversation(messages, where["file"], where["row"], where["unit"], file_id)

