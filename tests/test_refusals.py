"""What the validator accepts, the runner and the server run: every refusal they can raise before
the first training step or the first request is listed here, in source order, with how it is
covered.

- ``rule(id)``: ``lmspec validate`` (``--check-env`` for ``env.*`` rules, which ``lmspec run``
  applies before it prepares data or loads a model) refuses the same manifest first. The rule has
  a case that triggers it: in ``tests/validator/rule_cases.py`` or the conformance suite.
- ``runtime(reason)``: the refusal depends on what no manifest says (the command line, the
  machine the ranks run on, the run directory's state, the data once tokenized) or happens after
  the first step.
- ``unchecked(reason)``: a refusal the validator could make but does not yet; listed so that the
  gap is visible, and so that closing it moves the entry to ``rule``.

A new ``raise`` of a user-error type in these modules fails ``test_every_refusal_is_listed`` until
it is listed here. Pure source reading: no process, no model.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from lmspec.conformance.suite import case_files, read_case_file
from lmspec.validator.registry import RULES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "runner" / "lmspec"
SCANNED = sorted([*PACKAGE.glob("train/*.py"), *PACKAGE.glob("data/*.py"), *PACKAGE.glob("model/*.py"),
                  *PACKAGE.glob("domain/*.py"),
                  *PACKAGE.glob("engine/*.py"), *PACKAGE.glob("serve/*.py"),
                  PACKAGE / "cli" / "run.py", PACKAGE / "cli" / "serve.py"])
USER_ERRORS = {"RunError", "TrainError", "DataError", "ModelError", "AdapterError", "BaseError", "ShardError",
               "ExportError", "ServeError", "ModelDirError", "ModelLoadError", "NoChatTemplate", "VLLMError"}
"""The exceptions the commands print as ``lmspec: error: …`` (see ``lmspec.cli._errors``)."""

Verdict = tuple[str, str]


def rule(rule_id: str) -> Verdict:
    return ("rule", rule_id)


def runtime(reason: str) -> Verdict:
    return ("runtime", reason)


def unchecked(reason: str) -> Verdict:
    return ("unchecked", reason)


FILE_MISSING, SHA256, DATA = rule("env.file-missing"), rule("env.sha256-mismatch"), rule("env.data")
RECORDS, TEMPLATE, BASE = rule("env.chat-records"), rule("env.chat-template"), rule("env.pretrained-base")
ENGINE, ADAPTER = rule("env.engine-unavailable"), rule("env.adapter-modules")

PREPARED = runtime("known once the data is tokenized, split and packed, the run's first stage (the message "
                   "names the file and row)")
CHANGED = runtime("a file changed or became unreadable while it was being read")
CACHE = runtime("the data cache: its files, written by an earlier preparation, damaged since")
RESUME = runtime("the run directory's state: a resumed run's checkpoints and lock.json")
INVOCATION = runtime("the command line and the launcher's environment (--job, --nproc, --hostfile, ranks)")
MACHINE = runtime("the machine the ranks run on, which need not be the one that validates (a login node, CI)")
ENV_VARIABLE = runtime("an environment variable of the run, not the manifests")
TRAINING = runtime("after the first step (the loss diverges)")
EXPORT = runtime("an export written by a run, read by a later command (serve, predict, the export itself)")
SERVER = runtime("the server's own start: its port, its vLLM process")
REQUEST = runtime("a request, not the manifests")
INTERNAL = runtime("an internal consistency check that no manifest reaches")
TOKENIZER_LOAD = unchecked("the tokenizer is parsed (by transformers or tokenizers) only when data is prepared")
PACKAGES = unchecked("an optional package of the run extra (transformers, tokenizers, huggingface_hub, "
                     "bitsandbytes) is checked only when it is imported")
SERVED_EXPORT = unchecked("the served export's content is read when the model loads; --check-env does not "
                          "require an export (the service may be validated before its job runs)")
API_KEYS = unchecked("an API key's variable or file is read when the server starts")

REFUSALS: dict[str, list[Verdict]] = {
    # --- data preparation --------------------------------------------------------------------
    "data/_read.py::resolve_sources::DataError": [FILE_MISSING, DATA, FILE_MISSING, SHA256],
    "data/_read.py::_read_csv::DataError": [DATA] * 4,
    "data/_read.py::_read_jsonl::DataError": [DATA],
    "data/_read.py::_read_parquet::DataError": [DATA] * 2,
    "data/_read.py::_read_text::DataError": [DATA],
    "data/_read.py::parse_column::DataError": [DATA] * 2,
    "data/_read.py::_parse_floats::DataError": [DATA],
    "data/_read.py::_parse_bools::DataError": [DATA] * 2,
    "data/_tabular.py::raw_features::DataError": [
        runtime("a category that the seeded training split happens to lack")],
    "data/_tabular.py::encode::DataError": [DATA],
    "data/chat.py::load_tokenizer::DataError": [
        PACKAGES, rule("trainingjob.lm-tokenizer"), FILE_MISSING, SHA256, TOKENIZER_LOAD, FILE_MISSING,
        TOKENIZER_LOAD, TOKENIZER_LOAD],
    "data/chat.py::Encoder.__init__::DataError": [TOKENIZER_LOAD],
    "data/chat.py::Encoder.encode::DataError": [PREPARED, PREPARED],
    "data/chat.py::Encoder.encode_pair::DataError": [PREPARED],
    "data/chat.py::Encoder._render::DataError": [PREPARED],
    "data/chat.py::Encoder._role_spans::DataError": [PREPARED, PREPARED],
    "data/chat_template.py::find_template::DataError": [TEMPLATE],
    "data/chat_template.py::_read::DataError": [FILE_MISSING, TEMPLATE],
    "data/chat_template.py::check_template::DataError": [TEMPLATE, TEMPLATE],
    "data/conversations.py::read_records::DataError": [RECORDS, RECORDS],
    "data/conversations.py::_parquet::DataError": [RECORDS, RECORDS],
    "data/conversations.py::to_messages::DataError": [RECORDS, RECORDS],
    "data/conversations.py::prompt_of::DataError": [runtime("prompts of `lmspec predict`, after training")],
    "data/jsonl.py::jsonl_records::DataError": [DATA] * 4,
    "data/lmprep.py::_Watch._stat::DataError": [CHANGED],
    "data/lmprep.py::_Watch.check::DataError": [CHANGED],
    "data/lmprep.py::_decode::DataError": [DATA],
    "data/lmprep.py::prepare_text::DataError": [PREPARED],
    "data/lmprep.py::_not_empty::DataError": [DATA],
    "data/lmprep.py::_utf8::DataError": [PREPARED],
    "data/lmprep.py::prepare_chat::DataError": [PREPARED, PREPARED],
    "data/lmprep.py::_encoded_by_pool.drain::DataError": [
        runtime("re-raises, in the main process, a refusal listed here that a worker process met")],
    "data/lmprep.py::prepare_pairs::DataError": [PREPARED],
    "data/pairs.py::to_pair::DataError": [RECORDS] * 5,
    "data/pairs.py::_side::DataError": [RECORDS],
    "data/pairs.py::_whole::DataError": [RECORDS],
    "data/prepare.py::_cached_lm::DataError": [runtime("the data cache's directory (LMSPEC_CACHE_DIR) on the "
                                                       "machine that prepares")],
    "data/prepare.py::_check_manifest::DataError": [
        rule("trainingjob.dataset-columns"), rule("dataset.chat-conflict"), rule("dataset.chat-conflict")],
    "data/prepare.py::_tokenizer::DataError": [FILE_MISSING, SHA256, PACKAGES, TOKENIZER_LOAD],
    "data/prepare.py::_prepare_tabular::DataError": [
        unchecked("a missing value is refused after the row steps (dropNulls) ran, which --check-env does "
                  "not apply"),
        PREPARED],
    "data/stream.py::file_info::DataError": [rule("dataset.source-format"), FILE_MISSING],
    "data/stream.py::count_rows::DataError": [DATA],
    "data/stream.py::_csv_chunks::DataError": [DATA] * 4,
    "data/stream.py::_jsonl_chunks::DataError": [DATA],
    "data/stream.py::_parquet_chunks::DataError": [DATA] * 2,
    "data/tokens.py::TokenWriter.append::DataError": [PREPARED],
    "data/tokens.py::TokenStore.__init__::DataError": [CACHE],
    "data/tokens.py::TokenStore._check::DataError": [CACHE] * 3,
    "data/turns.py::field::DataError": [RECORDS],
    "data/turns.py::text::DataError": [RECORDS],
    "data/turns.py::system::DataError": [RECORDS],
    "data/turns.py::turns::DataError": [RECORDS] * 6,
    # --- torch-free knowledge the validator shares (lmspec.domain) ---------------------------
    "domain/pretrained.py::parse_uri::BaseError": [rule("schema.pattern")],
    "domain/pretrained.py::read_config::BaseError": [unchecked("the base's config.json is parsed only when loaded")],
    "domain/pretrained.py::safetensors_header::BaseError": [
        unchecked("a damaged safetensors header: the adapter check skips it, the load refuses it")],
    # --- the model ---------------------------------------------------------------------------
    "model/adapters.py::default_targets::AdapterError": [
        unchecked("a model type outside lmspec's table of default targets: peft's table needs peft")],
    "model/adapters.py::attach_lora::AdapterError": [ADAPTER, ADAPTER],
    "model/adapters.py::check_adapter_dir::AdapterError": [EXPORT, EXPORT],
    "model/build.py::build_model::ModelError": [INTERNAL, rule("schema.enum")],
    "model/build.py::_in_width::ModelError": [
        unchecked("an mlp's input width comes from the prepared data when the signature leaves it open")],
    "model/build.py::_huggingface::ModelError": [rule("model.hf-config")],
    "model/build.py::load_pretrained::ModelError": [BASE],
    "model/build.py::load_weights::ModelError": [FILE_MISSING, SHA256],
    "model/build.py::load_state::ModelError": [
        unchecked("initial weights are compared with the built model's tensors only when it is built")],
    "model/export.py::load_exported::ExportError": [EXPORT] * 3,
    "model/export.py::_load_hf::ExportError": [EXPORT] * 4,
    "model/hf_shards.py::max_shard_bytes::ShardError": [ENV_VARIABLE],
    "model/pretrained.py::resolve::BaseError": [
        BASE, runtime("the export of another TrainingJob, written when that job runs"), BASE,
        unchecked("a base's pinned sha256 means hashing the whole base (GBs), left to the run")],
    "model/pretrained.py::_snapshot::BaseError": [PACKAGES, BASE, runtime("the network, for an hf:// base")],
    "model/pretrained.py::load_base_tokenizer::BaseError": [EXPORT, EXPORT],
    # --- the runner --------------------------------------------------------------------------
    "train/rundir.py::select::RunError": [INVOCATION, BASE],
    "train/rundir.py::write_run_dir::RunError": [RESUME],
    "train/rundir.py::lock_run_dir::RunError": [runtime("another run holds the run directory")],
    "train/plan.py::read_hostfile::RunError": [INVOCATION] * 6,
    "train/plan.py::plan_world::RunError": [INVOCATION] * 4,
    "train/plan.py::check_world::RunError": [INVOCATION],  # the planned world: trainingjob.batch-world-size
    "train/plan.py::check_cuda::RunError": [MACHINE] * 3,
    "train/launch.py::launch::RunError": [RESUME, RESUME, MACHINE],
    "train/export.py::shard_bytes::TrainError": [ENV_VARIABLE],
    "train/gather.py::copy_into_partitioned::TrainError": [INTERNAL],
    "train/loop.py::Recipe._resolve_base::TrainError": [BASE],
    "train/loop.py::Recipe._setup_data::TrainError": [PREPARED],
    "train/loop.py::Recipe._setup_model::TrainError": [ADAPTER],
    "train/loop.py::Recipe._load_pretrained::TrainError": [BASE],
    "train/loop.py::Recipe._load_quantized::TrainError": [PACKAGES],
    "train/loop.py::Recipe._check_vocabulary::TrainError": [PREPARED],
    "train/loop.py::Recipe.train::TrainError": [TRAINING],
    "train/preference.py::PreferenceCriterion.prepare::TrainError": [RESUME],
    "train/runstate.py::RunState.check_resumable::TrainError": [RESUME],
    "train/runstate.py::RunState.check_same_data::TrainError": [RESUME],
    "train/runstate.py::RunState.load::TrainError": [RESUME, RESUME],
    # --- the generation engine and the server ------------------------------------------------
    "engine/lm.py::TextModel.chat_ids::NoChatTemplate": [REQUEST],
    "engine/lm.py::torch_device::ModelLoadError": [ENGINE],
    "engine/lm.py::load_hf_dir::ModelLoadError": [SERVED_EXPORT, SERVED_EXPORT],
    "engine/lm.py::_adapter_base::ModelLoadError": [SERVED_EXPORT] * 3,
    "engine/lm.py::from_export::ModelLoadError": [SERVED_EXPORT],
    "engine/model_dir.py::model_dir::ModelDirError": [
        rule("reference.missing"), SERVED_EXPORT, SERVED_EXPORT,
        unchecked("with model.path, the task is read from the export (with trainingJob: "
                  "inferenceservice.protocol-task)")],
    "serve/server.py::pick_service::ServeError": [INVOCATION],
    "serve/server.py::api_keys::ServeError": [rule("inferenceservice.inline-secret"), API_KEYS, API_KEYS, API_KEYS],
    "serve/server.py::listening_socket::ServeError": [SERVER],
    "serve/server.py::serve::ServeError": [SERVED_EXPORT],
    "serve/vllm.py::start_vllm::VLLMError": [ENGINE, SERVER, SERVER],
}


def _raises() -> dict[str, int]:
    """``path::qualified function::exception`` → how many raises, for every raise of a user error."""
    found: dict[str, int] = {}

    def walk(node: ast.AST, scope: list[str], path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                walk(child, [*scope, child.name], path)
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                name = exc.id if isinstance(exc, ast.Name) else exc.attr if isinstance(exc, ast.Attribute) else ""
                if name in USER_ERRORS:
                    key = f"{path}::{'.'.join(scope) or '<module>'}::{name}"
                    found[key] = found.get(key, 0) + 1
            walk(child, scope, path)

    for f in SCANNED:
        walk(ast.parse(f.read_text(encoding="utf-8")), [], f.relative_to(PACKAGE).as_posix())
    return found


def test_every_refusal_is_listed() -> None:
    found = _raises()
    listed = {key: len(verdicts) for key, verdicts in REFUSALS.items()}
    new = [f"{key}: {n} raise(s), {listed.get(key, 0)} listed" for key, n in sorted(found.items())
           if listed.get(key) != n]
    gone = sorted(set(listed) - set(found))
    assert not new and not gone, (
        "list each refusal in REFUSALS, in source order, with the rule that refuses the manifest first "
        "(or why none can):\n" + "\n".join(new) + ("\nno longer raised: " + ", ".join(gone) if gone else ""))


def _triggered_rules() -> set[str]:
    """Rules with a case that triggers them: a bad case of tests/validator/rule_cases.py, or a
    finding of a conformance case."""
    spec = importlib.util.spec_from_file_location("rule_cases", ROOT / "tests" / "validator" / "rule_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    triggered = {r for r, cases in module.CASES.items() if cases.get("bad")}
    for _, path in case_files(ROOT / "conformance" / "v1alpha1"):
        for case in read_case_file(path).get("cases", []):
            triggered |= {f["rule"] for f in case.get("findings", [])}
    return triggered


def test_every_covering_rule_exists_and_has_a_triggering_case() -> None:
    triggered = _triggered_rules()
    used = {value for verdicts in REFUSALS.values() for kind, value in verdicts if kind == "rule"}
    assert used <= set(RULES), f"unknown rules: {sorted(used - set(RULES))}"
    assert used <= triggered, f"rules with no triggering case: {sorted(used - triggered)}"
    for key, verdicts in REFUSALS.items():
        for kind, value in verdicts:
            assert kind in ("rule", "runtime", "unchecked") and value, key
