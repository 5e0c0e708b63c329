"""Typed results of the dspool API: dataclasses read from its JSON.

Each names the schema of the API's OpenAPI document (GET
/api/v1/openapi.json) that it reads, in SCHEMA; the SDK's tests check that
every field here is one the document has. Fields the server adds later are
ignored, and fields it leaves out take their defaults.
"""

import dataclasses
import datetime
import re
from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional

__all__ = [
    "Job",
    "ArraySummary",
    "Attempt",
    "JobDetail",
    "JobList",
    "SecretUse",
    "Secret",
    "Notebook",
    "User",
    "PoolUsage",
    "UserUsage",
    "UsageReport",
    "QueueEntry",
    "Queue",
    "ShareAccount",
    "ShareReport",
    "parse_time",
    "parse_duration",
    "format_duration",
    "MODELS",
]

TERMINAL_STATES = ("succeeded", "failed", "cancelled")

_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(s):
    """A datetime (aware) from the server's RFC 3339 time; None for None,
    "" and Go's zero time. Go writes nanoseconds, cut to microseconds."""
    if not s:
        return None
    m = _TIME.match(s)
    if not m:
        raise ValueError("%r is not an RFC 3339 time" % (s,))
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    if y == "0001" and mo == "01" and d == "01":
        return None  # Go's zero time: never
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = datetime.timezone.utc
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, tz)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_duration(s):
    """A timedelta from a Go duration ("2h30m0s", "90s"); None for None or
    ""."""
    if s in (None, "", 0):
        return None
    text = s.lstrip("+-")
    if text == "0":
        return datetime.timedelta(0)
    pos, secs = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValueError("%r is not a duration (examples: 90s, 30m, 2h)" % (s,))
        secs += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("%r is not a duration (examples: 90s, 30m, 2h)" % (s,))
    return datetime.timedelta(seconds=-secs if s.startswith("-") else secs)


def format_duration(d):
    """A Go duration string from a timedelta, a number of seconds, or a
    string (as it is): what the API takes for a time limit or a timeout."""
    if isinstance(d, str):
        return d
    if isinstance(d, datetime.timedelta):
        d = d.total_seconds()
    if isinstance(d, bool) or not isinstance(d, (int, float)):
        raise TypeError("a duration is a string (90s, 2h), a number of seconds or a timedelta, not %r" % (d,))
    if d == int(d):
        return "%ds" % int(d)
    return "%dms" % round(d * 1000)


def _list(model):
    return lambda v: [model.from_json(x) for x in (v or [])]


class _Model:
    SCHEMA: ClassVar[str] = ""
    # How to read a field's JSON value, by field name; as it is otherwise.
    _READ: ClassVar[dict] = {}

    @classmethod
    def from_json(cls, d):
        kw = {}
        read = {}
        for c in reversed(cls.__mro__):
            read.update(c.__dict__.get("_READ", {}))
        for f in dataclasses.fields(cls):
            if f.name in d and d[f.name] is not None:
                conv = read.get(f.name)
                kw[f.name] = conv(d[f.name]) if conv else d[f.name]
        return cls(**kw)


_TIMES = {"submitted_at": parse_time, "started_at": parse_time, "finished_at": parse_time}


@dataclass
class SecretUse(_Model):
    """A secret a job asks for, by name: in the variable env, or as the file
    $DSPOOL_SECRETS_DIR/NAME when file."""

    SCHEMA: ClassVar[str] = "SecretUse"
    secret: str = ""
    env: str = ""
    file: bool = False


# The order in which task counts are told, as the CLI tells them.
_COUNT_ORDER = ("queued", "running", "succeeded", "failed", "cancelled")


@dataclass
class ArraySummary(_Model):
    """A job array as a whole: its indices ("0-999%50"), how many tasks it
    has, how many may run at once (0: no cap), and how many tasks are in
    each state (counts, by state)."""

    SCHEMA: ClassVar[str] = "ArraySummary"
    id: int = 0
    indices: str = ""
    tasks: int = 0
    max_running: int = 0
    counts: Dict[str, int] = field(default_factory=dict)

    @property
    def state(self):
        """The array's state in one word, as `dspool job list` has it:
        running while a task runs, queued while one waits, then failed if a
        task failed, cancelled if one was, else succeeded."""
        for s in ("running", "queued", "failed", "cancelled"):
            if self.counts.get(s):
                return s
        return "succeeded"

    @property
    def done(self):
        """Whether every task has ended."""
        return not self.counts.get("queued") and not self.counts.get("running")

    def describe(self):
        """The counts as words: "2 running, 3 succeeded"."""
        parts = ["%d %s" % (self.counts[s], s) for s in _COUNT_ORDER if self.counts.get(s)]
        parts += ["%d %s" % (n, s) for s, n in sorted(self.counts.items()) if n and s not in _COUNT_ORDER]
        return ", ".join(parts) or "no tasks"


