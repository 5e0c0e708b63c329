"""The options of `dspool job submit` that act on the submitter's side:
batch scripts and their #DSPOOL lines, the submitter's variables (export,
export_all, env_file) and the login shell; offline, then against the
server."""

import datetime

import pytest

import dspool
from dspool import _submit

SCRIPT = """#!/bin/sh
# a comment, then the directives
#DSPOOL --cpus 0.5 --name from-script
#DSPOOL --env FROM_SCRIPT=1 --time=5m --export SDK_EXPORTED,SDK_OTHER

echo "args=$* cpus=$DSPOOL_CPUS env=$FROM_SCRIPT file=$FROM_FILE exported=$SDK_EXPORTED,$SDK_OTHER zero=$0"
#DSPOOL --gpus 8
"""


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "job.sh"
    p.write_text(SCRIPT)
    return str(p)


def test_a_script_and_its_directives(script):
    command, words = _submit.batch_script(script, ["a", 1])
    assert command == ["/bin/sh", "-c", SCRIPT, "job.sh", "a", "1"]
    # Directives end with the comments at the top: --gpus 8 is text.
    assert words == ["--cpus", "0.5", "--name", "from-script", "--env", "FROM_SCRIPT=1", "--time=5m",
                     "--export", "SDK_EXPORTED,SDK_OTHER"]
    opts = _submit.apply_directives({"cpus": 0.25, "name": None, "env": None, "time_limit": None, "export": None}, script, words)
    assert opts == {"cpus": 0.25, "name": "from-script", "env": ["FROM_SCRIPT=1"], "time_limit": "5m",
                    "export": ["SDK_EXPORTED", "SDK_OTHER"]}


def test_a_script_may_be_preemptible(tmp_path):
    p = tmp_path / "ckpt.sh"
    p.write_text("#!/bin/sh\n#DSPOOL --preemptible --pool spot\necho $DSPOOL_PREEMPT_GRACE\n")
    _, words = _submit.batch_script(str(p), [])
    assert words == ["--preemptible", "--pool", "spot"]
    assert _submit.apply_directives({"preemptible": False, "pool": None}, str(p), words) == {"preemptible": True, "pool": "spot"}


@pytest.mark.parametrize("text, want", [
    ("echo no interpreter\n", "is no batch script"),
    ("#!\necho\n", "names no interpreter"),
    ("#!/usr/bin/awk -f\n{print}\n", "does not know how to hand"),
    ("#!/bin/sh\n#DSPOOL --wait\n", "no flag a script may set"),
    ("#!/bin/sh\n#DSPOOL cpus 2\n", "is not a flag"),
    ("#!/bin/sh\n#DSPOOL --gpus many\n", "not a int"),
    ("#!/bin/sh\n#DSPOOL --name 'open\n", "line 2"),
])
def test_a_bad_script_is_named(tmp_path, text, want):
    p = tmp_path / "bad.sh"
    p.write_text(text)
    with pytest.raises(dspool.InvalidError) as e:
        command, words = _submit.batch_script(str(p), [])
        _submit.apply_directives({"gpus": None, "name": None}, str(p), words)
    assert e.value.field == "script" and want in str(e.value), e.value


def test_the_submitters_variables(tmp_path):
    here = {"PATH": "/bin", "TERM": "xterm", "SSH_AUTH_SOCK": "/s", "DSPOOL_TOKEN": "t", "LD_PRELOAD": "x",
            "HOME": "/home/me", "PROJECT": "p1", "SEED": "7"}
    assert _submit.environment(None, True, None, here) == {"PATH": "/bin", "PROJECT": "p1", "SEED": "7"}
    assert _submit.environment(["SEED"], False, None, here) == {"SEED": "7"}
    assert _submit.environment("SEED,PROJECT", False, None, here) == {"SEED": "7", "PROJECT": "p1"}
    for bad, field in ((["NOPE"], "export"), (["DSPOOL_TOKEN"], "export")):
        with pytest.raises(dspool.InvalidError) as e:
            _submit.environment(bad, False, None, here)
        assert e.value.field == field
    f = tmp_path / "vars.env"
    f.write_text('# settings\nexport A="quoted value"\nB = plain\n\nC=\'single\'\n')
    assert _submit.environment(["SEED"], False, str(f), here) == {"SEED": "7", "A": "quoted value", "B": "plain",
                                                                  "C": "single"}
    f.write_text("A=1\nnot a line\n")
    with pytest.raises(dspool.InvalidError) as e:
        _submit.environment(None, False, str(f), here)
    assert e.value.field == "env_file" and "line 2" in str(e.value)


def test_login_shell_quotes_the_command():
    assert _submit.login_command(["python3", "-c", "print('hi')", ""]) == [
        "/bin/bash", "-l", "-c", "python3 -c 'print('\"'\"'hi'\"'\"')' ''"]


def test_submit_a_script(client, script, tmp_path, monkeypatch):
    monkeypatch.setenv("SDK_EXPORTED", "yes")
    monkeypatch.setenv("SDK_OTHER", "too")
    env_file = tmp_path / "vars.env"
    env_file.write_text("FROM_FILE=2\n")
    job = client.submit(script=script, args=["a", "b c"], cpus=0.25, env_file=str(env_file), wait=True)
    assert job.succeeded, job
    assert (job.name, job.cpus, job.time_limit) == ("from-script", 0.25, datetime.timedelta(minutes=5))
    assert job.env == {"FROM_SCRIPT": "1", "FROM_FILE": "2", "SDK_EXPORTED": "yes", "SDK_OTHER": "too"}
    assert "".join(client.logs(job)) == "args=a b c cpus=0.25 env=1 file=2 exported=yes,too zero=job.sh\n"


def test_submit_in_a_login_shell(client):
    job = client.submit(["sh", "-c", "echo \"$1\"", "sh", "two words"], login=True, cpus=0.1, wait=True)
    assert job.succeeded and job.command[:3] == ["/bin/bash", "-l", "-c"], job
    assert "".join(client.logs(job)) == "two words\n"
    with pytest.raises(dspool.InvalidError) as e:
        client.submit(["true"], script="x.sh")
    assert e.value.field == "script"
