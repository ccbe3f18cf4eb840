"""An eighth labelled corpus for the log redactor: the logs an ML/LLM serving stack writes.

The seven other corpora centre on application, infrastructure, business and network logs. This one
reproduces what cleanroom's own users' stacks print: inference servers (vLLM, TGI, Triton, Ray Serve,
TorchServe, BentoML), LLM SDK debug logging (openai/anthropic/huggingface_hub/LangChain through httpx,
httpcore and urllib3, with request headers: `Authorization: Bearer sk-…`, `x-api-key:`, Azure's
`api-key:`), request and response JSON bodies logged by mistake (chat `messages` whose user content holds
emails, phones, cards, SSNs, IBANs in several languages, JSON-escaped or not), Jupyter notebooks (cells and
outputs), experiment trackers (MLflow, Weights & Biases, Comet, Neptune), `huggingface-cli login` and
`git credential` exchanges, `.env` files of AI apps, Python tracebacks with locals (plain and `rich`),
pydantic `ValidationError` dumps with their `input_value`, OpenTelemetry spans (`http.request.header.*`,
`gen_ai.*`), Kubernetes events of GPU pods, nvidia-smi and DCGM exporter output, and the token formats of
the AI ecosystem: OpenAI (`sk-`, `sk-proj-`, `sk-svcacct-`, `sk-admin-`), Anthropic (`sk-ant-api03-`,
`sk-ant-admin01-`), Hugging Face (`hf_`, `api_org_`), Cohere and Mistral (no prefix: only under their key),
Groq `gsk_`, Replicate `r8_`, Perplexity `pplx-`, Together (64 hex under its key, `tgp_v1_`), Fireworks
`fw_`, DeepSeek (`sk-` + 32 hex), xAI `xai-`, LangSmith `lsv2_pt_`/`lsv2_sk_`, Pinecone `pcsk_`,
Weights & Biases (40 hex under `WANDB_API_KEY`), Databricks `dapi`, Azure OpenAI (32 hex under `api-key`),
Comet, Neptune (base64 JSON), GCP service-account JSON (`"private_key": "-----BEGIN PRIVATE KEY-----\\n…`),
and AWS credentials for Bedrock (key id, secret, session token).

Look-alikes that must survive byte-identical: model names and revisions
(`meta-llama/Llama-3.1-8B-Instruct@5206a32`), safetensors shard names, SHA-256 digests and etags, request
and object ids (`chatcmpl-…`, `req_…`, `msg_01…`, `toolu_01…`, `file-…`, `asst_…`, `batch_…`, `org-…`,
`run-<uuid>`), token counts, GPU and MIG UUIDs, PCI bus ids (`00000000:3B:00.0`), CUDA/driver/NCCL
versions, token id lists, embeddings, seeds, `sk-`/`-key` words in prose (`sk-learn`, `task-queue`),
W3C trace and span ids, pod names, image digests, git SHAs, MLflow run ids, W&B run ids, masked keys as
the providers print them (`sk-proj-****…abcd`), prompts about emails and cards with placeholder text
(`<email>`, `XXXX-XXXX-XXXX-XXXX`), templates (`${OPENAI_API_KEY}`), and `[REDACTED:…]` placeholders.

Written before reading the redactor's rules. Policy followed (docs/logging.md, the seventh corpus):
127.0.0.1, 0.0.0.0 and `::1` are kept, every other address is an address; a service account's
`client_email` is an email; names and postal addresses are outside the redactor's types (neither
positives nor look-alikes); EC2 host names (`ip-10-0-1-23.ec2.internal`) are host names.

Every sensitive value on a line is a positive span with its type, every look-alike that must survive
byte-identical is a negative span with its kind (`mk(..., ("value", "~kind"))`).
"""

# ruff: noqa: E501, RUF001  (test data: long log lines, full-width punctuation in CJK prompts)

from __future__ import annotations

import base64
import json
import random
import string

from redaction_corpus import (
    ALNUM,
    B64,
    B64URL,
    DIGITS,
    HEX,
    LOWER,
    UPPER,
    Sample,
    mixed,
    weighted_families,
)
from redaction_corpus import _rand as r
from redaction_corpus import all_types as all_types  # re-exported: the tests call corpus.all_types
from redaction_corpus import negative_kinds as negative_kinds
from redaction_corpus_seventh import (
    email,
    iban,
    ipv4,
    ipv6,
    luhn_bad,
    luhn_ok,
    masked_pan,
    pan,
    phone,
    ssn_dashed,
    uuid4,
)
from redaction_corpus_unseen import Frag, mk

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
R = random.Random


def hexs(rng: R, n: int) -> str:
    while True:
        s = r(rng, HEX, n)
        if sum(c.isdigit() for c in s) >= 2 and any(c.isalpha() for c in s):
            return s


# ---------------------------------------------------------------- provider tokens (type, value)


def openai_key(rng: R) -> str:
    k = rng.randrange(6)
    if k == 0:
        return "sk-proj-" + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)
    if k == 1:
        return "sk-svcacct-" + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)
    if k == 2:
        return "sk-admin-" + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)
    if k == 3:
        return "sk-" + mixed(rng, ALNUM, 20) + "T3BlbkFJ" + mixed(rng, ALNUM, 20)
    if k == 4:
        return "sk-proj-" + mixed(rng, ALNUM, 48)
    return "sk-" + mixed(rng, ALNUM, 48)


def anthropic_key(rng: R) -> str:
    return rng.choice(["sk-ant-api03-", "sk-ant-api03-", "sk-ant-admin01-"]) + mixed(rng, B64URL, 93) + "AA"


def hf_token(rng: R) -> str:
    while True:
        s = r(rng, string.ascii_letters, 34)
        if any(c.isupper() for c in s) and any(c.islower() for c in s):
            return rng.choice(["hf_", "hf_", "hf_", "api_org_"]) + s


TOKENS = {
    "openai_key": openai_key,
    "anthropic_key": anthropic_key,
    "huggingface_token": hf_token,
    "groq_key": lambda g: "gsk_" + mixed(g, ALNUM, 52),
    "replicate_token": lambda g: "r8_" + mixed(g, ALNUM, 37),
    "perplexity_key": lambda g: "pplx-" + mixed(g, ALNUM, 48),
    "fireworks_key": lambda g: "fw_" + mixed(g, ALNUM, 24),
    "deepseek_key": lambda g: "sk-" + hexs(g, 32),
    "xai_key": lambda g: "xai-" + mixed(g, ALNUM, 80),
    "langsmith_key": lambda g: g.choice(["lsv2_pt_", "lsv2_sk_"]) + hexs(g, 32) + "_" + hexs(g, 10),
    "pinecone_key": lambda g: "pcsk_" + mixed(g, ALNUM, g.choice([5, 6])) + "_" + mixed(g, ALNUM, 63),
    "databricks_token": lambda g: "dapi" + hexs(g, 32) + g.choice(["", "", "-2", "-3"]),
    "together_key": lambda g: g.choice([hexs(g, 64), "tgp_v1_" + mixed(g, B64URL, 43)]),
}

# (env/key name, type, generator) of keys that have no prefix: only their key names them
KEYED = [
    ("COHERE_API_KEY", "cohere_key", lambda g: mixed(g, ALNUM, 40)),
    ("CO_API_KEY", "cohere_key", lambda g: mixed(g, ALNUM, 40)),
    ("MISTRAL_API_KEY", "mistral_key", lambda g: mixed(g, ALNUM, 32)),
    ("WANDB_API_KEY", "wandb_key", lambda g: hexs(g, 40)),
    ("AZURE_OPENAI_API_KEY", "azure_openai_key", lambda g: hexs(g, 32)),
    ("AZURE_OPENAI_KEY", "azure_openai_key", lambda g: hexs(g, 32)),
    ("TOGETHER_API_KEY", "together_key", lambda g: hexs(g, 64)),
    ("COMET_API_KEY", "comet_key", lambda g: mixed(g, ALNUM, 25)),
    ("PINECONE_API_KEY", "pinecone_key", lambda g: uuid4(g)),
    ("DATABRICKS_TOKEN", "databricks_token", lambda g: "dapi" + hexs(g, 32)),
    ("VLLM_API_KEY", "api_key", lambda g: mixed(g, B64URL, 32)),
    ("LANGFUSE_SECRET_KEY", "api_key", lambda g: "sk-lf-" + uuid4(g)),
]