@dataclass
class Job(_Model):
    """A batch job. cpus is a number of cores, memory bytes, time_limit a
    timedelta (None: no limit); the *_at fields are aware datetimes.

    A task of an array has array_id (the array's id) and array_index (its
    index; ref is "ID_INDEX"). A whole array (what submit with array= or
    sweep= returns, and job(), wait(), cancel(), hold() and release() of an
    array's id, and jobs() lists as one line) is its first task with array,
    the ArraySummary of every task: is_array is then true, and done and
    succeeded are the whole array's (state, exit_code and node stay the
    first task's; array.state is the array's)."""

    SCHEMA: ClassVar[str] = "Job"
    _READ: ClassVar[dict] = dict(_TIMES, time_limit=parse_duration, secrets=_list(SecretUse),
                                 array=ArraySummary.from_json, slot=parse_time)
    id: int = 0
    name: str = ""
    user: str = ""
    team: str = ""
    pool: str = ""
    state: str = ""
    reason: str = ""
    exit_code: Optional[int] = None
    message: str = ""
    attempt: int = 0
    node: str = ""
    cpus: float = 0
    memory: int = 0
    gpus: int = 0
    gpu_type: str = ""  # each GPU's model, as asked ("": any)
    gpu_memory: int = 0  # each GPU's least memory, bytes, as asked (0: any)
    gpu_indices: List[int] = field(default_factory=list)
    gpus_held: List[dict] = field(default_factory=list)  # the GPUs held, as the node describes them (job show)
    gpus_busy: List[int] = field(default_factory=list)  # those of them at work at the last sample (job show)
    time_limit: Optional[datetime.timedelta] = None
    retries: int = 0
    priority: int = 0
    env: Dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    image: str = ""
    command: List[str] = field(default_factory=list)
    secrets: List[SecretUse] = field(default_factory=list)
    cancel_requested: bool = False
    waiting: str = ""
    held: bool = False
    schedule: str = ""  # the schedule that submitted it ("": none), for the slot at slot
    slot: Optional[datetime.datetime] = None
    submitted_at: Optional[datetime.datetime] = None
    started_at: Optional[datetime.datetime] = None
    finished_at: Optional[datetime.datetime] = None
    array_id: int = 0
    array_index: Optional[int] = None
    after: str = ""
    after_met: bool = False
    on_hold: bool = False
    preemptible: bool = False
    preemptions: int = 0  # evictions for jobs of a higher score; they count against no retry
    preempt_requested: bool = False
    array: Optional[ArraySummary] = None

    @property
    def is_array(self):
        """Whether this is a whole array (its first task, with array)."""
        return self.array is not None

    @property
    def ref(self):
        """How the API and the CLI name it: "12" for a job, "40" for a whole
        array, "40_7" for one task of array 40."""
        if self.array is None and self.array_id and self.array_index is not None:
            return "%d_%d" % (self.array_id, self.array_index)
        return str(self.id)

    @property
    def done(self):
        """Whether the job has ended: succeeded, failed or cancelled; for a
        whole array, whether every task has."""
        if self.array is not None:
            return self.array.done
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self):
        """Whether it succeeded; for a whole array, whether every task did."""
        if self.array is not None:
            return self.array.done and self.array.state == "succeeded"
        return self.state == "succeeded"


@dataclass
class Attempt(_Model):
    """One execution of a job on one node."""

    SCHEMA: ClassVar[str] = "Attempt"
    _READ: ClassVar[dict] = _TIMES
    job: int = 0
    attempt: int = 0
    node: str = ""
    gpu_indices: List[int] = field(default_factory=list)
    started_at: Optional[datetime.datetime] = None
    finished_at: Optional[datetime.datetime] = None
    exit_code: Optional[int] = None
    reason: str = ""
    message: str = ""


@dataclass
class JobDetail(Job):
    """A job with its attempts, as `job show` has it."""

    SCHEMA: ClassVar[str] = "JobDetail"
    _READ: ClassVar[dict] = {"attempts": _list(Attempt)}
    attempts: List[Attempt] = field(default_factory=list)


@dataclass
class JobList(_Model):
    """A page of jobs, newest first; next, when not 0, is the before= of the
    next page."""

    SCHEMA: ClassVar[str] = "JobList"
    _READ: ClassVar[dict] = {"jobs": _list(Job)}
    jobs: List[Job] = field(default_factory=list)
    next: int = 0


@dataclass
class Secret(_Model):
    """A secret's name, owner and dates: never its value."""

    SCHEMA: ClassVar[str] = "Secret"
    _READ: ClassVar[dict] = {"created_at": parse_time, "updated_at": parse_time, "last_read_at": parse_time}
    name: str = ""
    user: str = ""
    team: str = ""
    session_env: str = ""
    session_file: bool = False
    created_by: str = ""
    created_at: Optional[datetime.datetime] = None
    updated_at: Optional[datetime.datetime] = None
    last_read_at: Optional[datetime.datetime] = None

    @property
    def ref(self):
        """How work names it: NAME, or TEAM/NAME for a team's."""
        return self.team + "/" + self.name if self.team else self.name


