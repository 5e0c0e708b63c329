"""What the SDK does before any request: finding the server, token and CA
as the CLI does, reading the API's errors and values, and refusing what
would be wrong on the wire."""

import datetime
import json

import pytest

import dspool
from dspool import errors, types


@pytest.fixture
def env(monkeypatch, tmp_path):
    for k in ("DSPOOL_SERVER", "DSPOOL_TOKEN", "DSPOOL_CA", "DSPOOL_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def write_login(path, **login):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(login))
    return path


def test_the_saved_login_where_the_cli_keeps_it(env, tmp_path):
    write_login(tmp_path / ".config" / "dspool" / "config.json", server="http://127.0.0.1:1", token="dsp_home")
    c = dspool.Client()
    assert (c.server, c.token) == ("http://127.0.0.1:1", "dsp_home")
    assert c.token_from.startswith("the saved login's, in ")
    env.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    write_login(tmp_path / "xdg" / "dspool" / "config.json", server="http://127.0.0.1:2", token="dsp_xdg")
    assert dspool.Client().token == "dsp_xdg"
    env.setenv("DSPOOL_CONFIG", str(write_login(tmp_path / "other.json", server="http://127.0.0.1:3", token="dsp_other")))
    assert dspool.Client().server == "http://127.0.0.1:3"


def test_arguments_then_environment_then_login(env, tmp_path):
    login = write_login(tmp_path / "login.json", server="http://127.0.0.1:1", token="dsp_login")
    env.setenv("DSPOOL_CONFIG", str(login))
    env.setenv("DSPOOL_TOKEN", "dsp_env")
    c = dspool.Client()
    assert (c.server, c.token, c.token_from) == ("http://127.0.0.1:1", "dsp_env", "DSPOOL_TOKEN")
    env.setenv("DSPOOL_SERVER", "http://127.0.0.1:2")
    c = dspool.Client(token="dsp_arg")
    assert (c.server, c.token, c.token_from) == ("http://127.0.0.1:2", "dsp_arg", "the token= argument")
    assert dspool.Client(server="http://127.0.0.1:4").server == "http://127.0.0.1:4"


def test_no_server_says_how_to_get_one(env):
    with pytest.raises(dspool.DspoolError) as e:
        dspool.Client()
    assert e.value.field == "server" and "dspool up" in str(e.value)


def test_a_ca_that_cannot_be_read_is_named(env, tmp_path):
    env.setenv("DSPOOL_CA", str(tmp_path / "missing.crt"))
    with pytest.raises(dspool.DspoolError) as e:
        dspool.Client(server="https://127.0.0.1:1", token="t")
    assert e.value.field == "DSPOOL_CA" and "missing.crt" in str(e.value)


def test_an_unreachable_server_is_named(env):
    c = dspool.Client(server="http://127.0.0.1:1", token="t")
    with pytest.raises(dspool.UnreachableError) as e:
        c.whoami()
    assert "cannot reach the dspool server at http://127.0.0.1:1" in str(e.value)
    assert isinstance(e.value, ConnectionError) and e.value.code == "unavailable"


@pytest.mark.parametrize("status, body, cls, code, field", [
    (400, b'{"error": {"code": "invalid", "field": "memory", "message": "too small"}}', dspool.InvalidError, "invalid", "memory"),
    (404, b'{"error": {"code": "not_found", "message": "job 9 not found"}}', dspool.NotFoundError, "not_found", ""),
    (401, b'{"error": {"code": "unauthorized", "message": "no"}}', dspool.UnauthorizedError, "unauthorized", ""),
    (403, b'{"error": {"code": "forbidden", "message": "no"}}', dspool.ForbiddenError, "forbidden", ""),
    (502, b"<html>bad gateway</html>", dspool.UnavailableError, "unavailable", ""),
    (500, b"oops", dspool.InternalError, "internal", ""),
    (418, b'{"error": {"code": "teapot", "message": "new code"}}', dspool.DspoolError, "teapot", ""),
])
def test_errors_carry_the_api_code_and_field(status, body, cls, code, field):
    e = errors.from_answer(status, body)
    assert type(e) is cls and (e.code, e.field, e.status) == (code, field, status)
    assert str(e) == (field + ": " if field else "") + e.message


def test_times_durations_and_results():
    t = types.parse_time("2026-03-04T05:06:07.123456789Z")
    assert t == datetime.datetime(2026, 3, 4, 5, 6, 7, 123456, datetime.timezone.utc)
    assert types.parse_time("2026-03-04T05:06:07+02:00").utcoffset() == datetime.timedelta(hours=2)
    assert types.parse_time("0001-01-01T00:00:00Z") is None
    assert types.parse_duration("2h30m0.5s") == datetime.timedelta(hours=2, minutes=30, seconds=0.5)
    assert types.parse_duration("1m30s") == datetime.timedelta(seconds=90)
    with pytest.raises(ValueError):
        types.parse_duration("2 hours")
    assert types.format_duration(datetime.timedelta(minutes=5)) == "300s"
    assert types.format_duration(1.5) == "1500ms"
    j = dspool.JobDetail.from_json({"id": 3, "state": "failed", "exit_code": 2, "cpus": 0.5, "time_limit": "1h0m0s",
                                    "secrets": [{"secret": "hf", "env": "HF"}], "unknown_field": 1,
                                    "attempts": [{"attempt": 1, "exit_code": 2, "started_at": "2026-01-01T00:00:00Z"}]})
    assert (j.id, j.done, j.succeeded, j.exit_code, j.time_limit) == (3, True, False, 2, datetime.timedelta(hours=1))
    assert j.secrets == [dspool.SecretUse(secret="hf", env="HF")] and j.attempts[0].started_at.year == 2026


@pytest.mark.parametrize("kwargs, field", [
    ({"command": "python3 train.py"}, "command"),
    ({"command": []}, "command"),
    ({"command": ["true"], "cpus": 0}, "cpus"),
    ({"command": ["true"], "cpus": "many"}, "cpus"),
    ({"command": ["true"], "memory": 0}, "memory"),
    ({"command": ["true"], "env": ["NOEQUALS"]}, "env"),
    ({"command": ["true"], "time_limit": [1]}, "time_limit"),
])
def test_submit_refuses_before_sending(env, kwargs, field):
    c = dspool.Client(server="http://127.0.0.1:1", token="t")
    with pytest.raises(dspool.InvalidError) as e:
        c.submit(**kwargs)
    assert e.value.field == field


def test_nothing_undeclared_is_sent(env):
    # The route table is what the OpenAPI test checks: a request may not
    # send what it does not declare.
    c = dspool.Client(server="http://127.0.0.1:1", token="t")
    with pytest.raises(AssertionError):
        c._call("jobs", query={"owner": "me"})
    with pytest.raises(AssertionError):
        c._call("submit", body={"command": ["true"], "nice": 5})