ENV_PREFIXED = {
    "openai_key": ["OPENAI_API_KEY", "OPENAI_KEY"],
    "anthropic_key": ["ANTHROPIC_API_KEY", "CLAUDE_API_KEY"],
    "huggingface_token": ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN"],
    "groq_key": ["GROQ_API_KEY"],
    "replicate_token": ["REPLICATE_API_TOKEN"],
    "perplexity_key": ["PERPLEXITY_API_KEY", "PPLX_API_KEY"],
    "fireworks_key": ["FIREWORKS_API_KEY"],
    "deepseek_key": ["DEEPSEEK_API_KEY"],
    "xai_key": ["XAI_API_KEY", "GROK_API_KEY"],
    "langsmith_key": ["LANGCHAIN_API_KEY", "LANGSMITH_API_KEY"],
    "pinecone_key": ["PINECONE_API_KEY"],
    "databricks_token": ["DATABRICKS_TOKEN"],
    "together_key": ["TOGETHER_API_KEY"],
}


def token(rng: R) -> tuple[str, str]:
    kind = rng.choice(list(TOKENS))
    return TOKENS[kind](rng), kind


def neptune_token(rng: R) -> str:
    payload = {"api_address": "https://app.neptune.ai", "api_url": "https://app.neptune.ai", "api_key": uuid4(rng)}
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def aws_key_id(rng: R) -> str:
    return rng.choice(["AKIA", "ASIA"]) + r(rng, UPPER + "234567", 16)


def aws_secret(rng: R) -> str:
    return mixed(rng, B64, 40)


def aws_session(rng: R) -> str:
    return "IQoJb3JpZ2luX2Vj" + mixed(rng, B64, rng.choice([300, 420, 612]))


def pem_escaped(rng: R) -> str:
    body = base64.b64encode(rng.randbytes(rng.choice([600, 900, 1200]))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PRIVATE KEY-----\\n" + "\\n".join(lines) + "\\n-----END PRIVATE KEY-----"


# ---------------------------------------------------------------- look-alikes

MODELS = ["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-70B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3",
          "Qwen/Qwen2.5-72B-Instruct-AWQ", "google/gemma-2-9b-it", "microsoft/Phi-3-mini-4k-instruct",
          "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "mistralai/Mixtral-8x7B-Instruct-v0.1", "BAAI/bge-large-en-v1.5",
          "sentence-transformers/all-MiniLM-L6-v2", "TheBloke/Llama-2-13B-chat-GPTQ", "nvidia/Llama-3.1-Nemotron-70B-Instruct-HF"]  # fmt: skip
API_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-2025-04-14", "o3-mini", "claude-3-5-sonnet-20241022",
              "claude-sonnet-4-20250514", "claude-3-haiku-20240307", "text-embedding-3-large", "mistral-large-latest",
              "llama-3.3-70b-versatile", "command-r-plus", "grok-2-1212", "sonar-pro", "deepseek-chat"]  # fmt: skip
GPUS = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "NVIDIA A10G", "Tesla T4", "NVIDIA H200"]


def model(rng: R) -> str:
    return rng.choice(MODELS)


def git_sha(rng: R) -> str:
    return hexs(rng, 40)


def short_sha(rng: R) -> str:
    return hexs(rng, 7)


def gpu_uuid(rng: R) -> str:
    h = r(rng, HEX, 32)
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def mig_uuid(rng: R) -> str:
    h = r(rng, HEX, 32)
    return f"MIG-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pci_bus(rng: R) -> str:
    return f"00000000:{rng.randrange(256):02X}:00.0"


def chatcmpl(rng: R) -> str:
    return rng.choice([f"chatcmpl-{mixed(rng, ALNUM, 29)}", f"chatcmpl-{hexs(rng, 32)}", f"cmpl-{hexs(rng, 32)}-0"])


def req_id(rng: R) -> str:
    return rng.choice([f"req_{hexs(rng, 32)}", f"req_011C{mixed(rng, B58, 20)}", f"req-{uuid4(rng)}"])


def msg_id(rng: R) -> str:
    return rng.choice(
        [f"msg_01{mixed(rng, B58, 22)}", f"toolu_01{mixed(rng, B58, 22)}", f"msgbatch_01{mixed(rng, B58, 22)}"]
    )


def oai_object_id(rng: R) -> str:
    return rng.choice([f"file-{mixed(rng, ALNUM, 24)}", f"asst_{mixed(rng, ALNUM, 24)}", f"thread_{mixed(rng, ALNUM, 24)}",
                       f"batch_{hexs(rng, 32)}", f"org-{mixed(rng, ALNUM, 24)}", f"proj_{mixed(rng, ALNUM, 24)}",
                       f"ftjob-{mixed(rng, ALNUM, 24)}", f"call_{mixed(rng, ALNUM, 24)}", f"run_{mixed(rng, ALNUM, 24)}"])  # fmt: skip


def trace_id(rng: R) -> str:
    return hexs(rng, 32)


def span_id(rng: R) -> str:
    return hexs(rng, 16)


def sha256(rng: R) -> str:
    return hexs(rng, 64)


def pod(rng: R, base: str) -> str:
    return f"{base}-{r(rng, 'bcdfghjklmnpqrstvwxz2456789', 10)}-{r(rng, 'bcdfghjklmnpqrstvwxz2456789', 5)}"


def seed(rng: R) -> str:
    return str(rng.choice([rng.randrange(0, 100), rng.randrange(2**31), rng.getrandbits(63), 1234, 42]))


def embedding(rng: R) -> str:
    return "[" + ", ".join(f"{rng.uniform(-0.2, 0.2):.8f}" for _ in range(rng.randrange(4, 9))) + ", ...]"


def token_ids(rng: R) -> str:
    return "[" + ", ".join(str(rng.randrange(128256)) for _ in range(rng.randrange(6, 16))) + "]"


def masked_key(rng: R) -> str:
    tail = mixed(rng, ALNUM, 4)
    return rng.choice([f"sk-proj-{'*' * 148}{tail}", f"sk-{'*' * 44}{tail}", f"sk-ant-api03-...{tail}", f"hf_****{tail}",
                       f"sk-...{tail}", f"{'*' * 28}{tail}"])  # fmt: skip


PLACEHOLDER_PROMPTS = [
    "Write a regex that matches <email> addresses and cards like XXXX-XXXX-XXXX-XXXX",
    "Replace every phone number with +1 (XXX) XXX-XXXX and SSNs with ***-**-****",
    "Extract the fields {email}, {phone} and {iban} from the form below",
    "Use the format name@domain for emails and 0000 0000 0000 0000 for test cards",
    "Mask the card as **** **** **** 1234 and the IBAN as DE** **** **** **** **** **",
    "Your API key looks like sk-... ; never paste it in a prompt",
    "Set OPENAI_API_KEY=<your key> in .env, then run `huggingface-cli login`",
]

REDACTED = ["[REDACTED:EMAIL]", "[REDACTED:OPENAI_API_KEY]", "[REDACTED:PHONE]", "[REDACTED:CREDIT_CARD]",
            "[REDACTED:BEARER_TOKEN]", "[REDACTED:HUGGINGFACE_TOKEN]", "[REDACTED:IPV4]", "[REDACTED:API_KEY]"]  # fmt: skip

SK_WORDS = ["sk-learn", "task-queue-worker", "mask-rcnn", "risk-score", "disk-pressure", "ask-gpt", "desk-top",
            "flask-api", "sk-proj-template", "kiosk-mode", "husk-v2"]  # fmt: skip


def ts(rng: R) -> str:
    return f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}Z"


def hms(rng: R) -> str:
    return f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


# ---------------------------------------------------------------- chat content in several languages


def chat_content(rng: R) -> list[Frag]:
    """A user message that holds PII, as fragments (positives labelled)."""
    lang = rng.randrange(10)
    em = (email(rng), "email")
    ph = (phone(rng), "phone")
    if lang == 0:
        return [
            "Hi, my email is ",
            em,
            " and my phone is ",
            ph,
            ". Please update my card ",
            (pan(rng), "credit_card"),
            ".",
        ]
    if lang == 1:
        return ["Hallo, meine E-Mail ist ", em, ", Telefon ", ph, ", IBAN ", (iban(rng), "iban"), ". Danke!"]
    if lang == 2:
        return ["Bonjour, mon adresse e-mail est ", em, " et mon numéro est ", ph, ". Mon IBAN : ", (iban(rng), "iban")]
    if lang == 3:
        return [
            "Hola, mi correo es ",
            em,
            ", mi tarjeta es ",
            (pan(rng), "credit_card"),
            " y vivo en Calle Mayor 12, Madrid.",
        ]
    if lang == 4:
        return ["Olá, meu e-mail é ", em, ", telefone ", ph, "."]
    if lang == 5:
        return ["メール：", em, "、電話：", ph, "。カード番号は ", (pan(rng), "credit_card"), " です。"]
    if lang == 6:
        return ["我的邮箱是 ", em, "，电话 ", ph, "。"]
    if lang == 7:
        return ["My SSN is ", (ssn_dashed(rng), "ssn"), " and you can reach me at ", em]
    if lang == 8:
        return ["Ciao, la mia email è ", em, ", IBAN ", (iban(rng), "iban"), ", cellulare ", ph]
    return ["मेरा ईमेल ", em, " है और फ़ोन ", ph, " है"]


