"""GET /v1/models (paging as the SDK and Claude Code's discovery use it), /v1/models/{id},
/health and HEAD /."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import pytest

from openrouter_anthropic.fake_upstream import FakeOpenRouter


def page(http: httpx2.Client, **params: Any) -> dict[str, Any]:
    resp = http.get("/v1/models", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def all_ids(http: httpx2.Client) -> list[str]:
    body = page(http, limit=1000)
    assert body["has_more"] is False
    return [m["id"] for m in body["data"]]


def test_one_page_of_1000_lists_everything(all_ids: list[str], fake: FakeOpenRouter) -> None:
    assert {"big", "small", "claude-sonnet-4-5", "claude-haiku-4-5",
            "claude-opus-4-5"} <= set(all_ids)
    assert len(all_ids) == len(set(all_ids))
    assert not fake.requests  # served from memory, never from the upstream


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_sdk_auto_pagination_yields_every_id_once(client: anthropic.Anthropic,
                                                  all_ids: list[str], limit: int) -> None:
    ids = [m.id for m in client.models.list(limit=limit)]
    assert ids == all_ids


def test_page_envelope(http: httpx2.Client, all_ids: list[str]) -> None:
    first = page(http, limit=2)
    assert [m["id"] for m in first["data"]] == all_ids[:2]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (
        True, all_ids[0], all_ids[1])
    nxt = page(http, limit=2, after_id=first["last_id"])
    assert [m["id"] for m in nxt["data"]] == all_ids[2:4]
    last = page(http, limit=3, after_id=all_ids[-4])
    assert [m["id"] for m in last["data"]] == all_ids[-3:]
    assert (last["has_more"], last["first_id"], last["last_id"]) == (
        False, all_ids[-3], all_ids[-1])


def test_before_id_paging(http: httpx2.Client, client: anthropic.Anthropic,
                          all_ids: list[str]) -> None:
    body = page(http, limit=2, before_id=all_ids[5])
    assert [m["id"] for m in body["data"]] == all_ids[3:5]
    assert body["has_more"] is True
    head = page(http, limit=5, before_id=all_ids[3])
    assert [m["id"] for m in head["data"]] == all_ids[:3]
    assert head["has_more"] is False
    walked = [m.id for m in client.models.list(limit=2, before_id=all_ids[-1])]
    assert sorted(walked) == sorted(all_ids[:-1])


def test_beta_query_and_trailing_slash(http: httpx2.Client, all_ids: list[str]) -> None:
    resp = http.get("/v1/models/?limit=1000&beta=true")  # redirects count as failure
    assert resp.status_code == 200, resp.text
    assert [m["id"] for m in resp.json()["data"]] == all_ids


def test_retrieve_model(client: anthropic.Anthropic) -> None:
    info = client.models.retrieve("claude-sonnet-4-5")
    assert info.id == "claude-sonnet-4-5"
    assert info.type == "model"
    assert "anthropic/claude-sonnet-4" in info.display_name
    assert info.lifecycle == "active"
    assert info.created_at is not None


def test_listed_models_name_their_target(client: anthropic.Anthropic) -> None:
    by_id = {m.id: m for m in client.models.list(limit=1000)}
    assert "anthropic/claude-3.7-sonnet" in by_id["claude-haiku-4-5"].display_name
    assert "anthropic/claude-sonnet-4" in by_id["big"].display_name
    assert all(m.lifecycle == "active" for m in by_id.values())


def test_retrieve_unknown_model_is_404(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.models.retrieve("nope-model")
    assert info.value.response.json()["error"]["type"] == "not_found_error"


def test_health_and_root_probe(http: httpx2.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert http.head("/").status_code == 200
