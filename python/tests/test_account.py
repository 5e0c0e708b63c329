"""Secrets (names only), usage, notebooks and who the token is, through the
SDK against a real control plane."""

import os

import pytest

import dspool


def test_secrets_by_name(client):
    me = client.whoami().name
    s = client.set_secret("sdk-test", "value-never-read-back", session_env="SDK_TEST")
    assert (s.name, s.user, s.session_env, s.ref) == ("sdk-test", me, "SDK_TEST", "sdk-test")
    assert not hasattr(s, "value")
    assert "sdk-test" in [x.ref for x in client.secrets()]
    job = client.submit(["sh", "-c", 'test "$SDK" = value-never-read-back'], cpus=0.1, secrets={"sdk-test": "SDK"},
                        wait=True)
    assert job.succeeded, job
    assert client.delete_secret("sdk-test").name == "sdk-test"
    assert "sdk-test" not in [x.ref for x in client.secrets()]
    with pytest.raises(dspool.NotFoundError):
        client.delete_secret("sdk-test")
    with pytest.raises(dspool.InvalidError) as e:
        client.set_secret("ml/key", "v", team="other")
    assert e.value.field == "team"


def test_usage(client):
    client.submit(["true"], cpus=0.1, wait=True)
    mine = client.usage(since="1h")
    assert mine.by == "user" and mine.since < mine.until
    assert client.whoami().name in [u.user for u in mine.users]
    pools = client.usage(by="pool")
    assert "default" in [p.pool for p in pools.pools] and all(p.node_seconds >= 0 for p in pools.pools)


def test_notebook(client):
    nb = client.notebook_status()
    assert isinstance(nb, dspool.Notebook) and nb.user == client.whoami().name
    if not os.environ.get("DSPOOL_TEST_JUPYTER"):
        pytest.skip("starts a Jupyter server only where the harness has one (DSPOOL_TEST_JUPYTER)")
    nb = client.notebook_start(wait=True, timeout=120)
    assert nb.state == "ready" and nb.url.endswith("/user/%s/" % nb.user) and nb.node_name
    assert client.notebook_stop().state == "stopped"


def test_queue_and_share(client):
    held = client.submit(["true"], cpus=0.1, hold=True)
    try:
        q = client.queue()
        mine = [e for e in q.jobs if e.id == held.id]
        assert len(mine) == 1 and mine[0].reason == "held" and mine[0].user == client.whoami().name, q
        assert client.queue(pool="default").at is not None
    finally:
        client.cancel(held)
    client.submit(["true"], cpus=0.1, wait=True)
    me = client.whoami().name
    rep = client.share()
    assert rep.half_life is not None and me in [u.name for u in rep.users]
    assert all(0 <= u.factor <= 1 for u in rep.users)