def json_escape(frags: list[Frag], ascii_only: bool) -> list[Frag]:
    """The fragments as they appear inside a JSON string (json.dumps of the joined text, quotes stripped)."""
    out: list[Frag] = []
    for f in frags:
        if isinstance(f, tuple):
            out.append((json.dumps(f[0], ensure_ascii=ascii_only)[1:-1], f[1]))
        else:
            out.append(json.dumps(f, ensure_ascii=ascii_only)[1:-1])
    return out


def py_repr(frags: list[Frag]) -> list[Frag]:
    """Inside a Python str repr with single quotes (non-ASCII kept)."""
    out: list[Frag] = []
    for f in frags:
        v = f[0] if isinstance(f, tuple) else f
        e = repr(v)[1:-1] if "'" not in v else v.replace("'", "\\'")
        out.append((e, f[1]) if isinstance(f, tuple) else e)
    return out


# ---------------------------------------------------------------- families


def f_vllm(rng: R) -> Sample:
    k = rng.randrange(8)
    d = f"{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} {hms(rng)}"
    if k == 0:
        content = py_repr(chat_content(rng))
        return mk(f"INFO {d} [logger.py:39] Received request ", (chatcmpl(rng), "~request_id"), ": prompt: '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n",
                  *content, "<|eot_id|>', params: SamplingParams(n=1, temperature=0.7, top_p=0.9, seed=", (seed(rng), "~seed"),
                  ", max_tokens=", (str(rng.randrange(16, 4096)), "~token_count"), "), prompt_token_ids: ", (token_ids(rng), "~token_ids"), ", lora_request: None.")  # fmt: skip
    if k == 1:
        key = (mixed(rng, B64URL, 32), "api_key") if rng.random() < 0.5 else token(rng)
        return mk(f"INFO {d} [api_server.py:585] vLLM API server version ", ("0.6.3.post1", "~version"), "\nINFO ", d,
                  " [api_server.py:586] args: Namespace(host=None, port=8000, uvicorn_log_level='info', allow_credentials=False, api_key='",
                  key, "', model='", (model(rng), "~model_name"), "', revision='", (git_sha(rng), "~git_sha"), "', tokenizer=None, seed=",
                  (seed(rng), "~seed"), ", gpu_memory_utilization=0.9, tensor_parallel_size=", str(rng.choice([1, 2, 4, 8])), ")")  # fmt: skip
    if k == 2:
        return mk(
            f"INFO {d} [metrics.py:351] Avg prompt throughput: {rng.uniform(1, 900):.1f} tokens/s, Avg generation throughput: {rng.uniform(1, 900):.1f} tokens/s, Running: {rng.randrange(64)} reqs, Pending: 0 reqs, GPU KV cache usage: {rng.uniform(0, 99):.1f}%, CPU KV cache usage: 0.0%."
        )
    if k == 3:
        ip: list[Frag] = [(ipv4(rng), "ipv4")] if rng.random() < 0.7 else ["[", (ipv6(rng), "ipv6"), "]"]
        return mk("INFO:     ", *ip, f':{rng.randrange(1024, 65535)} - "POST /v1/chat/completions HTTP/1.1" 200 OK')
    if k == 4:
        return mk(f"INFO {d} [model_runner.py:1056] Starting to load model ", (model(rng), "~model_name"), "@", (short_sha(rng), "~revision"),
                  f"...\nINFO {d} [weight_utils.py:243] Using model weights format ['*.safetensors']\nLoading safetensors checkpoint shards: ",
                  (f"model-0000{rng.randrange(1, 5)}-of-00004.safetensors", "~shard"), f" 100% Completed | 4/4 [00:0{rng.randrange(10)}<00:00]")  # fmt: skip
    if k == 5:
        return mk(f"INFO {d} [engine.py:267] Added request ", (chatcmpl(rng), "~request_id"), ". ", f"(VllmWorkerProcess pid={rng.randrange(100, 99999)}) INFO {d} ",
                  "[custom_all_reduce.py:233] Registering ", str(rng.randrange(1000, 9000)), " cuda graph addresses on ", (gpu_uuid(rng), "~gpu_uuid"))  # fmt: skip
    if k == 6:
        tk, kind = token(rng)
        return mk(f"DEBUG {d} [__init__.py:28] env: HF_HUB_OFFLINE=0 HF_TOKEN=", (hf_token(rng), "huggingface_token"), " VLLM_HOST_IP=", (ipv4(rng), "ipv4"),
                  " CUDA_VISIBLE_DEVICES=0,1 ", rng.choice(ENV_PREFIXED[kind]), "=", (tk, kind))  # fmt: skip
    return mk(f"WARNING {d} [serving_chat.py:112] Error in applying chat template from request: ", (chatcmpl(rng), "~request_id"), " user=",
              (email(rng), "email"), " lora=", (f"sql-lora-{short_sha(rng)}", "~lora_name"))  # fmt: skip


def f_tgi(rng: R) -> Sample:
    k = rng.randrange(4)
    t = ts(rng)
    if k == 0:
        return mk('{"timestamp":"', (t, "~timestamp"), '","level":"INFO","fields":{"message":"Args { model_id: \\"', (model(rng), "~model_name"),
                  '\\", revision: Some(\\"', (git_sha(rng), "~git_sha"), '\\"), validation_workers: 2, sharded: None, num_shard: Some(',
                  str(rng.choice([1, 2, 4])), '), quantize: None, hf_token: Some(\\"', (hf_token(rng), "huggingface_token"),
                  '\\"), hostname: \\"', (pod(rng, "tgi-llama"), "~pod_name"), '\\", port: 80 }"},"target":"text_generation_launcher"}')  # fmt: skip
    if k == 1:
        content = json_escape(chat_content(rng), rng.random() < 0.5)
        return mk(t, "  INFO generate{parameters=GenerateParameters { best_of: None, temperature: Some(0.6), seed: Some(", (seed(rng), "~seed"),
                  "), max_new_tokens: Some(", (str(rng.randrange(16, 2048)), "~token_count"), ") } total_time=\"", f"{rng.uniform(0.1, 9):.6f}s",
                  "\" validation_time=\"", f"{rng.uniform(10, 900):.3f}µs", "\" inputs=\"", *content, "\"}: text_generation_router::server: router/src/server.rs:322: Success")  # fmt: skip
    if k == 2:
        return mk(t, " WARN text_generation_router::server: router/src/server.rs:1648: Invalid hostname, defaulting to ", ("0.0.0.0", "~unspecified"),
                  " peer=", (ipv4(rng), "ipv4"), ":", str(rng.randrange(1024, 65535)), " trace_id=", (trace_id(rng), "~trace_id"))  # fmt: skip
    return mk(t, " INFO download: text_generation_launcher: Downloaded ", (f"/data/models--{model(rng).replace('/', '--')}/snapshots/{git_sha(rng)}/model-00002-of-00004.safetensors", "~path"),
              " in 0:00:", f"{rng.randrange(10, 59)}", ". sha256=", (sha256(rng), "~sha256"))  # fmt: skip


def f_triton(rng: R) -> Sample:
    k = rng.randrange(4)
    pre = f"I1129 {hms(rng)}.{r(rng, DIGITS, 6)} {rng.randrange(1, 300)} "
    if k == 0:
        return mk(pre, "grpc_server.cc:2451] Started GRPCInferenceService at ", ("0.0.0.0", "~unspecified"), ":8001\n", pre,
                  "http_server.cc:3558] Started HTTPService at ", ("0.0.0.0", "~unspecified"), ":8000")  # fmt: skip
    if k == 1:
        return mk(pre, "model_lifecycle.cc:818] successfully loaded '", rng.choice(["ensemble", "preprocessing", "tensorrt_llm", "postprocessing"]),
                  "' version ", str(rng.randrange(1, 4)), " on ", (gpu_uuid(rng), "~gpu_uuid"), " (", (pci_bus(rng), "~pci_bus_id"), ")")  # fmt: skip
    if k == 2:
        return mk(pre, "infer_handler.cc:680] [request id: ", (uuid4(rng), "~uuid"), "] client ", (ipv4(rng), "ipv4"), " model tensorrt_llm: input text_input='",
                  *py_repr(chat_content(rng)), "' request_output_len=", (str(rng.randrange(16, 1024)), "~token_count"))  # fmt: skip
    return mk(pre, "server.cc:674] | cuda_memory_pool_byte_size{0} | 67108864 | backend_directory | /opt/tritonserver/backends | ",
              "driver ", ("550.54.15", "~driver_version"), " CUDA ", ("12.4", "~cuda_version"), " | id | ", (uuid4(rng), "~uuid"))  # fmt: skip


