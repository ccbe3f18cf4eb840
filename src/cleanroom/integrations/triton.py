"""Triton Inference Server: a python_backend model that takes sealed requests and answers sealed.

In the model repository, `MODEL/1/model.py`:

    from cleanroom.integrations.triton import CleanroomTritonModel

    class TritonPythonModel(CleanroomTritonModel):
        pass

and `MODEL/config.pbtxt` (names fixed by `CleanroomTritonModel.input_name` / `output_name`):

    backend: "python"
    max_batch_size: 0
    input  [ { name: "SEALED_REQUEST"  data_type: TYPE_STRING dims: [ 1 ] } ]
    output [ { name: "SEALED_RESPONSE" data_type: TYPE_STRING dims: [ 1 ] } ]
    parameters { key: "cleanroom_data_dir" value { string_value: "/srv/cleanroom-data" } }

Each inference request carries one sealed request (`Client.seal_request(model, payload).body`) as the only
element of the BYTES input, and the tenant's API key as the request parameter `cleanroom_api_key`. The
answer is the sealed response as the only element of the BYTES output; a refused request is a Triton error
whose message is cleanroom's JSON error (`{"error": {"code", "message"}}`).

Model config parameters (all optional): `cleanroom_model` (the cleanroom model to run and to seal for;
default: the Triton model's name), `cleanroom_user_model` (`package.module:factory` when it is a user
model), `cleanroom_data_dir`; everything else comes from `CLEANROOM_*` in the environment, as for
`cleanroom serve`. Run the server as `cleanroom exec -- tritonserver …`: the backend's stub processes,
where the plaintext lives, inherit the hardened allocator. Triton does not pass the client's address to
models, so a tenant restricted to an address allowlist is refused here (fail closed). Each model instance
writes its own audit log under `DATA_DIR/workers/triton-<host>-<instance>/audit/`.

`triton_python_backend_utils` exists only inside Triton's stub process: it is imported in `initialize`.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from cleanroom.config import Settings
from cleanroom.errors import BadRequest, CleanroomError, Forbidden, PayloadTooLarge, Unauthenticated
from cleanroom.runtime.models import ModelRegistry
from cleanroom.runtime.session import CallContext

log = logging.getLogger("cleanroom.triton")

BUILTIN_MODELS = frozenset({"echo", "minilm"})


class ModelFailed(CleanroomError):
    """Something other than a cleanroom error escaped: a bug, reported without its text."""

    status, code = 500, "internal_error"


def config_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """`parameters { key: … value { string_value: … } }` of a Triton model config, as a flat dict."""
    raw = model_config.get("parameters") or {}
    return {str(k): str(v.get("string_value", "")) for k, v in raw.items() if isinstance(v, Mapping)}


def triton_error(pb_utils: Any, exc: CleanroomError) -> Any:
    """A `TritonError` carrying cleanroom's JSON error, with the closest Triton status code."""
    message = json.dumps(exc.to_body())
    codes = getattr(pb_utils, "TritonError", None)
    name = (
        "NOT_FOUND"
        if exc.status == 404
        else "UNAVAILABLE"
        if exc.status in (429, 503)
        else "INTERNAL"
        if exc.status >= 500
        else "INVALID_ARG"
    )
    code = getattr(codes, name, None)
    try:
        return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
    except TypeError:  # python_backend before 23.x: message only
        return pb_utils.TritonError(message)


