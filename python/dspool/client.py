"""The dspool API client."""

import base64
import codecs
import json
import os
import secrets as _random
import sys
import time
import urllib.parse

from . import _routes, _submit
from ._http import Transport
from ._progress import Progress
from .errors import DspoolError, InvalidError, UnauthorizedError, UnavailableError, WaitTimeout
from .types import JobDetail, Job, JobList, Notebook, Queue, Secret, ShareReport, UsageReport, User, format_duration

__all__ = ["Client", "config_path"]

# How long a submission is sent again while the server cannot be reached
# (with the same idempotency key, so it is never stored twice), and how
# long a wait keeps trying to reach a server it lost: as the CLI.
SUBMIT_RETRY_FOR = 30.0
RECONNECT_FOR = 120.0


def config_path(environ=None):
    """The CLI's saved login: DSPOOL_CONFIG, else
    $XDG_CONFIG_HOME/dspool/config.json, else ~/.config/dspool/config.json."""
    env = os.environ if environ is None else environ
    if env.get("DSPOOL_CONFIG"):
        return env["DSPOOL_CONFIG"]
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "dspool", "config.json")


def _load_config(path):
    try:
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
        return c if isinstance(c, dict) else {}
    except (OSError, ValueError):
        return {}


class Client:
    """A client of a dspool control plane.

    With no arguments it finds the server, token and CA as the CLI does:
    the arguments, then DSPOOL_SERVER, DSPOOL_TOKEN and DSPOOL_CA, then the
    saved login (`dspool up` and `dspool login` write it; config_file,
    DSPOOL_CONFIG or $XDG_CONFIG_HOME/dspool/config.json). In a job or a
    session on the pool those variables are set, to a token of the job's
    (or session's) own that works while it runs: Client() needs nothing.
    """

    def __init__(self, server=None, token=None, ca=None, config_file=None, timeout=60.0):
        env = os.environ
        path = config_file or config_path(env)
        saved = _load_config(path)
        self.server = server or env.get("DSPOOL_SERVER") or saved.get("server") or ""
        self.token = token or env.get("DSPOOL_TOKEN") or saved.get("token") or ""
        if token:
            self.token_from = "the token= argument"
        elif env.get("DSPOOL_TOKEN"):
            self.token_from = "DSPOOL_TOKEN"
        elif saved.get("token"):
            self.token_from = "the saved login's, in " + path
        else:
            self.token_from = ""
        ca_from, ca_file = "", ca or env.get("DSPOOL_CA") or saved.get("ca") or ""
        if ca:
            ca_from = "ca"
        elif env.get("DSPOOL_CA"):
            ca_from = "DSPOOL_CA"
        elif ca_file:
            ca_from = "the saved login's CA, in " + path
        self.ca = ca_file
        if not self.server:
            raise DspoolError("no server to talk to: start one with `dspool up`, or give server= (or DSPOOL_SERVER)",
                              field="server", code="invalid")
        self._http = Transport(self.server, self.token, ca=ca_file, ca_from=ca_from, timeout=timeout)

    def __repr__(self):
        return "dspool.Client(%r)" % (self.server,)

    def close(self):
        """Closes this thread's kept-alive connection."""
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # The one way requests are made: by name from the route table, sending
    # only what it declares.
    def _call(self, name, path=None, query=None, body=None, timeout=None):
        route = _routes.ROUTES[name]
        url = route.path.format(**{k: urllib.parse.quote(str(v), safe="") for k, v in (path or {}).items()})
        q = {k: v for k, v in (query or {}).items() if v is not None}
        undeclared = set(q) - set(route.query)
        if body is not None:
            fields = _routes.JOB_SPEC_FIELDS if route.body == "JobSpec" else route.body
            undeclared |= set(body) - set(fields)
        if undeclared:
            raise AssertionError("route %s does not declare %s" % (name, sorted(undeclared)))
        if q:
            url += "?" + urllib.parse.urlencode(q)
        data = json.dumps(body).encode() if body is not None else None
        try:
            _, answer = self._http.request(route.method, url, data, timeout=timeout)
        except UnauthorizedError as e:
            raise self._explain(e) from None
        return json.loads(answer) if route.answer else answer

    def _explain(self, e):
        # Which token was sent, which the server cannot know.
        if self.token_from and "token sent was" not in e.message:
            e.message += " (the token sent was %s)" % self.token_from
        return e

    def openapi(self):
        """The API's OpenAPI document, as a dict."""
        return json.loads(self._call("openapi"))

    def whoami(self):
        """The user the token acts as."""
        return User.from_json(self._call("whoami"))

    # Jobs.

    def submit(self, command=None, *, script=None, args=(), pool=None, team=None, name=None, cpus=None, memory=None,
               gpus=None, gpu_type=None, gpu_memory=None, time_limit=None, retries=None, priority=None, env=None,
               export=None, export_all=False, env_file=None, login=False, secrets=None, secret_files=None, workdir=None, image=None, array=None, sweep=None,
               after=None, hold=False, preemptible=False, idempotency_key=None, wait=False, wait_timeout=None, progress=None):
        """Submits a batch job, or an array of tasks, and returns it (with
        wait, once it has ended: for an array, every task).

        command is the program and its arguments, a list: it is run as it
        is, with no shell (give ["sh", "-c", "..."] for one). Or script, the
        path of a batch script here (first line #!), read and sent with the
        job to run with args; its #DSPOOL lines (#DSPOOL --cpus 4 --time 2h)
        give the options this call does not. The options are those of
        `dspool job submit`: cpus (a number, 0.5), memory (bytes, or a size
        with its unit, "4GiB"), gpus, gpu_type (each GPU's model: "a100", or
        a MIG profile "1g.10gb"), gpu_memory (each GPU's least memory,
        "40GiB"), time_limit ("2h", seconds, or a
        timedelta), retries, priority (-1000 to 1000, within the range of
        your and your team's limits; left out: their default), env (a dict, or
        "K=V" strings), export (names of variables here the job gets too),
        export_all (all of them but what the node sets), env_file (a file of
        KEY=VALUE lines), login (run in your login shell, bash -l), secrets
        ("NAME" or "NAME=VAR", or a dict NAME: VAR), secret_files (NAMEs, as
        files in $DSPOOL_SECRETS_DIR), workdir (relative to your home on
        the share), image (the job runs in it with podman: an image's name
        on the nodes, or a file.tar[.gz] on the share, relative to your
        home; default the pool's), pool, team, name.

        array makes it an array of tasks, each a job of its own with its
        index in DSPOOL_ARRAY_INDEX (and the array's id in DSPOOL_ARRAY_ID):
        "0-99", "1,3,5-9", "0-999:10", with "%N" at most N running at once
        ("0-999%50"); or a range, or a list of indices. sweep gives each task
        variables of its own, one task per row: a list of dicts ({"LR":
        0.1}), or the path of a CSV file whose header names the variables or
        of JSON lines (one object per line), read as `dspool job submit
        --sweep` reads it; array is then only "%N", or one index per row.
        The result is then the whole array (Job.is_array; Job.array counts
        its tasks by state). after runs it once other jobs have ended:
        "ok:12,notok:40,any:40_7" (ok: succeeded, notok: failed or
        cancelled, any: ended; an array's id is all its tasks), or a job (or
        its id or ref) that must succeed, a (kind, job) pair, or a list of
        them. hold queues it held, until release(). preemptible lets a job
        of a higher score evict it (SIGTERM, then SIGKILL after the pool's
        grace, in seconds in DSPOOL_PREEMPT_GRACE): it then waits in the
        queue again, in its place by age, neither failed nor retried; the
        pool must allow it.

        A submission the server could not be reached for is sent again for
        up to 30 s with the same idempotency_key (random by default): it is
        never stored twice. An error names the field at fault
        (InvalidError.field).
        """
        if script is not None:
            if command is not None:
                raise InvalidError("give a command or a script, not both", field="script")
            command, words = _submit.batch_script(script, args)
            o = _submit.apply_directives(dict(
                pool=pool, team=team, name=name, cpus=cpus, memory=memory, gpus=gpus, gpu_type=gpu_type,
                gpu_memory=gpu_memory, time_limit=time_limit,
                retries=retries, priority=priority, workdir=workdir, image=image, env=env, secrets=secrets,
                secret_files=secret_files, export=export, export_all=export_all, env_file=env_file, login=login,
                array=array, sweep=sweep, after=after, hold=hold, preemptible=preemptible),
                script, words)
            pool, team, name, cpus, memory, gpus = o["pool"], o["team"], o["name"], o["cpus"], o["memory"], o["gpus"]
            gpu_type, gpu_memory = o["gpu_type"], o["gpu_memory"]
            time_limit, retries, priority, workdir, env = o["time_limit"], o["retries"], o["priority"], o["workdir"], o["env"]
            image = o["image"]
            secrets, secret_files, export, export_all = o["secrets"], o["secret_files"], o["export"], o["export_all"]
            env_file, login = o["env_file"], o["login"]
            array, sweep, after, hold = o["array"], o["sweep"], o["after"], o["hold"]
            preemptible = o["preemptible"]
            name = name or os.path.basename(script)
        elif args:
            raise InvalidError("args are a script's: give them in the command", field="args")
        if isinstance(command, (str, bytes)) or not command:
            raise InvalidError("give the program and its arguments as a list, e.g. ['python3', 'train.py']; "
                               "it runs with no shell: ['sh', '-c', '...'] for one", field="command")
        command = [str(a) for a in command]
        variables = _submit.environment(export, export_all, env_file)
        variables.update(_env(env or {}))
        if login:
            command = _submit.login_command(command)
        spec = {"command": command}
        for key, val in (("pool", pool), ("team", team), ("name", name), ("gpus", gpus), ("gpu_type", gpu_type), ("retries", retries),
                         ("priority", priority), ("workdir", workdir), ("image", image)):
            if val is not None:
                spec[key] = val
        if cpus is not None:
            spec["cpus"] = _positive("cpus", cpus, float)
        if memory is not None:
            spec["memory"] = _positive("memory", memory, int) if not isinstance(memory, str) else memory
        if gpu_memory is not None:
            spec["gpu_memory"] = _positive("gpu_memory", gpu_memory, int) if not isinstance(gpu_memory, str) else gpu_memory
        if time_limit is not None:
            spec["time_limit"] = _duration("time_limit", time_limit)
        if variables:
            spec["env"] = variables
        uses = _secret_uses(secrets, secret_files)
        if uses:
            spec["secrets"] = uses
        if array is not None:
            spec["array"] = _submit.array_spec(array)
        if sweep is not None:
            spec["sweep"] = _submit.sweep_rows(sweep)
        after = _submit.after_spec(after) if after is not None else ""
        if after:
            spec["after"] = after
        if hold:
            spec["hold"] = True
        if preemptible:
            spec["preemptible"] = True
        spec["idempotency_key"] = idempotency_key or _random.token_hex(16)
        deadline = time.monotonic() + SUBMIT_RETRY_FOR
        delay = 0.05
        while True:
            try:
                job = Job.from_json(self._call("submit", body=spec))
                break
            except UnavailableError:
                if time.monotonic() > deadline:
                    raise
            except DspoolError as e:
                raise _secret_field(e, secrets, secret_files) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        if not wait:
            return job
        return self.wait(job, timeout=wait_timeout, progress=progress)

    def job(self, job):
        """A job and its attempts. job is a Job, a job id, or a ref: an
        array's id (40) is the whole array (its first task, with
        Job.array), "40_7" one of its tasks."""
        return JobDetail.from_json(self._call("job", {"id": _submit.ref_of(job)}))

    def jobs(self, state=None, pool=None, all_users=False, limit=None, before=None, array=None, tasks=False, schedule=None):
        """Your jobs, newest first (every user's with all_users, for an
        admin): of state (one, a list, or "queued,running"), of pool, the
        runs of your schedule named schedule; at most limit (the server's
        default: 100); before= a job id for the next page (JobList.next).
        An array is one entry, its first task with the array summed up
        (Job.array), unless tasks, which lists every task on its own; array
        (an array's id, or its Job) lists only its tasks."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        if array is not None:
            array = _array_id(array)
        q = {"state": state, "pool": pool, "all": "true" if all_users else None, "array": array,
             "tasks": "true" if tasks else None, "limit": limit, "before": before, "schedule": schedule}
        return JobList.from_json(self._call("jobs", query=q))

    def tasks(self, array, state=None):
        """Every task of an array (its id, or its Job), in the order of
        their indices, page after page."""
        aid, out, before = _array_id(array), [], None
        while True:
            page = self.jobs(state=state, array=aid, limit=1000, before=before)
            out += page.jobs
            if not page.next:
                break
            before = page.next
        return sorted(out, key=lambda j: (j.array_index is None, j.array_index or 0, j.id))

    def cancel(self, job):
        """Cancels a job: a queued one at once; a running one gets SIGTERM,
        then SIGKILL after the grace, for its whole process tree. An
        array's id cancels every task that has not ended; "40_7" one."""
        return Job.from_json(self._call("cancel", {"id": _submit.ref_of(job)}))

    def hold(self, job):
        """Holds a queued job: it stays queued, and no node is started for
        it, until release(). An array's id holds every queued task; "40_7"
        one. A job that is not queued is a ConflictError."""
        return Job.from_json(self._call("hold", {"id": _submit.ref_of(job)}))

    def release(self, job):
        """Releases a held job (held with hold(), or submitted with
        hold=True): it queues again. An array's id releases every held
        task."""
        return Job.from_json(self._call("release", {"id": _submit.ref_of(job)}))

    def set_priority(self, job, priority):
        """Changes the priority of a queued job (higher runs first): an
        admin to any, a maintainer of its team within the team's range,
        its owner to one they could submit with or a lower one. An array's
        id changes every queued task; "40_7" one. A priority out of range
        is an InvalidError that gives the range; a job that is not queued a
        ConflictError."""
        return Job.from_json(self._call("set_priority", {"id": _submit.ref_of(job)}, body={"priority": int(priority)}))

    def wait(self, job, timeout=None, progress=None):
        """Waits until the job has ended and returns it, whether it
        succeeded or not (see Job.succeeded, Job.exit_code); for an array
        (its id, or the Job submit returned), until every task has, and
        returns the array (Job.array counts its tasks by state). timeout
        (seconds or a timedelta) raises WaitTimeout when it passes; the job
        goes on. progress is called with the job at each change while it
        waits, or, when True, a line on stderr says where it is (for an
        array, how many tasks are in each state). A server that is lost for
        a while (a restart) is waited for, for up to 2 minutes."""
        jid = _submit.ref_of(job)
        timeout = _seconds("timeout", timeout)
        show = Progress(sys.stderr) if progress is True else progress
        began = time.monotonic()
        lost, last, delay = None, None, 0.25
        try:
            while True:
                poll = 2.0 if show else 60.0
                if timeout is not None:
                    left = timeout - (time.monotonic() - began)
                    if left <= 0:
                        raise WaitTimeout(_waited_too_long(jid, last, timeout), job=last)
                    poll = max(min(poll, left), 0.001)
                try:
                    j = Job.from_json(self._call("wait", {"id": jid}, {"timeout": format_duration(poll)},
                                                 timeout=poll + 30))
                except UnavailableError:
                    if lost is None:
                        lost = time.monotonic()
                    if time.monotonic() - lost > RECONNECT_FOR:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                lost, delay = None, 0.25
                if j.done:
                    return j
                last = j
                if isinstance(show, Progress):
                    show.job(j, time.monotonic() - began)
                elif show:
                    show(j)
        finally:
            if isinstance(show, Progress):
                show.done()

    def logs(self, job, attempt=0, follow=False):
        """The output of a job's attempt (0: the latest), stdout and stderr
        as the job wrote them, as an iterator of text: with follow, as it
        comes, until the attempt ends. "".join(client.logs(7)) is all of it.
        A task's are its own: logs("40_7"), or logs(task) of a Job that
        jobs(array=40) or tasks(40) listed; a whole array has none.
        """
        if isinstance(job, Job) and job.is_array:
            raise InvalidError("job %d is an array of %d tasks: give one task, as logs(\"%d_%d\"), or see them "
                               "with tasks(%d)" % (job.id, job.array.tasks, job.id, job.array_index or 0, job.id),
                               field="id")
        jid = _submit.ref_of(job)
        route = _routes.ROUTES["logs"]
        url = route.path.format(id=jid) + "?" + urllib.parse.urlencode(
            {"attempt": int(attempt), "follow": "true" if follow else "false"})
        try:
            resp, conn = self._http.stream(route.method, url, timeout=None if follow else self._http.timeout)
        except UnauthorizedError as e:
            raise self._explain(e) from None
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                text = dec.decode(chunk)
                if text:
                    yield text
            tail = dec.decode(b"", final=True)
            if tail:
                yield tail
        finally:
            conn.close()

    # Notebooks.

    def notebook_start(self, pool=None, wait=False, timeout=300, progress=None, profile=None):
        """Starts your Jupyter server (in pool; by default the default
        interactive pool), or returns the one starting or running. profile
        is the size of its session: one of the pool's session profiles
        ("small", "large", "gpu": pool(NAME).sessions["profiles"]), or a
        size inline ("8cpu-64gib-1gpu"); by default the pool's own. With
        wait, returns once it serves, or raises with why it did not."""
        body = {k: v for k, v in (("pool", pool), ("profile", profile)) if v}
        nb = Notebook.from_json(self._call("notebook_start", body=body))
        if not wait:
            return nb
        show = Progress(sys.stderr) if progress is True else progress
        began = time.monotonic()
        try:
            while nb.state == "starting":
                if time.monotonic() - began > timeout:
                    raise WaitTimeout("your Jupyter server is still starting after %ds: see notebook_status()" % timeout)
                if isinstance(show, Progress):
                    show.line(nb.message if not nb.node_name and nb.message else
                              "starting your Jupyter server on node %s" % nb.node_name, time.monotonic() - began)
                elif show:
                    show(nb)
                time.sleep(0.2)
                nb = self.notebook_status()
        finally:
            if isinstance(show, Progress):
                show.done()
        if nb.state != "ready":
            raise DspoolError("your Jupyter server %s: %s" % (nb.state, nb.message), code="unavailable")
        return nb

    def notebook_status(self):
        """Your Jupyter server's state, node and URL."""
        return Notebook.from_json(self._call("notebook_status"))

    def notebook_stop(self):
        """Stops your Jupyter server."""
        return Notebook.from_json(self._call("notebook_stop"))

    # Secrets: names only; a value is sent, never read back.

    def secrets(self):
        """Your secrets and your teams': names, owners and dates."""
        return [Secret.from_json(s) for s in self._call("secrets").get("secrets") or []]

    def set_secret(self, name, value, team=None, session_env=None, session_file=False):
        """Creates or replaces a secret (yours, or TEAM/NAME a team's) with
        value (str or bytes); session_env and session_file also give it to
        your SSH sessions and Jupyter server."""
        team, name = _secret_ref(name, team)
        if isinstance(value, str):
            value = value.encode("utf-8")
        body = {"value": base64.b64encode(value).decode()}
        if team:
            body["team"] = team
        if session_env:
            body["session_env"] = session_env
        if session_file:
            body["session_file"] = True
        return Secret.from_json(self._call("secret_set", {"name": name}, body=body))

    def delete_secret(self, name, team=None):
        """Deletes a secret (yours, or TEAM/NAME a team's)."""
        team, name = _secret_ref(name, team)
        return Secret.from_json(self._call("secret_delete", {"name": name}, {"team": team}))

    def usage(self, since=None, by=None):
        """Use of the window since (a span back from now, "7d", seconds or a
        timedelta; default 30 days) up to now, by "user" (default) or
        "pool"."""
        if since is not None and not isinstance(since, str):
            since = format_duration(since)
        return UsageReport.from_json(self._call("usage", query={"since": since, "by": by}))

    def queue(self, pool=None):
        """Every user's queued work (of one pool with pool=), in the order
        the scheduler takes it: a Queue whose jobs say their position, the
        factors of their score, why they wait and when they may start."""
        return Queue.from_json(self._call("queue", query={"pool": pool}))

    def share(self):
        """Each team's and user's fair share, factor and decayed usage."""
        return ShareReport.from_json(self._call("share"))