@dataclass
class Notebook(_Model):
    """Your Jupyter server: state starting, ready, stopped or failed; url is
    where it is reached (with your credentials)."""

    SCHEMA: ClassVar[str] = "Notebook"
    _READ: ClassVar[dict] = {"started_at": parse_time, "ready_at": parse_time, "idle_since": parse_time, "stops_at": parse_time}
    user: str = ""
    pool: str = ""
    node: str = ""
    node_name: str = ""
    session: str = ""
    state: str = ""
    url: str = ""
    started_at: Optional[datetime.datetime] = None
    ready_at: Optional[datetime.datetime] = None
    idle_since: Optional[datetime.datetime] = None
    stops_at: Optional[datetime.datetime] = None
    message: str = ""
    started_by: str = ""


@dataclass
class User(_Model):
    SCHEMA: ClassVar[str] = "User"
    _READ: ClassVar[dict] = {"created_at": parse_time}
    id: int = 0
    name: str = ""
    uid: int = 0
    gid: int = 0
    admin: bool = False
    created_at: Optional[datetime.datetime] = None
    disabled: bool = False
    email: str = ""


@dataclass
class PoolUsage(_Model):
    SCHEMA: ClassVar[str] = "PoolUsage"
    pool: str = ""
    node_seconds: float = 0
    node_hours: float = 0
    price_per_node_hour: float = 0
    cost: float = 0


@dataclass
class UserUsage(_Model):
    SCHEMA: ClassVar[str] = "UserUsage"
    user: str = ""
    job_seconds: float = 0
    cpu_seconds: float = 0
    gpu_seconds: float = 0
    session_seconds: float = 0


@dataclass
class UsageReport(_Model):
    """Use of a window up to now, by pool or by user (yours alone unless you
    are an admin)."""

    SCHEMA: ClassVar[str] = "UsageReport"
    _READ: ClassVar[dict] = {"since": parse_time, "until": parse_time, "pools": _list(PoolUsage), "users": _list(UserUsage)}
    since: Optional[datetime.datetime] = None
    until: Optional[datetime.datetime] = None
    by: str = ""
    pools: List[PoolUsage] = field(default_factory=list)
    users: List[UserUsage] = field(default_factory=list)


@dataclass
class QueueEntry(_Model):
    """One queued job in the order the scheduler takes it: its position in
    its pool's queue, the factors of its score, why it waits (reason, and
    detail in words) and when it is expected to start (None: unknown). user
    and name are empty where the pool hides other users' names."""

    SCHEMA: ClassVar[str] = "QueueEntry"
    _READ: ClassVar[dict] = {"submitted_at": parse_time, "estimated_start": parse_time, "time_limit": parse_duration}
    position: int = 0
    job: str = ""
    id: int = 0
    name: str = ""
    user: str = ""
    team: str = ""
    pool: str = ""
    cpus: int = 0
    memory: int = 0
    gpus: int = 0
    time_limit: Optional[datetime.timedelta] = None
    score: float = 0
    priority: int = 0
    fair_share: float = 0
    age: float = 0
    reserving: bool = False
    submitted_at: Optional[datetime.datetime] = None
    reason: str = ""
    detail: str = ""
    estimated_start: Optional[datetime.datetime] = None
    reserved_node: str = ""


@dataclass
class Queue(_Model):
    """The queued work of every user, in the order the scheduler takes it."""

    SCHEMA: ClassVar[str] = "Queue"
    _READ: ClassVar[dict] = {"at": parse_time, "jobs": _list(QueueEntry)}
    at: Optional[datetime.datetime] = None
    jobs: List[QueueEntry] = field(default_factory=list)


@dataclass
class ShareAccount(_Model):
    """A team's or user's fair share: raw shares, target (normalized among
    those with work), usage (part of all recent use), effective usage, and
    the factor 2^(-effective/target), with the decayed use behind it."""

    SCHEMA: ClassVar[str] = "ShareAccount"
    name: str = ""
    team: str = ""
    active: bool = False
    shares: float = 0
    target: float = 0
    usage: float = 0
    effective_usage: float = 0
    factor: float = 0
    cpu_seconds: float = 0
    gpu_seconds: float = 0
    memory_gib_seconds: float = 0


@dataclass
class ShareReport(_Model):
    """Each team's and user's share, usage and fair-share factor."""

    SCHEMA: ClassVar[str] = "ShareReport"
    _READ: ClassVar[dict] = {"at": parse_time, "half_life": parse_duration, "teams": _list(ShareAccount),
                             "users": _list(ShareAccount)}
    at: Optional[datetime.datetime] = None
    half_life: Optional[datetime.timedelta] = None
    teams: List[ShareAccount] = field(default_factory=list)
    users: List[ShareAccount] = field(default_factory=list)


# Every result type, for the test that holds them to the API's document.
MODELS = (SecretUse, ArraySummary, Job, Attempt, JobDetail, JobList, Secret, Notebook, User, PoolUsage, UserUsage,
          UsageReport, QueueEntry, Queue, ShareAccount, ShareReport)
