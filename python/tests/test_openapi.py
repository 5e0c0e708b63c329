"""The SDK and the API's OpenAPI document agree on every route and field the
SDK uses: the live server's (GET /api/v1/openapi.json), and this
repository's."""

import copy
import json
import os

import pytest

from openapi_check import problems

REPO_DOC = os.path.join(os.path.dirname(__file__), "..", "..", "server", "openapi.json")


def test_live_document(client):
    assert problems(client.openapi()) == []


def _repo_doc():
    if not os.path.exists(REPO_DOC):
        pytest.skip("no server/openapi.json beside this tree")
    with open(REPO_DOC, encoding="utf-8") as f:
        return json.load(f)


def test_repository_document():
    assert problems(_repo_doc()) == []


def _drop_query(doc, path, name):
    params = doc["paths"][path]["get"]["parameters"]
    params[:] = [p for p in params if p.get("name") != name]


@pytest.mark.parametrize("change, want", [
    (lambda d: d["paths"].pop("/api/v1/jobs/{id}/wait"), "wait: the document has no GET /api/v1/jobs/{id}/wait"),
    (lambda d: d["paths"]["/api/v1/jobs"]["get"]["parameters"].pop(0), "no query parameter 'state'"),
    (lambda d: d["components"]["schemas"]["JobSpec"]["properties"].pop("time_limit"), "has no field 'time_limit'"),
    (lambda d: d["components"]["schemas"]["Job"]["properties"].pop("exit_code"), "the schema Job has no field 'exit_code'"),
    (lambda d: d["components"]["schemas"]["Attempt"]["properties"].pop("reason"), "the schema Attempt has no field 'reason'"),
    (lambda d: d["paths"]["/api/v1/notebook"].pop("delete"), "notebook_stop: the document has no DELETE"),
    (lambda d: d["paths"].pop("/api/v1/jobs/{id}/hold"), "hold: the document has no POST /api/v1/jobs/{id}/hold"),
    (lambda d: d["paths"].pop("/api/v1/jobs/{id}/release"), "release: the document has no POST"),
    (lambda d: _drop_query(d, "/api/v1/jobs", "array"), "jobs: GET /api/v1/jobs has no query parameter 'array'"),
    (lambda d: _drop_query(d, "/api/v1/jobs", "tasks"), "jobs: GET /api/v1/jobs has no query parameter 'tasks'"),
    (lambda d: d["components"]["schemas"]["JobSpec"]["properties"].pop("sweep"), "has no field 'sweep'"),
    (lambda d: d["components"]["schemas"]["JobSpec"]["properties"].pop("after"), "has no field 'after'"),
    (lambda d: d["components"]["schemas"]["Job"]["properties"].pop("array_index"),
     "the schema Job has no field 'array_index'"),
    (lambda d: d["components"]["schemas"]["Job"]["properties"].pop("on_hold"), "the schema Job has no field 'on_hold'"),
    (lambda d: d["components"]["schemas"]["ArraySummary"]["properties"].pop("counts"),
     "the schema ArraySummary has no field 'counts'"),
    (lambda d: d["components"]["schemas"].pop("ArraySummary"), "the document has no schema ArraySummary"),
])
def test_a_disagreement_fails(change, want):
    # The check is not one that cannot fail: each change of the document
    # that breaks the SDK is found.
    doc = copy.deepcopy(_repo_doc())
    change(doc)
    assert any(want in p for p in problems(doc)), problems(doc)
