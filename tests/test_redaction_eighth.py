"""Recall and precision on the eighth corpus (tests/redaction_corpus_eighth.py): the logs an ML/LLM serving
stack writes (vLLM, TGI, Triton, Ray Serve, TorchServe, BentoML, LLM SDK debug logs, chat request and
response bodies in several languages, notebooks, MLflow/W&B/Comet/Neptune, `huggingface-cli login`,
`git credential`, `.env` files, tracebacks with locals, pydantic dumps, OpenTelemetry spans, Kubernetes
events of GPU pods, nvidia-smi/DCGM) and the token formats of the AI ecosystem. Same thresholds as the
other corpora: every type at recall and precision >= 99.5%, every look-alike kind surviving >= 99.5%.
Run with `-s` to see the per-type table.
"""

# ruff: noqa: E501  (pinned log lines)

from __future__ import annotations

import pytest

import redaction_corpus as corpus
import redaction_corpus_eighth as eighth
from cleanroom.scrubbers.logs import Redactor, default_redactor
from test_redaction_corpus import THRESHOLD, _finder

PII_LABELS = {
    "EMAIL": "email", "PHONE": "phone", "CREDIT_CARD": "credit_card", "SSN": "ssn", "IBAN": "iban", "IPV4": "ipv4",
    "IPV6": "ipv6",
}  # fmt: skip
PII_TYPES = set(PII_LABELS.values())


class _Labels(dict[str, str]):
    """A false finding under a PII label is charged to that type; under any secret label to `secret`, whose
    precision is measured against every true finding on a secret (the corpus labels secrets by provider,
    the redactor by its own names)."""

    def __bool__(self) -> bool:
        return True

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return PII_LABELS.get(key, "secret")


def _failures(result: corpus.Score, types: set[str], kinds: set[str]) -> list[str]:
    failures = []
    for kind in sorted(types):
        if result.recall(kind) < THRESHOLD:
            failures.append(f"recall {kind} = {result.recall(kind):.4f}")
        if kind in PII_TYPES and result.precision(kind) < THRESHOLD:
            failures.append(f"precision {kind} = {result.precision(kind):.4f}")
    secret_tp = sum(n for k, n in result.true_findings.items() if k not in PII_TYPES)
    secret_fp = result.false_findings.get("secret", 0)
    if secret_tp / max(1, secret_tp + secret_fp) < THRESHOLD:
        failures.append(f"precision secret = {secret_tp / max(1, secret_tp + secret_fp):.4f} ({secret_fp} false)")
    for kind in sorted(kinds):
        if result.survival(kind) < THRESHOLD:
            failures.append(f"survival {kind} = {result.survival(kind):.4f}")
    return failures


SEEDS = [8088, 31337]
LINES = 3000


