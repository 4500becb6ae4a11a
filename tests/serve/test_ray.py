"""The server as a Ray Serve deployment on a local Ray instance (optional extra `ray`; skipped without it)."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="the optional extra `ray` is not installed (pip install 'tunelab[ray]')")
serve = pytest.importorskip("ray.serve", reason="ray is installed without Ray Serve (pip install 'ray[serve]')")


def test_ray_serve_deployment_answers_like_tunelab_serve(tiny_llama_dir):
    import shutil
    import tempfile

    from tests.serve.harness import client, free_port
    from tunelab.generation import GenerationConfig, generate
    from tunelab.serve import registry
    from tunelab.serve.ray_app import deployment

    s = registry.load_all([f"tiny={tiny_llama_dir}"], log=lambda m: None)["tiny"]
    want = generate(s.model, s.tokenizer, ["the movie was"], GenerationConfig(max_new_tokens=6), log=lambda m: None)
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's unix sockets need a short path (< 108 bytes)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment([f"tiny={tiny_llama_dir}"], max_replicas=2), route_prefix="/", name="tunelab")
        c = client(f"http://127.0.0.1:{port}")
        r = c.completions.create(model="tiny", prompt="the movie was", max_tokens=6, temperature=0)
        assert r.choices[0].text == want[0].text
        chunks = list(
            c.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
            )
        )
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
