"""Every route of the dspool API that the SDK calls, with what it may send
and what it reads: the client sends nothing that is not declared here (it
checks), and the SDK's tests hold this table to the API's OpenAPI document
(GET /api/v1/openapi.json), so that a route or field renamed on one side
fails a test rather than a user."""

from collections import namedtuple

# method and path (with {id}-style parameters; a job's {id} is a ref: a job
# 12, an array 40, or a task 40_7); query: the query parameters it may send;
# body: the request fields it may send, or the schema whose fields they are;
# answer: the schema of a success's body, "NAME[]" for an array of it,
# "KEY:NAME[]" for an object whose KEY is such an array, None for text.
Route = namedtuple("Route", "method path query body answer")


def _route(method, path, query=(), body=(), answer=None):
    return Route(method, path, tuple(query), body, answer)


ROUTES = {
    "openapi": _route("GET", "/api/v1/openapi.json"),
    "whoami": _route("GET", "/api/v1/whoami", answer="User"),
    "submit": _route("POST", "/api/v1/jobs", body="JobSpec", answer="Job"),
    "jobs": _route("GET", "/api/v1/jobs", query=("state", "all", "pool", "array", "tasks", "limit", "before", "schedule"),
                   answer="JobList"),
    "job": _route("GET", "/api/v1/jobs/{id}", answer="JobDetail"),
    "cancel": _route("POST", "/api/v1/jobs/{id}/cancel", answer="Job"),
    "hold": _route("POST", "/api/v1/jobs/{id}/hold", answer="Job"),
    "release": _route("POST", "/api/v1/jobs/{id}/release", answer="Job"),
    "set_priority": _route("POST", "/api/v1/jobs/{id}/priority", body=("priority",), answer="Job"),
    "wait": _route("GET", "/api/v1/jobs/{id}/wait", query=("timeout",), answer="Job"),
    "logs": _route("GET", "/api/v1/jobs/{id}/logs", query=("attempt", "follow")),
    "notebook_status": _route("GET", "/api/v1/notebook", answer="Notebook"),
    "notebook_start": _route("POST", "/api/v1/notebook", body=("pool", "profile"), answer="Notebook"),
    "notebook_stop": _route("DELETE", "/api/v1/notebook", answer="Notebook"),
    "secrets": _route("GET", "/api/v1/secrets", answer="secrets:Secret[]"),
    "secret_set": _route("PUT", "/api/v1/secrets/{name}", body=("value", "team", "session_env", "session_file"), answer="Secret"),
    "secret_delete": _route("DELETE", "/api/v1/secrets/{name}", query=("team",), answer="Secret"),
    "usage": _route("GET", "/api/v1/usage", query=("since", "by"), answer="UsageReport"),
    "queue": _route("GET", "/api/v1/queue", query=("pool",), answer="Queue"),
    "share": _route("GET", "/api/v1/share", answer="ShareReport"),
}

# The fields of a job's spec the SDK sends (the schema JobSpec).
JOB_SPEC_FIELDS = ("pool", "team", "name", "cpus", "memory", "gpus", "gpu_type", "gpu_memory", "time_limit", "retries", "priority",
                   "env", "workdir", "image", "command", "idempotency_key", "secrets", "array", "sweep", "after", "hold",
                   "preemptible")
# The fields of one secret a job asks for (the schema SecretUse).
SECRET_USE_FIELDS = ("secret", "env", "file")
