"""Every example under examples/ imports and builds; the ASGI ones also answer a sealed call in process.

The Ray Serve and Triton examples run for real in tests/test_ray_serve.py and tests/test_triton.py (same
classes); vLLM is not installed here, so its middleware is exercised the way vLLM uses it
(`app.add_middleware(cls)` on a FastAPI app with vLLM's route names).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cleanroom.client import Client, ClientError
from support.server import REPO

EXAMPLES = REPO / "examples"


def tenant(data_dir: Path, name: str = "shop") -> tuple[str, str]:
    from cleanroom.config import Settings
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services
    from conftest import MemoryAudit

    services = build_services(Settings(data_dir=data_dir), audit=MemoryAudit(), models=ModelRegistry({}))
    try:
        created = services.tenants.create(name)
        return created.api_key, created.public_key
    finally:
        services.close()


def in_process_client(app: object, api_key: str, public_key: str) -> tuple[Client, TestClient]:
    http = TestClient(app)  # type: ignore[arg-type]
    client = Client("http://testserver", api_key=api_key, public_key=public_key)
    client._http = http
    http.headers["Authorization"] = f"Bearer {api_key}"
    return client, http


def test_fastapi_example_answers_sealed_and_keeps_health_open(tmp_path: Path) -> None:
    from examples.fastapi_app.app import create_app

    api_key, public_key = tenant(tmp_path / "data")
    app = create_app(data_dir=tmp_path / "data")
    try:
        client, http = in_process_client(app, api_key, public_key)
        answer = json.loads(client.call("/v1/sentiment", b'{"text": "I love it, great"}'))
        assert answer == {"label": "positive", "score": 2}
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.post("/v1/sentiment", json={"text": "plain"}).status_code == 415
    finally:
        app.services.close()


def test_vllm_middleware_is_added_the_way_vllm_adds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.vllm.cleanroom_vllm import VLLMCleanroomMiddleware

    monkeypatch.setenv("CLEANROOM_DATA_DIR", str(tmp_path / "data"))
    api_key, public_key = tenant(tmp_path / "data")
    fake_vllm = FastAPI()

    @fake_vllm.post("/v1/chat/completions")
    async def chat(body: dict[str, object]) -> dict[str, object]:
        messages = body["messages"]
        assert isinstance(messages, list)
        return {"choices": [{"message": {"role": "assistant", "content": messages[-1]["content"].upper()}}]}

    @fake_vllm.get("/health")
    async def health() -> dict[str, str]:
        return {}

    fake_vllm.add_middleware(VLLMCleanroomMiddleware)  # what `vllm serve --middleware CLASS` does
    client, http = in_process_client(fake_vllm, api_key, public_key)
    request = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    answer = json.loads(client.call("/v1/chat/completions", json.dumps(request).encode()))
    assert answer["choices"][0]["message"]["content"] == "HELLO"
    assert http.get("/health").status_code == 200  # probes stay open
    with pytest.raises(ClientError):
        client.call("/v1/chat/completions", b"not json")  # the app's 422 comes back sealed: an error
    assert http.post("/v1/chat/completions", json=request).status_code == 415  # plaintext is refused


def test_ray_serve_example_builds_an_application() -> None:
    from examples.ray_serve.app import app, build
    from ray.serve import Application

    assert isinstance(app, Application) and isinstance(build(num_replicas=1), Application)
    env = app._bound_deployment.ray_actor_options["runtime_env"]["env_vars"]
    assert env["PYTHONMALLOC"] == "malloc"


def test_triton_example_matches_the_base_class_and_its_scripts_parse() -> None:
    import importlib.util

    from cleanroom.integrations.triton import CleanroomTritonModel

    model_dir = EXAMPLES / "triton" / "model_repository" / "echo"
    spec = importlib.util.spec_from_file_location("triton_example_model", model_dir / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert issubclass(module.TritonPythonModel, CleanroomTritonModel)
    config = (model_dir / "config.pbtxt").read_text()
    assert CleanroomTritonModel.input_name in config and CleanroomTritonModel.output_name in config
    for script in ("setup_tritonserver.sh", "run_tritonserver.sh"):
        subprocess.run(["bash", "-n", str(EXAMPLES / "triton" / script)], check=True)


def test_example_clients_import() -> None:
    import examples.fastapi_app.client
    import examples.ray_serve.client
    import examples.triton.client
    import examples.vllm.client

    for module in (
        examples.fastapi_app.client,
        examples.ray_serve.client,
        examples.triton.client,
        examples.vllm.client,
    ):
        assert callable(module.main)