def f_ray(rng: R) -> Sample:
    k = rng.randrange(4)
    ip = ipv4(rng)
    if k == 0:
        return mk(f"INFO 2026-11-29 {hms(rng)},{r(rng, DIGITS, 3)} default_LLMDeployment ", (r(rng, LOWER + DIGITS, 8), "~replica_id"), " ",
                  (uuid4(rng), "~request_id"), " -- POST /v1/chat/completions 200 ", f"{rng.uniform(5, 9000):.1f}ms")  # fmt: skip
    if k == 1:
        return mk("(ServeReplica:default:LLMDeployment pid=", str(rng.randrange(100, 99999)), ", ip=", (ip, "ipv4"), ") INFO ",
                  "Received request from user=", (email(rng), "email"), " node_id=", (hexs(rng, 56), "~node_id"))  # fmt: skip
    if k == 2:
        return mk("2026-11-29 ", hms(rng), ",123\tINFO worker.py:1816 -- Connected to Ray cluster. View the dashboard at ", ("127.0.0.1", "~loopback"),
                  ":8265 node_ip_address=", (ip, "ipv4"), " raylet_socket=/tmp/ray/session_2026-11-29_", hms(rng).replace(":", "-"), "_", str(rng.randrange(10**5, 10**6)), "_1/sockets/raylet")  # fmt: skip
    return mk("(raylet, ip=", (ip, "ipv4"), ") [2026-11-29 ", hms(rng), "] worker ", (hexs(rng, 56), "~worker_id"), " exited; env: OPENAI_API_KEY=",
              (openai_key(rng), "openai_key"), " RAY_ADDRESS=auto")  # fmt: skip


def f_torchserve(rng: R) -> Sample:
    k = rng.randrange(3)
    t = f"2026-11-29T{hms(rng)},{r(rng, DIGITS, 3)}"
    if k == 0:
        return mk(t, " [INFO ] main org.pytorch.serve.ModelServer - Inference API bind to: http://", ("0.0.0.0", "~unspecified"), ":8080\n",
                  t, " [INFO ] main org.pytorch.serve.ModelServer - Metrics API bind to: http://", ("127.0.0.1", "~loopback"), ":8082")  # fmt: skip
    if k == 1:
        return mk(t, " [INFO ] W-9000-llm_1.0-stdout MODEL_LOG - payload: ", *py_repr(chat_content(rng)))
    return mk(t, " [INFO ] W-9000-llm_1.0 ACCESS_LOG - /", (ipv4(rng), "ipv4"), ":", str(rng.randrange(1024, 65535)),
              ' "POST /predictions/llm HTTP/1.1" 200 ', str(rng.randrange(1, 9000)), " ts_inference_latency_microseconds ", f"{rng.uniform(1e3, 9e6):.2f}")  # fmt: skip


def f_bentoml(rng: R) -> Sample:
    k = rng.randrange(2)
    if k == 0:
        return mk("2026-11-29T", hms(rng), "+0000 [INFO] [entry_service:llm:", str(rng.randrange(1, 9)), "] ", (ipv4(rng), "ipv4"), ":",
                  str(rng.randrange(1024, 65535)), " (scheme=http,method=POST,path=/generate,type=application/json,length=", str(rng.randrange(10, 9999)),
                  ") (status=200,type=application/json,length=", str(rng.randrange(10, 9999)), ") ", f"{rng.uniform(1, 9999):.3f}ms (trace=",
                  (trace_id(rng), "~trace_id"), ",span=", (span_id(rng), "~span_id"), ",sampled=1,service.name=llm)")  # fmt: skip
    return mk("2026-11-29T", hms(rng), "+0000 [ERROR] [entry_service:llm:1] Exception on /generate [POST] request body: ",
              '{"prompt": "', *json_escape(chat_content(rng), True), '", "max_tokens": ', (str(rng.randrange(16, 999)), "~token_count"), "}")  # fmt: skip


def f_sdk(rng: R) -> Sample:
    k = rng.randrange(12)
    if k == 0:
        return mk("DEBUG:openai._base_client:Request options: {'method': 'post', 'url': '/chat/completions', 'headers': {'Authorization': 'Bearer ",
                  (openai_key(rng), "openai_key"), "'}, 'files': None, 'json_data': {'messages': [{'role': 'user', 'content': '", *py_repr(chat_content(rng)),
                  "'}], 'model': '", (rng.choice(API_MODELS), "~model_name"), "', 'seed': ", (seed(rng), "~seed"), "}}")  # fmt: skip
    if k == 1:
        return mk("DEBUG:anthropic._base_client:Request options: {'method': 'post', 'url': '/v1/messages', 'timeout': 600, 'headers': {'X-Api-Key': '",
                  (anthropic_key(rng), "anthropic_key"), "', 'anthropic-version': '2023-06-01'}, 'json_data': {'max_tokens': ",
                  (str(rng.randrange(16, 8192)), "~token_count"), ", 'messages': [{'role': 'user', 'content': '", *py_repr(chat_content(rng)), "'}]}}")  # fmt: skip
    if k == 2:
        return mk('DEBUG:httpx:HTTP Request: POST https://api.openai.com/v1/chat/completions "HTTP/1.1 200 OK"\n',
                  "DEBUG:openai._base_client:HTTP Response: POST https://api.openai.com/v1/chat/completions \"200 OK\" Headers({'date': 'Sun, 29 Nov 2026 ",
                  hms(rng), " GMT', 'content-type': 'application/json', 'openai-organization': '", (f"org-{mixed(rng, ALNUM, 24)}", "~openai_id"),
                  "', 'openai-processing-ms': '", str(rng.randrange(100, 9000)), "', 'x-request-id': '", (f"req_{hexs(rng, 32)}", "~request_id"),
                  "', 'cf-ray': '", (f"{hexs(rng, 16)}-SJC", "~cf_ray"), "'})\nDEBUG:openai._base_client:request_id: ", (f"req_{hexs(rng, 32)}", "~request_id"))  # fmt: skip
    if k == 3:
        return mk("DEBUG:httpcore.http11:send_request_headers.started request=<Request [b'POST']>\nsend: b'POST /v1/chat/completions HTTP/1.1\\r\\nHost: api.openai.com\\r\\n",
                  "Authorization: Bearer ", (openai_key(rng), "openai_key"), "\\r\\nContent-Type: application/json\\r\\nUser-Agent: OpenAI/Python ",
                  ("1.54.3", "~version"), "\\r\\n\\r\\n'")  # fmt: skip
    if k == 4:
        return mk("DEBUG:httpx:HTTP Request: POST https://", rng.choice(["acme-eastus", "contoso-oai", "prod-swe"]),
                  ".openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01 \"HTTP/1.1 200 OK\" request headers: {'api-key': '",
                  (hexs(rng, 32), "azure_openai_key"), "', 'x-ms-client-request-id': '", (uuid4(rng), "~uuid"), "'}")  # fmt: skip
    if k == 5:
        return mk("DEBUG:urllib3.connectionpool:https://huggingface.co:443 \"GET /api/models/", (model(rng), "~model_name"), "/revision/main HTTP/1.1\" 200 ",
                  str(rng.randrange(100, 99999)), " headers={'authorization': 'Bearer ", (hf_token(rng), "huggingface_token"), "', 'user-agent': 'huggingface_hub/0.26.2; python/3.11.9; torch/2.5.1'}",
                  " x-repo-commit=", (git_sha(rng), "~git_sha"), " x-linked-etag=\"", (sha256(rng), "~etag"), "\"")  # fmt: skip
    if k == 6:
        tk, kind = token(rng)
        hdr = rng.choice(
            ["Authorization: Bearer ", "authorization: Bearer ", "x-api-key: ", "X-API-Key: ", "api-key: "]
        )
        return mk(f"> POST /v1/chat/completions HTTP/2\n> Host: api.{rng.choice(['groq.com', 'together.xyz', 'fireworks.ai', 'perplexity.ai', 'x.ai', 'deepseek.com', 'mistral.ai'])}\n> ",
                  hdr, (tk, kind), "\n> content-type: application/json\n> ")  # fmt: skip
    if k == 7:
        return mk("[llm/start] [1:chain:AgentExecutor > 2:llm:ChatOpenAI] Entering LLM run with input: {\"prompts\": [\"Human: ",
                  *json_escape(chat_content(rng), rng.random() < 0.5), "\"]} run_id=", (f"run-{uuid4(rng)}", "~run_id"))  # fmt: skip
    if k == 8:
        masked = rng.random() < 0.5
        v: list[Frag] = (
            [("SecretStr('**********')", "~masked")] if masked else ["'", (openai_key(rng), "openai_key"), "'"]
        )
        return mk("client=<openai.resources.chat.completions.Completions object at ", (f"0x7f{hexs(rng, 10)}", "~address"), "> model_name='",
                  (rng.choice(API_MODELS), "~model_name"), "' temperature=0.0 openai_api_key=", *v, " openai_organization=None max_retries=2")  # fmt: skip
    if k == 9:
        return mk("openai.AuthenticationError: Error code: 401 - {'error': {'message': 'Incorrect API key provided: ", (masked_key(rng), "~masked_key"),
                  ". You can find your API key at https://platform.openai.com/account/api-keys.', 'type': 'invalid_request_error', 'param': None, 'code': 'invalid_api_key'}}")  # fmt: skip
    if k == 10:
        return mk("DEBUG:anthropic._base_client:HTTP Response: POST https://api.anthropic.com/v1/messages \"200 OK\" Headers({'request-id': '",
                  (req_id(rng), "~request_id"), "', 'anthropic-organization-id': '", (uuid4(rng), "~uuid"), "'}) message id=", (msg_id(rng), "~message_id"),
                  " usage={'input_tokens': ", (str(rng.randrange(1, 99999)), "~token_count"), ", 'output_tokens': ", str(rng.randrange(1, 4096)), "}")  # fmt: skip
    return mk("DEBUG:openai._base_client:Request options: {'method': 'post', 'url': '/files', 'headers': {'Authorization': 'Bearer ",
              (openai_key(rng), "openai_key"), "'}} -> ", (oai_object_id(rng), "~openai_id"), " ", (oai_object_id(rng), "~openai_id"))  # fmt: skip


