"""Packed linear weights (``agent.llm.packed``) change speed, never scores; the
in-process model counts its work (``LocalBackend.stats``) and ``GET /v1/stats`` shows
it with the admission counters."""

from __future__ import annotations

import copy

import pytest
import torch
from fastapi.testclient import TestClient

from agent.interfaces.admission import Admission
from agent.interfaces.api import create_app
from agent.interfaces.sessions import SessionStore
from agent.llm.fake import FakeBackend
from agent.llm.flops import Shape, forward_flops
from agent.llm.local import LocalBackend
from agent.llm.packed import PackedLinear, pack_linears
from tests.agent.turn.test_recommender import make
from tests.tiny_lm import tiny_model_and_tokenizer

KEY = "k" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
MESSAGES = [{"role": "system", "content": "rank the candidates"},
            {"role": "user", "content": "you liked Alien . A. movie B. movie C. movie letter ?"}]


def linears(model):
    return [m for m in model.modules() if type(m) is torch.nn.Linear]


def test_packing_swaps_every_layer_projection_and_keeps_the_outputs():
    model, _ = tiny_model_and_tokenizer(seed=1)
    plain = copy.deepcopy(model)
    assert pack_linears(model) == 2 * 7  # q k v o, gate up down, in each of 2 layers
    assert linears(model) == [model.lm_head]  # the head (tied, one row) stays as it was
    assert sum(isinstance(m, PackedLinear) for m in model.modules()) == 14
    assert model.get_memory_footprint() == plain.get_memory_footprint()  # still counted
    x = torch.tensor([[5, 9, 12, 40, 41, 7, 3]])
    with torch.inference_mode():
        want, got = plain(input_ids=x), model(input_ids=x)
        assert torch.allclose(want.logits, got.logits, atol=1e-5)
        # one decoded token after a cache (the path generation takes) agrees too
        step = torch.tensor([[8]])
        want = plain(input_ids=step, past_key_values=want.past_key_values).logits
        got = model(input_ids=step, past_key_values=got.past_key_values).logits
        assert torch.allclose(want, got, atol=1e-5)


def test_a_model_that_cannot_be_packed_is_left_as_it_was(monkeypatch):
    model, _ = tiny_model_and_tokenizer(seed=1)
    assert pack_linears(model.double()) == 0 and len(linears(model)) == 15  # not fp32
    model = model.float()
    # a kernel whose output disagrees with the original: nothing is swapped, not some
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: torch.zeros(
        *x.shape[:-1], self.out_features) + 1.0)
    assert pack_linears(model) == 0 and len(linears(model)) == 15


def test_the_backend_ranks_the_same_packed_or_not():
    model, tok = tiny_model_and_tokenizer(seed=2)
    plain = LocalBackend(model=copy.deepcopy(model), tokenizer=tok, pack=False)
    packed = LocalBackend(model=model, tokenizer=tok)
    assert (plain.packed, packed.packed) == (0, 14)
    labels = ["A", "B", "C"]
    assert packed.label_logprobs(MESSAGES, labels) == pytest.approx(
        plain.label_logprobs(MESSAGES, labels), abs=1e-5)
    assert packed.generate([MESSAGES], 6) == plain.generate([MESSAGES], 6)


def test_the_backend_counts_the_flops_of_what_it_computed():
    model, tok = tiny_model_and_tokenizer(seed=3)
    backend = LocalBackend(model=model, tokenizer=tok)
    assert backend.stats() == {"forward_passes": 0, "tokens": 0, "flops": 0.0, "seconds": 0.0,
                               "flops_counted": True}
    backend.label_logprobs(MESSAGES, ["A", "B"])
    prompt = len(backend._prompt_ids(MESSAGES))
    (prefix,) = [len(k) for k in backend._prefixes]  # the system prompt, cached
    shape = Shape.of(model)
    assert shape.layer_params == sum(p.numel() for p in model.model.layers.parameters()) + sum(
        m.weight_numel for m in model.modules() if isinstance(m, PackedLinear))
    first = backend.stats()
    assert first["forward_passes"] == 2 and first["tokens"] == prompt
    assert first["flops"] == pytest.approx(forward_flops(shape, prefix)
                                           + forward_flops(shape, prompt - prefix, past=prefix))
    backend.label_logprobs(MESSAGES, ["A", "B"])  # the prefix is cached now: one pass
    second = backend.stats()
    assert second["forward_passes"] == 3 and second["tokens"] == prompt + prompt - prefix
    assert second["seconds"] > first["seconds"] > 0


def test_stats_show_admission_and_the_models_work(catalog, tmp_path):
    model, tok = tiny_model_and_tokenizer(seed=4)
    rec = make(catalog, LocalBackend(model=model, tokenizer=tok))
    client = TestClient(create_app(rec, SessionStore(tmp_path / "s.sqlite3"), KEY, "tiny",
                                   admission=Admission(2, 2)))
    assert client.get("/v1/stats").status_code == 401  # operators' data: behind the key
    sid = client.post("/v1/sessions", headers=AUTH).json()["id"]
    r = client.post(f"/v1/sessions/{sid}/messages", headers=AUTH,
                    json={"content": "I loved Alien, something from the 90s"})
    assert r.status_code == 200
    stats = client.get("/v1/stats", headers=AUTH).json()
    assert stats["admission"]["admitted"] == 1 and stats["admission"]["shed"] == 0
    assert stats["model"]["forward_passes"] >= 1 and stats["model"]["flops"] > 0
    fake = TestClient(create_app(make(catalog, FakeBackend()),
                                 SessionStore(tmp_path / "f.sqlite3"), KEY, "fake"))
    assert fake.get("/v1/stats", headers=AUTH).json() == {"admission": None, "model": None}
