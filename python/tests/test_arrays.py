"""Job arrays, sweeps, dependencies and holds: what the SDK makes of its
arguments (offline), then arrays whose tasks see their rows, a chain of
dependent jobs, holding and releasing, and waiting for a whole array,
against the server."""

import io

import pytest

import dspool
from dspool import _progress, _submit

# A task prints its array, its index and its row's variables.
ECHO_ROW = ["sh", "-c", 'echo "$DSPOOL_ARRAY_ID $DSPOOL_ARRAY_INDEX lr=$LR name=$NAME"']


def test_sweep_rows_from_dicts_and_files(tmp_path):
    assert _submit.sweep_rows([{"LR": 0.1, "DEEP": True, "NAME": "a"}, {"LR": 2}]) == [
        {"LR": "0.1", "DEEP": "true", "NAME": "a"}, {"LR": "2"}]
    csv_file = tmp_path / "grid.csv"
    csv_file.write_text('\n LR, NAME\n0.10, "a, b"\n\n1e-3,c\n')
    assert _submit.sweep_rows(str(csv_file)) == [{"LR": "0.10", "NAME": "a, b"}, {"LR": "1e-3", "NAME": "c"}]
    jsonl = tmp_path / "grid.jsonl"
    jsonl.write_text('  {"LR": 0.10, "DEEP": false, "NAME": "a"}\n\n{"LR": 1e-3, "NAME": "c"}\n')
    # Numbers as written, as the CLI reads them.
    assert _submit.sweep_rows(jsonl) == [{"LR": "0.10", "DEEP": "false", "NAME": "a"}, {"LR": "1e-3", "NAME": "c"}]


@pytest.mark.parametrize("text, want", [
    ("", "is empty"),
    ("LR,NAME\n", "a header and no rows"),
    ("LR,LR\n1,2\n", "names LR twice"),
    ("LR,2X\n1,2\n", "header column 2"),
    ("LR,NAME\n1\n", "line 2: wrong number of fields"),
    ("HOME\n/x\n", "not a variable a job may set"),
    ('{"LR": 1}\n[1]\n', "line 2 is not a JSON object"),
    ('{"LR": {"a": 1}}\n', "the value of LR is not a string, number or boolean"),
    ('{"LR": null}\n', "the value of LR is not a string, number or boolean"),
])
def test_a_bad_sweep_file_is_named(tmp_path, text, want):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(dspool.InvalidError) as e:
        _submit.sweep_rows(str(p))
    assert e.value.field == "sweep" and want in str(e.value), e.value


def test_arrays_dependencies_and_refs():
    assert [_submit.array_spec(a) for a in ("0-999%50", range(10), range(0, 100, 10), range(3, 4), [1, 3, 5])] == [
        "0-999%50", "0-9", "0-90:10", "3", "1,3,5"]
    for bad in (range(0), [], "x".encode(), {1: 2}, 5):
        with pytest.raises(dspool.InvalidError) as e:
            _submit.array_spec(bad)
        assert e.value.field == "array"
    task = dspool.Job(id=47, array_id=40, array_index=7)
    whole = dspool.Job(id=40, array_id=40, array_index=0, array=dspool.ArraySummary(id=40, tasks=10))
    assert (task.ref, whole.ref, dspool.Job(id=12).ref) == ("40_7", "40", "12")
    assert _submit.after_spec("ok:12,any:40") == "ok:12,any:40"
    assert _submit.after_spec(12) == "ok:12"
    assert _submit.after_spec([whole, ("any", task), ("notok", 12), "any:13", "40_1"]) == \
        "ok:40,any:40_7,notok:12,any:13,ok:40_1"
    for bad in ([("later", 12)], [12.5], ["x"]):
        with pytest.raises(dspool.InvalidError) as e:
            _submit.after_spec(bad)
        assert e.value.field == "after"
    for bad in (0, True, "40_", "x", "-3", 1.5):
        with pytest.raises(dspool.InvalidError):
            _submit.ref_of(bad)
    assert _submit.ref_of(12) == "12" and _submit.ref_of("40_7") == "40_7"