def _array_id(array):
    """The id of an array: given, or of its Job (a task's is its array's)."""
    if isinstance(array, Job):
        return array.array_id or array.id
    if isinstance(array, bool) or not isinstance(array, (int, str)) or not str(array).isdigit() or int(array) <= 0:
        raise InvalidError("%r is not an array's id: give the id of an array (40), or its Job" % (array,),
                           field="array")
    return int(array)


def _positive(field, v, kind):
    try:
        n = kind(v)
    except (TypeError, ValueError):
        raise InvalidError("%r is not a number" % (v,), field=field) from None
    if n <= 0:
        raise InvalidError("must be more than 0", field=field)
    return n


def _seconds(field, v):
    if v is None:
        return None
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidError("give seconds or a timedelta, not %r" % (v,), field=field)
    return float(v)


def _duration(field, v):
    try:
        return format_duration(v)
    except TypeError as e:
        raise InvalidError(str(e), field=field) from None


def _env(env):
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    out = {}
    for kv in env:
        k, sep, v = str(kv).partition("=")
        if not sep:
            raise InvalidError("%r is not K=V" % (kv,), field="env")
        out[k] = v
    return out


def _secret_uses(secrets, secret_files):
    uses = []
    if isinstance(secrets, dict):
        secrets = ["%s=%s" % (k, v) if v else k for k, v in secrets.items()]
    for ref in secrets or ():
        name, _, var = ref.partition("=")
        uses.append({"secret": name, "env": var} if var else {"secret": name})
    for ref in secret_files or ():
        uses.append({"secret": ref, "file": True})
    for u in uses:
        assert set(u) <= set(_routes.SECRET_USE_FIELDS)
    return uses