class CleanroomTritonModel:
    """The python_backend interface (`initialize`, `execute`, `finalize`) over cleanroom's request core.

    Subclasses may change the tensor and parameter names, or override `build_settings` / `build_models`.
    """

    input_name: ClassVar[str] = "SEALED_REQUEST"
    output_name: ClassVar[str] = "SEALED_RESPONSE"
    api_key_parameter: ClassVar[str] = "cleanroom_api_key"

    def initialize(self, args: Mapping[str, str]) -> None:
        import socket

        from cleanroom.integrations.workers import build_worker_services, python_allocator
        from cleanroom.memory.hardening import apply_process_hardening

        self.pb_utils: Any = importlib.import_module("triton_python_backend_utils")
        model_config = json.loads(args["model_config"])
        parameters = config_parameters(model_config)
        self.model_name = parameters.get("cleanroom_model") or str(args["model_name"])
        settings = self.build_settings(parameters)
        apply_process_hardening(disable_core_dumps=settings.disable_core_dumps, not_dumpable=settings.not_dumpable)
        self.allocator = python_allocator()
        if self.allocator != "malloc":
            log.warning(
                "Python objects in this Triton stub use %s (the stub ignores PYTHONMALLOC): only glibc's "
                "tunables wipe freed memory; keep plaintext in SecureBuffers and tensors",
                self.allocator,
            )
        # Each model instance is its own stub process with its own audit log (one writer per log).
        instance = str(args.get("model_instance_name") or self.model_name)
        self.services = build_worker_services(
            settings, f"triton-{socket.gethostname()}-{instance}", models=self.build_models(settings)
        )
        self.services.models.get(self.model_name)  # fail at load time, not on the first request

    def build_settings(self, parameters: Mapping[str, str]) -> Settings:
        """`Settings` from the environment, with the model config's `cleanroom_*` parameters on top."""
        values: dict[str, Any] = {}
        if parameters.get("cleanroom_data_dir"):
            values["data_dir"] = Path(parameters["cleanroom_data_dir"])
        target = parameters.get("cleanroom_user_model", "")
        if target:
            values["models"], values["user_models"] = [], {self.model_name: target}
        elif self.model_name in BUILTIN_MODELS:
            values["models"] = [self.model_name]
        return Settings(**values)

    def build_models(self, settings: Settings) -> ModelRegistry:
        return ModelRegistry.load(settings.models, settings.user_models, max_minilm_inputs=settings.max_minilm_inputs)

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        """One response per request, in order; each request is its own sealed message (and maybe tenant)."""
        return [self._answer(request) for request in requests]

    def _answer(self, request: Any) -> Any:
        pb_utils = self.pb_utils
        try:
            sealed = self._handle(request)
        except CleanroomError as exc:
            return pb_utils.InferenceResponse(output_tensors=[], error=triton_error(pb_utils, exc))
        except Exception as exc:  # never echo the text: it may quote payload bytes
            kind = type(exc).__name__
            del exc
            log.error("unexpected %s in the cleanroom Triton model", kind)
            failure = ModelFailed("the model failed unexpectedly; the error was logged")
            return pb_utils.InferenceResponse(output_tensors=[], error=triton_error(pb_utils, failure))
        import numpy as np

        out = np.empty(1, dtype=np.object_)
        out[0] = sealed
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, out)])

    def _handle(self, request: Any) -> bytes:
        services = self.services
        principal = services.tenants.authenticate(self._api_key(request))
        if services.registry.tenant(principal.tenant_id).get("allow"):
            raise Forbidden(
                "this tenant is restricted to an address allowlist, and Triton does not pass the "
                "client's address to models",
                code="address_unknown",
            )
        body = self._sealed_input(request)
        call = CallContext(principal=principal, model=self.model_name, source="triton")
        return bytes(services.runtime.handle(call, body))

    def _api_key(self, request: Any) -> str:
        try:
            parameters = json.loads(request.parameters() or "{}")
        except (ValueError, TypeError, RecursionError):  # RecursionError: deeply nested JSON
            parameters = {}
        api_key = parameters.get(self.api_key_parameter) if isinstance(parameters, dict) else None
        if not isinstance(api_key, str) or not api_key:
            raise Unauthenticated(f"send the API key as the request parameter {self.api_key_parameter!r}")
        return api_key

    def _sealed_input(self, request: Any) -> bytes:
        tensor = self.pb_utils.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise BadRequest(f"the request has no {self.input_name!r} input", code="missing_input")
        array = tensor.as_numpy()
        if array.dtype != object or array.size != 1 or not isinstance(array.reshape(-1)[0], bytes):
            raise BadRequest(
                f"{self.input_name!r} must be a BYTES tensor with exactly one element: the sealed request",
                code="invalid_input",
            )
        element: bytes = array.reshape(-1)[0]
        # The limit of `cleanroom serve` and the middleware (413): Triton's gRPC carries up to 2 GiB, and
        # the payload would be decrypted into locked memory.
        limit_bytes = self.services.settings.max_body_bytes
        if len(element) > limit_bytes:
            raise PayloadTooLarge(f"the sealed request is larger than the {limit_bytes}-byte limit")
        return bytes(element)

    def finalize(self) -> None:
        services = getattr(self, "services", None)
        if services is not None:
            services.close()
            self.services = None  # type: ignore[assignment]


# --- client side: Triton's HTTP/REST protocol (KServe v2 + binary tensor extension), no tritonclient ----
HEADER_LENGTH = "Inference-Header-Content-Length"


def encode_infer_request(
    sealed_request: bytes,
    api_key: str,
    *,
    input_name: str = CleanroomTritonModel.input_name,
    output_name: str = CleanroomTritonModel.output_name,
    api_key_parameter: str = CleanroomTritonModel.api_key_parameter,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers for `POST /v2/models/{model}/infer` carrying one sealed request as binary BYTES."""
    element = len(sealed_request).to_bytes(4, "little") + sealed_request  # BYTES: u32 LE length, then data
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(element)},
                }
            ],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
            "parameters": {api_key_parameter: api_key},
        }
    ).encode()
    return header + element, {HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"}


def decode_infer_response(
    content: bytes, headers: Mapping[str, str], *, output_name: str = CleanroomTritonModel.output_name
) -> bytes:
    """The sealed response from a successful Triton answer (open it with `SealedRequest.open_response`).

    Whatever the server (or a proxy) sent, a malformed answer is a `BadRequest` (`invalid_response`), never
    another exception: the sealed response inside is authenticated when it is opened, the framing is not."""
    try:
        return _decode_infer_response(content, headers, output_name)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:  # JSON, int(), a list for a dict
        raise BadRequest(f"malformed Triton response ({type(exc).__name__})", code="invalid_response") from None


def _decode_infer_response(content: bytes, headers: Mapping[str, str], output_name: str) -> bytes:
    length = int(headers.get(HEADER_LENGTH) or len(content))
    if not 0 < length <= len(content):
        raise BadRequest("malformed Triton response: bad inference header length", code="invalid_response")
    document = json.loads(content[:length])
    offset = length
    for output in document.get("outputs", []):
        size = int(output.get("parameters", {}).get("binary_data_size", 0))
        if not 0 <= size <= len(content) - offset:  # a negative size would move back into the JSON header
            raise BadRequest("malformed Triton response: bad binary_data_size", code="invalid_response")
        if output.get("name") == output_name:
            data = content[offset : offset + size]
            declared = int.from_bytes(data[:4], "little") if len(data) >= 4 else -1
            if declared != size - 4:
                raise BadRequest("malformed Triton response: bad BYTES element", code="invalid_response")
            return bytes(data[4:])
        offset += size
    raise BadRequest(f"the Triton response has no binary {output_name!r} output", code="invalid_response")