@pytest.fixture(scope="module")
def samples() -> dict[int, list[corpus.Sample]]:
    return {seed: eighth.generate(seed=seed, lines=LINES) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_eighth_recall_and_precision(seed: int, samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[seed]
    result = corpus.score(_finder(default_redactor()), lines, _Labels())
    print(f"\neighth redaction corpus seed={seed}: {sum(result.total.values())} positives\n{result.table()}")
    failures = _failures(result, eighth.all_types(lines), eighth.negative_kinds(lines))
    assert not failures, (
        "\n".join(failures) + "\nmissed:\n" + "\n".join(result.missed_examples[:30])
        + "\nfalse:\n" + "\n".join(result.false_examples[:30])
    )  # fmt: skip


def test_eighth_covers_every_type_and_look_alike(samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[SEEDS[0]]
    assert len(lines) == LINES
    assert {"openai_key", "anthropic_key", "huggingface_token", "groq_key", "replicate_token", "perplexity_key",
            "fireworks_key", "deepseek_key", "xai_key", "langsmith_key", "pinecone_key", "databricks_token",
            "together_key", "cohere_key", "mistral_key", "wandb_key", "azure_openai_key", "comet_key", "neptune_token",
            "api_key", "kaggle_key", "ephemeral_key", "aws_key_id", "aws_secret", "aws_session_token", "private_key", "email", "phone",
            "credit_card", "ssn", "iban", "ipv4", "ipv6"} <= eighth.all_types(lines)  # fmt: skip
    assert {"model_name", "revision", "shard", "sha256", "request_id", "message_id", "openai_id", "token_count",
            "gpu_uuid", "pci_bus_id", "cuda_version", "driver_version", "token_ids", "embedding", "seed", "sk_word",
            "trace_id", "span_id", "pod_name", "docker_digest", "git_sha", "mlflow_run_id", "wandb_run_id",
            "placeholder", "redacted", "masked_key", "masked_card", "luhn_invalid", "template", "etag", "run_id",
            "ec2_hostname", "unspecified", "loopback", "session_id", "resource_id", "resource_name", "gpu_serial"} <= eighth.negative_kinds(lines)  # fmt: skip


def test_eighth_is_deterministic() -> None:
    a, b = eighth.generate(seed=3, lines=300), eighth.generate(seed=3, lines=300)
    assert [(s.line, s.positives, s.negatives) for s in a] == [(s.line, s.positives, s.negatives) for s in b]


def test_eighth_labels_are_well_formed(samples: dict[int, list[corpus.Sample]]) -> None:
    corpus.check_labels(samples[SEEDS[1]])


def test_eighth_placeholders_leave_nothing() -> None:
    """No positive value survives in the output and every look-alike does, verbatim; lines stay lines."""
    corpus.check_redacted(eighth.generate(seed=88, lines=800), default_redactor().redact)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_eighth_prefilter_backends_agree(backend: str) -> None:
    reference, other = default_redactor(), Redactor(prefilter=backend)
    for sample in eighth.generate(seed=18, lines=500):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line


# The classes of misses and over-redactions this corpus found, pinned with inputs of their own (other
# spellings than the generator's): (line, what must go, what must stay)
PINNED = [
    # an AI provider's name then `key`: its API key, also when it is 32 hex digits (Azure OpenAI)
    ("OPENAI_KEY=0f3ce7a2db43925f0d0293bc84030a15", ["0f3ce7a2db43925f0d0293bc84030a15"], []),
    ('{"azure_openai_key": "9c4365bed7d3b01bef41b1d000ef191d"}', ["9c4365bed7d3b01bef41b1d000ef191d"], []),
    ("anthropic-key: Zx81kQ0pLm2nB7vC4xW9", ["Zx81kQ0pLm2nB7vC4xW9"], []),
    # the OpenTelemetry collector's debug exporter: the header value is the slice's element
    ('     -> http.request.header.api-key: Slice(["43899edaa6b15b6275b4eb8f8ed5fcd8"])', ["43899edaa6b15b6275b4eb8f8ed5fcd8"], ["Slice(["]),
    ('-> http.request.header.x-api-key: Slice(["Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7"])', ["Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7"], ["Slice(["]),
    # random seeds and serial numbers are not cards or phones; a card beside one still is
    ("torch.manual_seed(4390092100097970980)", [], ["4390092100097970980"]),
    ('{"seed": 4539578763621486, "pan": "4111111111111111"}', ["4111111111111111"], ["4539578763621486"]),
    ("generate{parameters=GenerateParameters { seed: Some(3571593948227293032) }}", [], ["3571593948227293032"]),
    ("GPU 0: NVIDIA H100 80GB HBM3 Serial Number: 1320321009546", [], ["1320321009546"]),
    ("module serial=0070248003182 ok", [], ["0070248003182"]),
    # typed ids of LLM APIs are ids; a random token without such a prefix still goes
    ("cancelled msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d after 24h", [], ["msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"]),
    ("-> chatcmpl-9pLkQ2xYz8RtUvWq3AbCdEfGhIjK", [], ["chatcmpl-9pLkQ2xYz8RtUvWq3AbCdEfGhIjK"]),
    ("echo Xk9mP2qR7tY4wZ8vB3nC6jH1fD5sA0gLe | docker login --password-stdin", ["Xk9mP2qR7tY4wZ8vB3nC6jH1fD5sA0gLe"], []),
    ("xmsgbatch_01HkcTjaV5uDC8jWR4ZsDV8dQ9 sent", ["xmsgbatch_01HkcTjaV5uDC8jWR4ZsDV8dQ9"], []),
    # JSON-escaped CJK text (ensure_ascii): a value right after a `\uXXXX` escape of any block
    (r'{"content":"\u756a\u53f7\u306f4539578763621486\u3067\u3059"}', ["4539578763621486"], []),
    (r'{"content":"\uacc4\uc88c GB82WEST12345698765432\uc785\ub2c8\ub2e4"}', ["GB82WEST12345698765432"], []),
    (r'{"content":"\u793e\u4fdd219-09-9999\u3002 ip\u306f203.0.113.9"}', ["219-09-9999", "203.0.113.9"], []),
    (r'{"content":"caf\u00e9s 4111111111111111"}', ["4111111111111111"], []),
    # Fireworks keys (24 characters: under the random-token rule's 32); `fw_` words stay
    ("fireworks client key=fw_3ZkQp9XbL2mN8vR4tY7wC1dF", ["fw_3ZkQp9XbL2mN8vR4tY7wC1dF"], []),
    ("Authorization: fw_8hJ2kL5mN1pQ4rS7tU0vW3xY ok", ["fw_8hJ2kL5mN1pQ4rS7tU0vW3xY"], []),
    ("fw_version=2.3.1 fw_update_available=true", [], ["fw_version=2.3.1", "fw_update_available=true"]),
    # Weights & Biases and Kaggle keys: hex with no prefix, named by the command or the provider
    ("!wandb login --relogin 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"], []),
    ("wandb.login(key='local-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b')", ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"], []),
    ("export KAGGLE_KEY=d41d8cd98f00b204e9800998ecf8427e", ["d41d8cd98f00b204e9800998ecf8427e"], []),
    ("git commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b (wandb logged)", [], ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"]),
    # Triton prints a model's configuration as JSON: parameters are `{"NAME":{"string_value":"v"}}`
    ('config: {"parameters":{"OPENAI_API_KEY":{"string_value":"Zk9mP2qR7tY4wZ8vB3nC6jH1"}}}', ["Zk9mP2qR7tY4wZ8vB3nC6jH1"], []),
    ('config: {"parameters":{"tokenizer":{"string_value":"Zk9mP2qR7tY4wZ8vB3nC6jH1"}}}', [], ["Zk9mP2qR7tY4wZ8vB3nC6jH1"]),
    # Vertex AI resource ids are not cards
    ("projects/123456789012/locations/europe-west4/endpoints/4539578763621486123", [], ["4539578763621486123"]),
    ('{"deployedModelId": "4539578763621486", "model_id": "4111111111111111"}', [], ["4539578763621486", "4111111111111111"]),
    # model repo names made of many parts are names, not random tokens
    ("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", [], ["paraphrase-multilingual-MiniLM-L12-v2"]),
    ("bartowski/Qwen2-VL-72B-Instruct-abliterated-GGUF-Q4_K_M", [], ["Qwen2-VL-72B-Instruct-abliterated-GGUF-Q4_K_M"]),
    ("token=Xk9m-P2qR7tY4-wZ8vB3nC6jH-1fD5sA0gLe", ["Xk9m-P2qR7tY4-wZ8vB3nC6jH-1fD5sA0gLe"], []),
    # a secret key whose value is one level down: `"client_secret":{"value":"ek_…"}` (OpenAI Realtime sessions)
    ('"client_secret": {"value": "ek_68a1b2c3d4e5f60718293a4b5c6d7e8f", "expires_at": 1764422400}', ["ek_68a1b2c3d4e5f60718293a4b5c6d7e8f"], []),
    ('"session": {"value": "abc", "expires_at": 1764422400}', [], ['"value": "abc"']),
    # LangSmith legacy keys
    ("langsmith key ls__9f86d081884c7d659a2feaa0c55ad015 in use", ["ls__9f86d081884c7d659a2feaa0c55ad015"], []),
    # a provider's prefix shown with a mask is a placeholder (`.env.example`, READMEs); a real value is not
    ("export OPENAI_API_KEY=sk-...  # replace with your key", [], ["sk-..."]),
    ('HF_TOKEN="hf_xxxxxxxxxxxxxxxx"', [], ["hf_xxxxxxxxxxxxxxxx"]),
    ("ANTHROPIC_API_KEY=sk-ant-api03-...", [], ["sk-ant-api03-..."]),
    ("password=hunter2...", ["hunter2"], []),
]  # fmt: skip


@pytest.mark.parametrize(("line", "gone", "kept"), PINNED)
def test_eighth_pinned(line: str, gone: list[str], kept: list[str]) -> None:
    out = default_redactor().redact(line)
    for value in gone:
        assert value not in out, out
    for value in kept:
        assert value in out, out