def test_an_array_read_from_the_api():
    j = dspool.Job.from_json({"id": 40, "state": "succeeded", "array_id": 40, "array_index": 0, "after": "ok:12",
                              "array": {"id": 40, "indices": "0-9%2", "tasks": 10, "max_running": 2,
                                        "counts": {"running": 2, "queued": 3, "succeeded": 5}}})
    assert j.is_array and j.ref == "40" and j.array.max_running == 2 and j.after == "ok:12"
    assert (j.done, j.succeeded, j.array.state) == (False, False, "running")
    assert j.array.describe() == "3 queued, 2 running, 5 succeeded"
    out = io.StringIO()
    _progress.Progress(out).job(j, 1)
    assert out.getvalue() == "array 40: 3 queued, 2 running, 5 succeeded\n"
    j.array.counts = {"succeeded": 9, "failed": 1}
    assert (j.done, j.succeeded, j.array.state) == (True, False, "failed")
    t = dspool.Job.from_json({"id": 41, "state": "queued", "array_id": 40, "array_index": 1, "on_hold": True})
    assert (t.is_array, t.ref, t.on_hold, t.done) == (False, "40_1", True, False)


def test_a_script_may_make_an_array(tmp_path):
    p = tmp_path / "sweep.sh"
    p.write_text("#!/bin/sh\n#DSPOOL --array 0-9%2 --after ok:12 --hold\necho $DSPOOL_ARRAY_INDEX\n")
    command, words = _submit.batch_script(str(p), [])
    opts = _submit.apply_directives({"array": None, "after": None, "hold": False}, str(p), words)
    assert opts == {"array": "0-9%2", "after": "ok:12", "hold": True}


# Against the server.


def test_an_array_of_a_sweep(client, tmp_path):
    rows = [{"LR": 0.1, "NAME": "a"}, {"LR": 0.01, "NAME": "b b"}, {"LR": 1e-3, "NAME": "c"}]
    seen = []
    arr = client.submit(ECHO_ROW, name="sdk-sweep", sweep=rows, array="%2", cpus=0.1, wait=True, wait_timeout=180,
                        progress=seen.append)
    assert arr.is_array and arr.ref == str(arr.id) and arr.array.id == arr.id, arr
    assert (arr.array.tasks, arr.array.indices, arr.array.max_running) == (3, "0-2%2", 2), arr.array
    assert arr.succeeded and arr.done and arr.array.counts == {"succeeded": 3}, arr.array
    assert all(j.is_array and not j.done for j in seen)
    tasks = client.tasks(arr)
    assert [(t.array_id, t.array_index, t.ref) for t in tasks] == [(arr.id, i, "%d_%d" % (arr.id, i)) for i in range(3)]
    want = ["%d %d lr=%s name=%s\n" % (arr.id, i, r["LR"], r["NAME"]) for i, r in enumerate(rows)]
    assert ["".join(client.logs(t)) for t in tasks] == want
    assert "".join(client.logs("%d_1" % arr.id)) == want[1]
    assert client.job("%d_2" % arr.id).env == {"LR": "0.001", "NAME": "c"}
    with pytest.raises(dspool.InvalidError) as e:
        list(client.logs(arr))
    assert e.value.field == "id" and "logs(\"%d_0\")" % arr.id in str(e.value)
    # Listed as one line, task by task, or the array's tasks alone.
    listed = {j.id: j for j in client.jobs(limit=20).jobs}
    assert listed[arr.id].is_array and listed[arr.id].array.tasks == 3 and tasks[1].id not in listed
    every = [j for j in client.jobs(tasks=True, limit=20).jobs if j.array_id == arr.id]
    assert sorted(j.array_index for j in every) == [0, 1, 2] and not any(j.is_array for j in every)
    assert sorted(j.ref for j in client.jobs(array=arr.id).jobs) == [t.ref for t in tasks]
    # A sweep from a CSV file, as the CLI reads one; indices of its own.
    grid = tmp_path / "grid.csv"
    grid.write_text("LR,NAME\n0.5,x\n0.25,y\n")
    arr2 = client.submit(ECHO_ROW, sweep=str(grid), array="4,9", cpus=0.1, wait=True, wait_timeout=120)
    assert arr2.succeeded and arr2.array.indices == "4,9", arr2.array
    assert ["".join(client.logs(t)) for t in client.tasks(arr2.id)] == [
        "%d 4 lr=0.5 name=x\n" % arr2.id, "%d 9 lr=0.25 name=y\n" % arr2.id]