def _secret_field(e, secrets, secret_files):
    """Names, in an error about secrets[i], the argument that asked for it."""
    if not e.field.startswith("secrets["):
        return e
    try:
        i = int(e.field[len("secrets["):e.field.index("]")])
    except ValueError:
        return e
    n = len(secrets or ())
    e.field = "secrets[%d]" % i if i < n else "secret_files[%d]" % (i - n)
    return e


def _secret_ref(name, team):
    t, sep, n = name.partition("/")
    if not sep:
        return team, name
    if team and team != t:
        raise InvalidError("%s names team %s, and team= %s another: give one of them" % (name, t, team), field="team")
    return t, n


def _waited_too_long(jid, last, timeout):
    if last is not None and last.is_array:
        return ("array %s has not ended after %gs (%s); it goes on: see its tasks with tasks(%s), or cancel(%s)"
                % (jid, timeout, last.array.describe(), jid, jid))
    if last is not None and last.state == "queued" and last.on_hold:
        return "job %s is still queued after %gs, held: it runs once released, with release(%r)" % (
            jid, timeout, _arg(jid))
    if last is not None and last.state == "queued":
        what = "job %s is still queued after %gs" % (jid, timeout)
        if last.waiting:
            what += ": " + last.waiting
        return what + ". It stays queued: cancel it with cancel(%r), or see why with `dspool pool events %s`" % (
            _arg(jid), last.pool)
    return "job %s did not finish within %gs; it goes on: see it with job(%r)" % (jid, timeout, _arg(jid))


def _arg(ref):
    """A ref as a call takes it: 12, or "40_7"."""
    return int(ref) if ref.isdigit() else ref
