"""Code running on the pool uses the SDK with no setup: a job installs the
SDK the control plane serves (`pip install URL`, no network beyond the
pool) and submits a job of its own with dspool.Client(), on each kind of
node the harness made (one of `dspool up` on plain HTTP over loopback, one
joined over HTTPS with the pool's own CA in DSPOOL_CA)."""

import dspool

SCRIPT = r'''
set -e
d=$(mktemp -d)
python3 -m pip install -q --no-index --disable-pip-version-check --target "$d" ${DSPOOL_CA:+--cert "$DSPOOL_CA"} \
    "$DSPOOL_SERVER/sdk/dspool-%s.tar.gz" >"$d.log" 2>&1 || { cat "$d.log"; exit 1; }
PYTHONPATH="$d" python3 - <<'PY'
import os, stat, dspool
c = dspool.Client()
me = c.whoami().name
j = c.submit(["sh", "-c", "echo inner"], cpus=0.1, wait=True)
print("inner", j.id, j.state, j.user == me, "".join(c.logs(j)).strip())
ca = os.environ.get("DSPOOL_CA")
print("ca", oct(stat.S_IMODE(os.stat(ca).st_mode)) if ca else "none", os.environ["DSPOOL_SERVER"].split(":")[0])
try:
    c._call("secret_set", {"name": "from-a-job"}, body={"value": ""})
    print("secret set")
except dspool.ForbiddenError as e:
    print("forbidden", "does not manage the account" in str(e))
PY
rm -rf "$d" "$d.log"
'''


def test_a_job_submits_a_job(client, pools):
    for pool in pools:
        outer = client.submit(["sh", "-c", SCRIPT % dspool.__version__], pool=pool, cpus=0.5, memory="512MiB",
                              time_limit="5m", wait=True, wait_timeout=300)
        out = "".join(client.logs(outer))
        assert outer.succeeded, "job %d in pool %s: %s (%s)\n%s" % (outer.id, pool, outer.state, outer.message, out)
        lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        inner_id, state, same_user, text = lines["inner"].split(" ", 3)
        assert (state, same_user, text) == ("succeeded", "True", "inner"), out
        inner = client.job(int(inner_id))
        assert inner.user == outer.user and inner.succeeded
        ca, scheme = lines["ca"].split()
        assert (ca, scheme) in (("none", "http"), ("0o644", "https")), out
        assert lines["forbidden"] == "True", out