def test_a_bad_array_is_named(client):
    for kwargs, field in (({"array": "9-1"}, "array"), ({"array": "0-9", "sweep": [{"A": "1"}]}, "sweep"),
                          ({"sweep": [{"LD_PRELOAD": "x"}]}, "sweep[0]"), ({"after": "soon:12"}, "after")):
        with pytest.raises(dspool.InvalidError) as e:
            client.submit(["true"], **kwargs)
        assert e.value.field == field, (kwargs, e.value)


def test_a_dependency_chain(client):
    first = client.submit(["sh", "-c", "sleep 1; exit 1"], name="sdk-first", cpus=0.1)
    on_failure = client.submit(["sh", "-c", "echo cleanup"], cpus=0.1, after=("notok", first))
    then = client.submit(["true"], cpus=0.1, after=on_failure)
    never = client.submit(["true"], cpus=0.1, after="ok:%d" % first.id)
    assert (on_failure.after, then.after) == ("notok:%d" % first.id, "ok:%d" % on_failure.id)
    assert on_failure.state == "queued" and not on_failure.after_met
    assert "waiting for job %d to succeed" % on_failure.id in client.job(then).waiting
    done = client.wait(then, timeout=120)
    assert done.succeeded, done
    a, b = client.job(first), client.job(on_failure)
    assert (a.state, b.state, b.after_met) == ("failed", "succeeded", True)
    assert b.started_at >= a.finished_at and done.started_at >= b.finished_at
    assert "".join(client.logs(b)) == "cleanup\n"
    n = client.wait(never, timeout=60)
    assert (n.state, n.reason) == ("cancelled", "dependency") and str(first.id) in n.message, n


def test_hold_and_release(client):
    job = client.submit(["true"], cpus=0.1, hold=True)
    assert job.on_hold and job.state == "queued", job
    with pytest.raises(dspool.WaitTimeout) as e:
        client.wait(job, timeout=1.5)
    assert e.value.job.on_hold and "still queued" in str(e.value)
    assert client.job(job).waiting.startswith("held")
    assert not client.release(job.id).on_hold
    assert client.wait(job, timeout=60).succeeded
    with pytest.raises(dspool.ConflictError):
        client.hold(job)
    # A whole array, then one task of it by its ref.
    arr = client.submit(["true"], array="0-2", cpus=0.1, hold=True)
    assert arr.is_array and arr.array.counts == {"queued": 3}
    assert all(t.on_hold for t in client.tasks(arr))
    client.release("%d_1" % arr.id)
    assert client.wait("%d_1" % arr.id, timeout=60).succeeded
    assert [t.on_hold for t in client.tasks(arr)] == [True, False, True]
    assert client.release(arr).array.counts.get("succeeded") == 1
    assert client.wait(arr.id, timeout=60).succeeded


def test_wait_for_an_array(client):
    arr = client.submit(["sh", "-c", 'sleep 1; test "$DSPOOL_ARRAY_INDEX" != 2'], array=range(4), cpus=0.1)
    assert arr.is_array and arr.array.tasks == 4 and not arr.done
    lines = io.StringIO()
    done = client.wait(arr, timeout=180, progress=lambda j: _progress.Progress(lines).job(j, 0))
    assert done.is_array and done.done and not done.succeeded, done.array
    assert (done.array.counts, done.array.state) == ({"succeeded": 3, "failed": 1}, "failed")
    assert all(line.startswith("array %d: " % arr.id) for line in lines.getvalue().splitlines()), lines.getvalue()
    assert [t.state for t in client.tasks(arr)] == ["succeeded", "succeeded", "failed", "succeeded"]
    # A wait that times out says where the array is; cancel() ends it all.
    slow = client.submit(["sleep", "300"], array="0-1", cpus=0.1)
    with pytest.raises(dspool.WaitTimeout) as e:
        client.wait(slow, timeout=1)
    assert "array %d has not ended" % slow.id in str(e.value)
    client.cancel("%d_0" % slow.id)
    assert client.wait("%d_0" % slow.id, timeout=60).state == "cancelled"
    assert client.cancel(slow.id).is_array
    ended = client.wait(slow, timeout=60)
    assert ended.array.counts == {"cancelled": 2} and ended.array.state == "cancelled", ended.array