def f_bodies(rng: R) -> Sample:
    k = rng.randrange(4)
    asc = rng.random() < 0.5
    if k == 0:
        return mk('{"model":"', (rng.choice(API_MODELS), "~model_name"), '","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"',
                  *json_escape(chat_content(rng), asc), '"}],"temperature":0.2,"max_tokens":', (str(rng.randrange(16, 4096)), "~token_count"), "}")  # fmt: skip
    if k == 1:
        return mk('response: {"id":"', (chatcmpl(rng), "~request_id"), '","object":"chat.completion","created":', str(rng.randrange(1_700_000_000, 1_800_000_000)),
                  ',"model":"', (rng.choice(API_MODELS), "~model_name"), '","choices":[{"index":0,"message":{"role":"assistant","content":"I have updated the record for ',
                  *json_escape([(email(rng), "email"), " — new number ", (phone(rng), "phone")], asc),
                  '."},"finish_reason":"stop"}],"usage":{"prompt_tokens":', (str(rng.randrange(1, 9999)), "~token_count"), ',"completion_tokens":',
                  str(rng.randrange(1, 999)), '},"system_fingerprint":"', (f"fp_{hexs(rng, 10)}", "~fingerprint"), '"}')  # fmt: skip
    if k == 2:
        return mk('{"id":"', (msg_id(rng), "~message_id"), '","type":"message","role":"assistant","content":[{"type":"text","text":"',
                  *json_escape(chat_content(rng), asc), '"}],"model":"', (rng.choice(API_MODELS), "~model_name"),
                  '","usage":{"input_tokens":', (str(rng.randrange(1, 9999)), "~token_count"), ',"output_tokens":', str(rng.randrange(1, 999)), "}}")  # fmt: skip
    return mk('{"input": ["', *json_escape(chat_content(rng), asc), '"], "model": "text-embedding-3-small"} -> {"object":"list","data":[{"embedding":',
              (embedding(rng), "~embedding"), ',"index":0}]}')  # fmt: skip


def f_notebook(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            '   "source": [\n    "import os\\n",\n    "os.environ[\\"OPENAI_API_KEY\\"] = \\"',
            (openai_key(rng), "openai_key"),
            '\\"\\n"\n   ]',
        )
    if k == 1:
        tk, kind = token(rng)
        return mk(
            '     "name": "stdout",\n     "output_type": "stream",\n     "text": [\n      "',
            rng.choice(ENV_PREFIXED[kind]),
            "=",
            (tk, kind),
            '\\n"\n     ]',
        )
    if k == 2:
        return mk("In [4]: client = Anthropic(api_key=\"", (anthropic_key(rng), "anthropic_key"), "\")\nIn [5]: client.models.list()\nOut[5]: SyncPage[ModelInfo](data=[ModelInfo(id='",
                  (rng.choice(API_MODELS), "~model_name"), "', created_at=datetime.datetime(2024, 10, 22, 0, 0, tzinfo=datetime.timezone.utc))])")  # fmt: skip
    if k == 3:
        return mk("Out[7]: '", (hf_token(rng), "huggingface_token"), "'\nIn [8]: torch.manual_seed(", (seed(rng), "~seed"), ")\nOut[8]: <torch._C.Generator at ",
                  (f"0x7f{hexs(rng, 10)}", "~address"), ">")  # fmt: skip
    return mk(
        '     "data": {\n      "text/plain": [\n       "tensor(',
        (embedding(rng), "~embedding"),
        ', device=\'cuda:0\')"\n      ]\n     },\n     "execution_count": ',
        str(rng.randrange(1, 99)),
    )


def f_trackers(rng: R) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk("wandb: Appending key for api.wandb.ai to your netrc file: /root/.netrc\nwandb: WANDB_API_KEY=", (hexs(rng, 40), "wandb_key"),
                  "\nwandb: Tracking run with wandb version ", ("0.18.7", "~version"))  # fmt: skip
    if k == 1:
        rid = r(rng, LOWER + DIGITS, 8)
        return mk("wandb: 🚀 View run ", rng.choice(["dainty-sun-12", "crimson-wave-7", "lora-r16"]), " at: https://wandb.ai/acme/llm-ft/runs/", (rid, "~wandb_run_id"),
                  "\nwandb: Run data is saved locally in /workspace/wandb/run-20261129_", hms(rng).replace(":", ""), "-", (rid, "~wandb_run_id"))  # fmt: skip
    if k == 2:
        return mk("2026/11/29 ", hms(rng), " INFO mlflow.tracking._tracking_service.client: 🏃 View run at: http://mlflow.internal:5000/#/experiments/",
                  str(rng.randrange(1, 999)), "/runs/", (hexs(rng, 32), "~mlflow_run_id"), " run_id=", (hexs(rng, 32), "~mlflow_run_id"),
                  " params={'lr': 0.0003, 'seed': ", (seed(rng), "~seed"), "}")  # fmt: skip
    if k == 3:
        return mk("MLFLOW_TRACKING_URI=https://", rng.choice(["dbc-1a2b3c4d-5e6f", "adb-1234567890123456.7"]), ".cloud.databricks.com MLFLOW_TRACKING_TOKEN=",
                  ("dapi" + hexs(rng, 32), "databricks_token"), " DATABRICKS_HOST=https://adb-", str(rng.randrange(10**15, 10**16)), ".", str(rng.randrange(1, 20)), ".azuredatabricks.net")  # fmt: skip
    if k == 4:
        return mk("COMET INFO: Experiment is live on comet.com https://www.comet.com/acme/llm/", (hexs(rng, 32), "~experiment_key"),
                  "\nCOMET INFO: config COMET_API_KEY=", (mixed(rng, ALNUM, 25), "comet_key"), " COMET_WORKSPACE=acme")  # fmt: skip
    if k == 5:
        return mk("[neptune] [info   ] Neptune initialized. Open in the app: https://app.neptune.ai/acme/llm/e/LLM-", str(rng.randrange(1, 9999)),
                  " NEPTUNE_API_TOKEN=\"", (neptune_token(rng), "neptune_token"), "\"")  # fmt: skip
    if k == 6:
        return mk("wandb: logging config: {'model': '", (model(rng), "~model_name"), "', 'revision': '", (short_sha(rng), "~revision"),
                  "', 'seed': ", (seed(rng), "~seed"), ", 'hf_token': '", (hf_token(rng), "huggingface_token"), "', 'gpu': '", (gpu_uuid(rng), "~gpu_uuid"), "'}")  # fmt: skip
    return mk("mlflow.exceptions.RestException: INVALID_PARAMETER_VALUE: Response: {'error_code': 'INVALID_PARAMETER_VALUE'} run ",
              (hexs(rng, 32), "~mlflow_run_id"), " artifact sha256:", (sha256(rng), "~sha256"))  # fmt: skip


