"""A few dialogs of bench/dialogs through a real llama.cpp server (issue 19, item 4): the structured
output path end to end — json_schema turned into llama.cpp's grammar, the answer parsed into a
`Verdict` within the schema's limits, the evidence check applied. Accuracy is not the point.

Marked `slow` (deselected by `make test`); needs `make eval-local` (or `bench/eval_local.py
--build-only --models smollm2`) to have built the server and unpacked the model. Run with
`.venv/bin/python -m pytest -m slow tests/qualification/test_local_model.py`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from bench.dialogset import load
from qualification.analysis import analyse
from qualification.llm import capability
from qualification.verdict import MAX_EVIDENCE, accept

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import eval_local  # noqa: E402

PORT = 8093


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    binary = eval_local.BUILD / "bin" / "llama-server"
    gguf = eval_local.CACHE / "models" / eval_local.MODELS["smollm2"].gguf
    if not binary.exists() or not gguf.exists():
        pytest.fail(f"run `make eval-local` first: {binary} or {gguf} is missing")
    proc = subprocess.Popen([str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(PORT), "--no-jinja",
                             "-t", "2", "-c", "8192"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("llama-server did not start")
            time.sleep(0.5)
    yield f"http://127.0.0.1:{PORT}/v1"
    proc.terminate()
    proc.wait(timeout=30)


async def test_dialogs_go_through_the_real_structured_output_path(server: str) -> None:
    llm = AsyncOpenAI(base_url=server, api_key="none", max_retries=0)
    dialogs = [d for d in load() if d.id in ("clinic-ru-1", "auto-pt-3", "realty-en-8", "school-es-9")]
    for dialog in dialogs:
        transcript = dialog.transcript()
        result = await analyse(llm, model="smollm2", criteria=dialog.criteria, transcript=transcript,
                               direction="slow-test", request_timeout=300)
        verdict = result.verdict
        assert len(verdict.evidence_message_ids) <= MAX_EVIDENCE  # the grammar held the schema's limit
        assert verdict.confidence is not None and 0 <= verdict.confidence <= 1
        assert result.attempts <= 2 and result.completion_tokens > 0
        acceptance = accept(verdict, transcript)
        if dialog.case == "injection":
            assert acceptance.level == 0 and acceptance.suspicious is not None
    assert capability(llm, "smollm2").mode == "json_schema"  # llama.cpp took the schema as sent
    await llm.close()
