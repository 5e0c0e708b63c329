"""Jobs through the SDK against a real control plane: submit with the CLI's
options, wait, logs (followed as they come), cancel, list, and errors that
name the field at fault."""

import datetime
import time

import pytest

import dspool


def running(client, job, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = client.job(job)
        if j.state == "running" and j.started_at is not None:
            return j
        assert not j.done, "job %d ended before it was seen running: %s" % (j.id, j)
        time.sleep(0.05)
    raise AssertionError("job %d not running after %ds" % (job.id, timeout))


def test_submit_wait_logs(client):
    me = client.whoami()
    job = client.submit(["sh", "-c", "echo out; echo err >&2; echo \"A=$A\"; pwd; exit 3"], name="sdk-wait",
                        cpus=0.5, memory="256MiB", time_limit=datetime.timedelta(minutes=5), retries=0, priority=-5,
                        env={"A": "1"}, workdir="sdk-test/wd")
    assert isinstance(job, dspool.Job) and job.id > 0 and job.user == me.name
    assert (job.name, job.cpus, job.memory, job.priority) == ("sdk-wait", 0.5, 256 << 20, -5)
    assert job.time_limit == datetime.timedelta(minutes=5) and job.env == {"A": "1"}
    done = client.wait(job, timeout=120)
    assert (done.state, done.reason, done.exit_code) == ("failed", "exit", 3), done
    assert done.finished_at >= done.started_at >= done.submitted_at
    out = "".join(client.logs(done))
    assert "out\n" in out and "err\n" in out and "A=1\n" in out and out.rstrip().endswith("/sdk-test/wd"), out
    detail = client.job(done.id)
    assert [a.attempt for a in detail.attempts] == [1] and detail.attempts[0].exit_code == 3


def test_submit_wait_in_one(client):
    seen = []
    job = client.submit(["sh", "-c", "echo 42"], cpus=0.1, wait=True, progress=seen.append)
    assert job.succeeded and job.exit_code == 0
    assert all(isinstance(j, dspool.Job) and not j.done for j in seen)
    assert "".join(client.logs(job.id)) == "42\n"


def test_logs_follow_as_they_come(client):
    # The job writes a line, then waits for its job to be seen running
    # with that line out, then writes another: the first must arrive while
    # the job runs.
    job = client.submit(["sh", "-c", "echo first; sleep 2; echo second"], cpus=0.1)
    chunks = []
    for text in client.logs(job, follow=True):
        if not chunks:
            assert client.job(job).state == "running", "the first output came only after the job ended"
        chunks.append(text)
    assert "".join(chunks) == "first\nsecond\n"
    assert client.wait(job, timeout=60).succeeded


def test_cancel(client):
    job = client.submit(["sleep", "300"], cpus=0.1)
    running(client, job)
    assert client.cancel(job).cancel_requested
    done = client.wait(job, timeout=60)
    assert done.state == "cancelled", done


def test_wait_timeout_leaves_the_job(client):
    job = client.submit(["sleep", "300"], cpus=0.1)
    with pytest.raises(dspool.WaitTimeout) as e:
        client.wait(job, timeout=0.5)
    assert "did not finish within" in str(e.value) or "still queued" in str(e.value)
    assert not client.job(job).done
    client.cancel(job)
    assert client.wait(job, timeout=60).state == "cancelled"


def test_list_with_filters(client):
    job = client.submit(["true"], cpus=0.1, wait=True)
    page = client.jobs(state=["succeeded"], limit=2)
    assert isinstance(page, dspool.JobList) and 1 <= len(page.jobs) <= 2
    assert all(j.state == "succeeded" for j in page.jobs) and page.jobs[0].id >= job.id
    assert all(j.pool == "default" for j in client.jobs(pool="default", limit=5).jobs)
    assert client.jobs(pool="no-such-pool").jobs == []
    older = client.jobs(before=job.id, limit=1)
    assert all(j.id < job.id for j in older.jobs)


@pytest.mark.parametrize("kwargs, field", [
    ({"memory": "4XB"}, "memory"),
    ({"env": {"LD_PRELOAD": "/x.so"}}, "env.LD_PRELOAD"),
    ({"cpus": 100000000}, "cpus"),
    ({"priority": 5000}, "priority"),
    ({"time_limit": "soon"}, "time_limit"),
    ({"workdir": "../elsewhere"}, "workdir"),
    ({"image": "not an image"}, "image"),
    ({"image": "../images/torch.tar"}, "image"),
    ({"pool": "Not A Pool"}, "pool"),
    ({"secrets": ["no-such-secret"]}, "secrets[0]"),
    ({"secret_files": ["no-such-secret"]}, "secret_files[0]"),
])
def test_a_bad_field_is_named(client, kwargs, field):
    with pytest.raises(dspool.InvalidError) as e:
        client.submit(["true"], **kwargs)
    assert e.value.field == field, e.value
    assert e.value.code == "invalid" and e.value.status == 400 and e.value.message


def test_priority_bounds(client):
    # The SDK's user is no admin and has no range: they may lower their
    # own work, not raise it.
    with pytest.raises(dspool.InvalidError) as e:
        client.submit(["true"], cpus=0.1, priority=1, hold=True)
    assert e.value.field == "priority" and "give -1000 to 0" in e.value.message, e.value
    job = client.submit(["true"], cpus=0.1, hold=True)
    assert job.priority == 0
    assert client.set_priority(job, -10).priority == -10
    assert client.job(job).priority == -10
    with pytest.raises(dspool.InvalidError) as e:
        client.set_priority(job.id, 5)
    assert e.value.field == "priority" and "give -1000 to 0" in e.value.message, e.value
    client.cancel(job)
    with pytest.raises(dspool.ConflictError):
        client.set_priority(job, -20)


def test_a_secret_file_at_fault_is_named_by_its_argument(client):
    client.set_secret("sdk-field", "v")
    try:
        with pytest.raises(dspool.InvalidError) as e:
            client.submit(["true"], secrets=["sdk-field=SDK_FIELD"], secret_files=["sdk-field", "no-such-secret"])
        assert e.value.field == "secret_files[1]", e.value
    finally:
        client.delete_secret("sdk-field")


def test_errors_say_what_happened(client):
    with pytest.raises(dspool.NotFoundError) as e:
        client.job(10 ** 9)
    assert "not found" in str(e.value)
    bad = dspool.Client(server=client.server, token="dsp_not-a-token", ca=client.ca or None)
    with pytest.raises(dspool.UnauthorizedError) as e:
        bad.whoami()
    assert "not recognised" in str(e.value) and "(the token sent was the token= argument)" in str(e.value)