def f_login(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk("$ huggingface-cli login --token ", (hf_token(rng), "huggingface_token"), " --add-to-git-credential\nToken is valid (permission: write).\n",
                  "Your token has been saved in your configured git credential helpers (store).\nYour token has been saved to /root/.cache/huggingface/token\nLogin successful")  # fmt: skip
    if k == 1:
        return mk("$ git credential fill\nprotocol=https\nhost=huggingface.co\n\nprotocol=https\nhost=huggingface.co\nusername=",
                  rng.choice(["jdoe", "ml-bot", "hf_user"]), "\npassword=", (hf_token(rng), "huggingface_token"))  # fmt: skip
    if k == 2:
        return mk(
            "https://",
            rng.choice(["jdoe", "user", "ml-bot"]),
            ":",
            (hf_token(rng), "huggingface_token"),
            "@huggingface.co",
        )
    if k == 3:
        return mk("GIT_TRACE=1 git push: trace: run_command: 'git credential-store get' < protocol=https host=huggingface.co > password=",
                  (hf_token(rng), "huggingface_token"), " commit ", (git_sha(rng), "~git_sha"))  # fmt: skip
    return mk("_|    _|  _|    _|    _|_|_|    _|_|_|  _|_|_|  _|      _|    _|_|_|      _|_|_|_|\n    To login, `huggingface_hub` requires a token generated from https://huggingface.co/settings/tokens .\n",
              "Enter your token (input will not be visible): \nToken: ", (hf_token(rng), "huggingface_token"))  # fmt: skip


def f_env(rng: R) -> Sample:
    k = rng.randrange(4)
    if k == 0:
        tk, kind = token(rng)
        name = rng.choice(ENV_PREFIXED[kind])
        q = rng.choice(["", '"', "'"])
        return mk(rng.choice(["", "export "]), name, "=", q, (tk, kind), q)
    if k == 1:
        name, kind, gen = rng.choice(KEYED)
        q = rng.choice(["", '"'])
        return mk(rng.choice(["", "export "]), name, "=", q, (gen(rng), kind), q)
    if k == 2:
        neg = rng.choice([
            ("OPENAI_BASE_URL=", ("https://api.openai.com/v1", "~url")), ("MODEL_NAME=", (rng.choice(API_MODELS), "~model_name")),
            ("LANGCHAIN_TRACING_V2=", ("true", "~bool")), ("LANGCHAIN_PROJECT=", ("rag-prod-eu", "~name")), ("HF_HOME=", ("/data/hf-cache", "~path")),
            ("CUDA_VISIBLE_DEVICES=", ("0,1,2,3", "~devices")), ("AZURE_OPENAI_ENDPOINT=", ("https://contoso-oai.openai.azure.com/", "~url")),
            ("AZURE_OPENAI_API_VERSION=", ("2024-06-01", "~version")), ("OPENAI_API_KEY=", ("${OPENAI_API_KEY}", "~template")),
            ("ANTHROPIC_API_KEY=", ("<your-anthropic-key>", "~template")), ("HF_TOKEN=", ("{{ secrets.HF_TOKEN }}", "~template")),
            ("WANDB_PROJECT=", ("llm-finetune", "~name")), ("PINECONE_INDEX=", ("docs-prod", "~name")),
            ("MODEL_REVISION=", (git_sha(rng), "~git_sha")), ("NVIDIA_VISIBLE_DEVICES=", (gpu_uuid(rng), "~gpu_uuid")),
            ("VLLM_SEED=", (seed(rng), "~seed")), ("WANDB_RUN_ID=", (r(rng, LOWER + DIGITS, 8), "~wandb_run_id")),
            ("MLFLOW_RUN_ID=", (hexs(rng, 32), "~mlflow_run_id")), ("OTEL_TRACE_ID=", (trace_id(rng), "~trace_id")),
            ("OPENAI_API_KEY=", ("[REDACTED:OPENAI_API_KEY]", "~redacted")),
        ])  # fmt: skip
        return mk(neg[0], neg[1])
    # AWS credentials for Bedrock
    return mk("AWS_ACCESS_KEY_ID=", (aws_key_id(rng), "aws_key_id"), "\nAWS_SECRET_ACCESS_KEY=", (aws_secret(rng), "aws_secret"),
              "\nAWS_SESSION_TOKEN=", (aws_session(rng), "aws_session_token"), "\nAWS_REGION=us-east-1\nBEDROCK_MODEL_ID=anthropic.claude-3-5-sonnet-20241022-v2:0")  # fmt: skip


def f_traceback(rng: R) -> Sample:
    k = rng.randrange(4)
    if k == 0:
        return mk("  File \"/app/llm.py\", line ", str(rng.randrange(10, 400)), ", in call_model\n    resp = client.chat.completions.create(model=model, messages=messages)\n",
                  "    api_key = '", (openai_key(rng), "openai_key"), "'\n    model = '", (rng.choice(API_MODELS), "~model_name"), "'\n    user_email = '", (email(rng), "email"), "'")  # fmt: skip
    if k == 1:
        tk, kind = token(rng)
        return mk("│ ", rng.choice(["api_key", "self.api_key"] if all(c in HEX for c in tk) else ["api_key", "token", "self.api_key", "key"]), " = '", (tk, kind), "'", " " * rng.randrange(1, 8), "│\n│ base_url = 'https://api.groq.com/openai/v1' │\n│ request_id = '",
                  (req_id(rng), "~request_id"), "' │")  # fmt: skip
    if k == 2:
        return mk("anthropic.AuthenticationError: Error code: 401 - {'type': 'error', 'error': {'type': 'authentication_error', 'message': 'invalid x-api-key'}, 'request_id': '",
                  (req_id(rng), "~request_id"), "'}\n  headers = {'x-api-key': '", (anthropic_key(rng), "anthropic_key"), "', 'anthropic-version': '2023-06-01'}")  # fmt: skip
    return mk("Traceback (most recent call last):\n  File \"/usr/lib/python3.11/site-packages/langchain_openai/chat_models/base.py\", line 712, in _generate\n",
              "    self = ChatOpenAI(model_name='", (rng.choice(API_MODELS), "~model_name"), "', openai_api_key='", (openai_key(rng), "openai_key"),
              "')\n  kwargs = {'messages': [HumanMessage(content='", *py_repr(chat_content(rng)), "')]}")  # fmt: skip


def f_pydantic(rng: R) -> Sample:
    k = rng.randrange(3)
    if k == 0:
        return mk("pydantic_core._pydantic_core.ValidationError: 1 validation error for Settings\nopenai_api_key\n  String should match pattern '^sk-' [type=string_pattern_mismatch, input_value='",
                  (anthropic_key(rng), "anthropic_key"), "', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.9/v/string_pattern_mismatch")  # fmt: skip
    if k == 1:
        em, ph = email(rng), phone(rng)
        return mk("2 validation errors for ChatRequest\nuser.age\n  Input should be a valid integer [type=int_parsing, input_value={'email': '", (em, "email"),
                  "', 'phone': '", (ph, "phone"), "', 'age': 'x'}, input_type=dict]\nmessages.0.content\n  Field required [type=missing, input_value={'role': 'user'}, input_type=dict]")  # fmt: skip
    return mk("1 validation error for PaymentIntent\ncard.number\n  Value error, card expired [type=value_error, input_value='", (pan(rng), "credit_card"),
              "', input_type=str]\ncard.last4 '", (f"**** **** **** {r(rng, DIGITS, 4)}", "~masked_card"), "'")  # fmt: skip


def f_otel(rng: R) -> Sample:
    k = rng.randrange(3)
    tid, sid = trace_id(rng), span_id(rng)
    if k == 0:
        tk, kind = rng.choice([(openai_key(rng), "openai_key"), token(rng), (anthropic_key(rng), "anthropic_key")])
        return mk('{"name": "POST /v1/chat/completions", "context": {"trace_id": "0x', (tid, "~trace_id"), '", "span_id": "0x', (sid, "~span_id"),
                  '"}, "attributes": {"http.request.header.authorization": ["Bearer ', (tk, kind), '"], "gen_ai.request.model": "',
                  (rng.choice(API_MODELS), "~model_name"), '", "gen_ai.usage.input_tokens": ', (str(rng.randrange(1, 9999)), "~token_count"),
                  ', "server.address": "api.openai.com", "client.address": "', (ipv4(rng), "ipv4"), '"}}')  # fmt: skip
    if k == 1:
        hdr = rng.choice(
            [("x-api-key", anthropic_key(rng), "anthropic_key"), ("api-key", hexs(rng, 32), "azure_openai_key")]
        )
        return mk("Span #", str(rng.randrange(10)), "\n    Trace ID       : ", (tid, "~trace_id"), "\n    Parent ID      : ", (sid, "~span_id"),
                  "\nAttributes:\n     -> http.request.header.", hdr[0], ": Slice([\"", (hdr[1], hdr[2]), "\"])\n     -> gen_ai.prompt.0.content: Str(",
                  *chat_content(rng), ")")  # fmt: skip
    return mk("traceparent: 00-", (tid, "~trace_id"), "-", (sid, "~span_id"), "-01 gen_ai.response.id=", (chatcmpl(rng), "~request_id"),
              " gen_ai.usage.output_tokens=", (str(rng.randrange(1, 4096)), "~token_count"))  # fmt: skip


def f_k8s(rng: R) -> Sample:
    k = rng.randrange(5)
    p = pod(rng, rng.choice(["vllm-llama3", "tgi-mistral", "triton-ensemble", "ray-worker-gpu"]))
    node = f"ip-10-{rng.randrange(256)}-{rng.randrange(256)}-{rng.randrange(1, 255)}.ec2.internal"
    if k == 0:
        return mk(f"{rng.randrange(1, 59)}m  Warning  FailedScheduling  pod/", (p, "~pod_name"), "  0/", str(rng.randrange(2, 20)),
                  " nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod.")  # fmt: skip
    if k == 1:
        return mk("Normal  Pulled  pod/", (p, "~pod_name"), "  Successfully pulled image \"vllm/vllm-openai:v0.6.3@sha256:", (sha256(rng), "~docker_digest"),
                  "\" in 1m", str(rng.randrange(60)), ".2s on node ", (node, "~ec2_hostname"))  # fmt: skip
    if k == 2:
        return mk("Normal  Scheduled  pod/", (p, "~pod_name"), "  Successfully assigned ml/", (p, "~pod_name"), " to ", (node, "~ec2_hostname"),
                  "; podIP ", (ipv4(rng), "ipv4"), " hostIP ", (ipv4(rng), "ipv4"))  # fmt: skip
    if k == 3:
        return mk("Warning  Failed  pod/", (p, "~pod_name"), "  Error: container has runAsNonRoot; env HUGGING_FACE_HUB_TOKEN=",
                  (hf_token(rng), "huggingface_token"), " from secretKeyRef hf-token/token")  # fmt: skip
    return mk("Warning  BackOff  pod/", (p, "~pod_name"), "  Back-off restarting failed container vllm; last log: RuntimeError: CUDA error: out of memory on ",
              (gpu_uuid(rng), "~gpu_uuid"), " (", (mig_uuid(rng), "~gpu_uuid"), ")")  # fmt: skip


def f_gpu(rng: R) -> Sample:
    k = rng.randrange(4)
    if k == 0:
        return mk("| NVIDIA-SMI ", ("550.54.15", "~driver_version"), "              Driver Version: ", ("550.54.15", "~driver_version"),
                  "      CUDA Version: ", (rng.choice(["12.4", "12.2", "11.8"]), "~cuda_version"), "     |\n|   ", str(rng.randrange(8)), "  ",
                  rng.choice(GPUS), "    On  |   ", (pci_bus(rng), "~pci_bus_id"), " Off |                    0 |")  # fmt: skip
    if k == 1:
        return mk('DCGM_FI_DEV_GPU_UTIL{gpu="', str(rng.randrange(8)), '",UUID="', (gpu_uuid(rng), "~gpu_uuid"), '",pci_bus_id="', (pci_bus(rng), "~pci_bus_id"),
                  '",device="nvidia0",modelName="', rng.choice(GPUS), '",Hostname="', (pod(rng, "dcgm-exporter"), "~pod_name"), '",DCGM_FI_DRIVER_VERSION="',
                  ("550.54.15", "~driver_version"), '"} ', str(rng.randrange(100)))  # fmt: skip
    if k == 2:
        return mk("GPU 0: ", rng.choice(GPUS), " (UUID: ", (gpu_uuid(rng), "~gpu_uuid"), ")\n  MIG 3g.40gb     Device  0: (UUID: ", (mig_uuid(rng), "~gpu_uuid"),
                  ")\nNCCL version ", ("2.21.5", "~version"), "+cuda12.4 cuDNN ", ("8.9.7", "~version"))  # fmt: skip
    return mk("dcgmi diag: GPU ", (gpu_uuid(rng), "~gpu_uuid"), " Xid 79 at ", (pci_bus(rng), "~pci_bus_id"), " serial ", (r(rng, DIGITS, 13), "~gpu_serial"),
              " ECC sbe=", str(rng.randrange(99)))  # fmt: skip


def f_gcp_sa(rng: R) -> Sample:
    proj = rng.choice(["acme-ml-prod", "vertex-llm-123", "rag-eval"])
    name = rng.choice(["vertex-sa", "llm-inference", "gke-workload"])
    return mk('{"type": "service_account", "project_id": "', proj, '", "private_key_id": "', (hexs(rng, 40), "~key_id"), '", "private_key": "',
              (pem_escaped(rng), "private_key"), '\\n", "client_email": "', (f"{name}@{proj}.iam.gserviceaccount.com", "email"), '", "client_id": "',
              str(rng.randrange(10**20, 10**21)), '", "token_uri": "https://oauth2.googleapis.com/token"}')  # fmt: skip


def f_negative(rng: R) -> Sample:
    k = rng.randrange(14)
    if k == 0:
        return mk(
            "prompt: '",
            (rng.choice(PLACEHOLDER_PROMPTS), "~placeholder"),
            "' tokens=",
            (str(rng.randrange(1, 999)), "~token_count"),
        )
    if k == 1:
        return mk(
            "user=",
            (rng.choice(REDACTED), "~redacted"),
            " key=",
            (rng.choice(REDACTED), "~redacted"),
            ' msg="Contact ',
            (rng.choice(REDACTED), "~redacted"),
            '"',
        )
    if k == 2:
        return mk(
            "pip install ",
            (rng.choice(SK_WORDS), "~sk_word"),
            " ",
            (rng.choice(SK_WORDS), "~sk_word"),
            "; the sk-learn pipeline uses task-",
            str(rng.randrange(99)),
            " workers",
        )
    if k == 3:
        return mk("loading ", (model(rng), "~model_name"), "@", (short_sha(rng), "~revision"), " shards ", (f"model-0000{rng.randrange(1, 9)}-of-0000{rng.randrange(1, 9)}.safetensors", "~shard"),
                  " sha256:", (sha256(rng), "~sha256"), " from snapshots/", (git_sha(rng), "~git_sha"))  # fmt: skip
    if k == 4:
        return mk("request ", (chatcmpl(rng), "~request_id"), " ", (req_id(rng), "~request_id"), " ", (msg_id(rng), "~message_id"), " ", (oai_object_id(rng), "~openai_id"),
                  " prompt_tokens=", (str(rng.randrange(1, 99999)), "~token_count"), " completion_tokens=", str(rng.randrange(1, 4096)))  # fmt: skip
    if k == 5:
        return mk(
            "tokenizer: bos_token_id=128000 eos_token_id=[128001, 128008, 128009] input_ids=",
            (token_ids(rng), "~token_ids"),
        )
    if k == 6:
        return mk(
            "embedding[0] = ",
            (embedding(rng), "~embedding"),
            " norm=",
            f"{rng.uniform(0.9, 1.1):.6f}",
            " dim=",
            str(rng.choice([384, 768, 1024, 3072])),
        )
    if k == 7:
        return mk(
            "set_seed(",
            (seed(rng), "~seed"),
            ") generator seed=",
            (seed(rng), "~seed"),
            " numpy seed ",
            (seed(rng), "~seed"),
        )
    if k == 8:
        return mk("trace_id=", (trace_id(rng), "~trace_id"), " span_id=", (span_id(rng), "~span_id"), " pod=", (pod(rng, "vllm-qwen2"), "~pod_name"),
                  " image=ghcr.io/huggingface/text-generation-inference@sha256:", (sha256(rng), "~docker_digest"))  # fmt: skip
    if k == 9:
        return mk("torch ", ("2.5.1+cu124", "~version"), " CUDA ", ("12.4", "~cuda_version"), " driver ", ("550.90.07", "~driver_version"), " GPU ", (gpu_uuid(rng), "~gpu_uuid"),
                  " bus ", (pci_bus(rng), "~pci_bus_id"))  # fmt: skip
    if k == 10:
        return mk("mlflow run ", (hexs(rng, 32), "~mlflow_run_id"), " wandb run ", (r(rng, LOWER + DIGITS, 8), "~wandb_run_id"), " commit ", (git_sha(rng), "~git_sha"),
                  " experiment_id=", str(rng.randrange(1, 10**6)))  # fmt: skip
    if k == 11:
        return mk(
            "card on file: ",
            (masked_pan(rng), "~masked_card"),
            " test card ",
            (luhn_bad(rng), "~luhn_invalid"),
            " amount=",
            f"{rng.uniform(1, 999):.2f}",
        )
    if k == 12:
        return mk(
            "Incorrect API key provided: ",
            (masked_key(rng), "~masked_key"),
            " for model ",
            (rng.choice(API_MODELS), "~model_name"),
        )
    return mk("fine-tuned model ", (f"ft:gpt-4o-mini-2024-07-18:acme::{mixed(rng, ALNUM, 8)}", "~model_name"), " job ", (f"ftjob-{mixed(rng, ALNUM, 24)}", "~openai_id"),
              " checkpoint ", (f"ftckpt_{mixed(rng, ALNUM, 24)}", "~openai_id"))  # fmt: skip


CJK_LEAD = [  # JSON escapes (ensure_ascii), as written in the log
    r"\u30ab\u30fc\u30c9\u306f",
    r"\u756a\u53f7\u306f",
    r"\u53e3\u5ea7\uff1a",
    r"\u6211\u7684\u90ae\u7bb1\u662f",
    r"\uc8fc\uc18c\ub294",
]
CJK_TAIL = [r"\u3067\u3059", r"\u3002", r"\uff0c\u8c22\u8c22", r"\uc785\ub2c8\ub2e4"]
NAME_PARTS = ["paraphrase", "multilingual", "MiniLM", "L12", "v2", "Instruct", "chat", "GGUF", "Q4", "K", "M", "AWQ", "GPTQ",
              "int4", "8B", "70B", "Coder", "Lite", "base", "uncased", "finetuned", "sst2", "distil", "roberta", "large", "xl"]  # fmt: skip


def f_extra(rng: R) -> Sample:
    """Shapes found on the second pass: JSON-escaped CJK text with no space before the value, keys with no
    prefix after a CLI or SDK call, Triton's JSON model configuration, Vertex AI resource names, model
    repo names made of many parts, NCCL interface addresses."""
    k = rng.randrange(12)
    if k == 9:
        return mk('{"id":"', (f"sess_{mixed(rng, ALNUM, 20)}", "~session_id"), '","object":"realtime.session","model":"gpt-4o-realtime-preview","client_secret":{"value":"',
                  ("ek_" + hexs(rng, 32), "ephemeral_key"), '","expires_at":', str(rng.randrange(1_700_000_000, 1_800_000_000)), "}}")  # fmt: skip
    if k == 10:
        return mk(
            rng.choice(["LANGCHAIN_API_KEY=", "langsmith: using key ", "Client(api_key='"]),
            ("ls__" + hexs(rng, 32), "langsmith_key"),
            rng.choice(["", "'", " (legacy)"]),
        )
    if k == 11:
        name, tmpl = rng.choice([("OPENAI_API_KEY", "sk-..."), ("OPENAI_API_KEY", "sk-proj-..."), ("ANTHROPIC_API_KEY", "sk-ant-api03-..."),
                                 ("HF_TOKEN", "hf_xxxxxxxxxxxxxxxx"), ("GROQ_API_KEY", "gsk_..."), ("PINECONE_API_KEY", "pcsk_..."),
                                 ("LANGSMITH_API_KEY", "lsv2_pt_..."), ("OPENAI_API_KEY", "sk-xxxxxxxxxxxx")])  # fmt: skip
        return mk(
            rng.choice(["", "export ", "# "]),
            name,
            "=",
            (tmpl, "~template"),
            rng.choice(["", "  # replace with your key", "  # .env.example"]),
        )
    if k == 0:
        kind = rng.choice(["credit_card", "ssn", "iban", "ipv4", "email"])
        value = {"credit_card": lambda: pan(rng, "  "), "ssn": lambda: ssn_dashed(rng), "iban": lambda: iban(rng),
                 "ipv4": lambda: ipv4(rng), "email": lambda: email(rng)}[kind]()  # fmt: skip
        return mk('{"role":"user","content":"', rng.choice(CJK_LEAD), (value, kind), rng.choice(CJK_TAIL), '"}')
    if k == 1:
        return mk(rng.choice(["Retrying with key ", "fireworks: using ", "api_base=https://api.fireworks.ai/inference/v1 key "]),
                  ("fw_" + mixed(rng, ALNUM, 24), "fireworks_key"), rng.choice([" ok", "", " (attempt 2)"]))  # fmt: skip
    if k == 2:
        key = hexs(rng, 40)
        return rng.choice([
            mk("$ wandb login ", rng.choice(["", "--relogin ", "--host=https://wandb.acme.internal "]), (key, "wandb_key")),
            mk("In [2]: wandb.login(", rng.choice(["", "relogin=True, "]), "key=\"", (key, "wandb_key"), "\")"),
            mk("KAGGLE_USERNAME=jdoe KAGGLE_KEY=", (hexs(rng, 32), "kaggle_key")),
        ])  # fmt: skip
    if k == 3:
        tk = rng.choice(
            [(mixed(rng, ALNUM, 24), "api_key"), (hf_token(rng), "huggingface_token"), (openai_key(rng), "openai_key")]
        )
        name = {"api_key": "api_key", "huggingface_token": "HF_TOKEN", "openai_key": "OPENAI_API_KEY"}[tk[1]]
        return mk('I1129 ', hms(rng), '.123456 1 backend_model.cc:692] "TRITONBACKEND_ModelInitialize: vllm_model (version 1)" config: {"name":"vllm_model","backend":"python","max_batch_size":0,"parameters":{"',
                  name, '":{"string_value":"', tk, '"},"REPORT_CUSTOM_METRICS":{"string_value":"yes"}},"instance_group":[{"kind":"KIND_MODEL"}]}')  # fmt: skip
    if k == 4:
        rid = rng.choice(["4539578763621486123", str(rng.randrange(10**18, 10**19)), luhn_complete16(rng)])
        return mk("google.api_core: deployed model to ", (f"projects/{rng.randrange(10**11, 10**12)}/locations/us-central1/endpoints/{rid}", "~resource_name"),
                  " endpoint_id=", (rid, "~resource_id"), " operation ", (f"projects/{rng.randrange(10**11, 10**12)}/locations/us-central1/operations/{rng.randrange(10**18, 10**19)}", "~resource_name"))  # fmt: skip
    if k == 5:
        name = "-".join(rng.choice(NAME_PARTS) for _ in range(rng.randrange(5, 9)))
        return mk(
            "Loading ",
            (
                f"{rng.choice(['sentence-transformers', 'TheBloke', 'cross-encoder', 'bartowski'])}/{name}",
                "~model_name",
            ),
            " from cache",
        )
    if k == 6:
        return mk(pod(rng, "trainer"), ":", str(rng.randrange(10, 999)), ":", str(rng.randrange(10, 999)), " [", str(rng.randrange(8)), "] NCCL INFO NET/Socket : Using [0]eth0:",
                  (ipv4(rng), "ipv4"), "<0> [1]ib0:", (ipv4(rng), "ipv4"), "<0>")  # fmt: skip
    if k == 7:
        return mk(
            "MASTER_ADDR=",
            (ipv4(rng), "ipv4"),
            " MASTER_PORT=29500 WORLD_SIZE=",
            str(rng.choice([8, 16, 64])),
            " init_method=tcp://",
            (ipv4(rng), "ipv4"),
            ":23456 seed=",
            (seed(rng), "~seed"),
        )
    return mk(
        "nvidia-smi -q: Serial Number : ",
        (r(rng, DIGITS, 13), "~gpu_serial"),
        " GPU UUID : ",
        (gpu_uuid(rng), "~gpu_uuid"),
        " Bus Id : ",
        (pci_bus(rng), "~pci_bus_id"),
    )


def luhn_complete16(rng: R) -> str:
    body = rng.choice("3456") + r(rng, DIGITS, 14)
    return next(body + c for c in DIGITS if luhn_ok(body + c))


FAMILIES = {
    "vllm": f_vllm, "tgi": f_tgi, "triton": f_triton, "ray": f_ray, "torchserve": f_torchserve, "bentoml": f_bentoml, "sdk": f_sdk,
    "bodies": f_bodies, "notebook": f_notebook, "trackers": f_trackers, "login": f_login, "env": f_env, "traceback": f_traceback,
    "pydantic": f_pydantic, "otel": f_otel, "k8s": f_k8s, "gpu": f_gpu, "gcp_sa": f_gcp_sa, "negative": f_negative, "extra": f_extra,
}  # fmt: skip
WEIGHTS = {"sdk": 4, "env": 4, "bodies": 3, "negative": 4, "vllm": 2, "trackers": 2, "extra": 4}


def generate(seed: int = 8088, lines: int = 3000) -> list[Sample]:
    """`lines` labelled samples (one log record each; some span several physical lines) from the formats above."""
    return weighted_families(FAMILIES, WEIGHTS, seed, lines)
