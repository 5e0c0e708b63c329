"""The Python client of dspool, a self-hosted compute pool.

    import dspool
    c = dspool.Client()          # the server, token and CA as the CLI finds them
    job = c.submit(["python3", "-c", "print(6*7)"], cpus=1, memory="1GiB", wait=True)
    print(job.state, job.exit_code, "".join(c.logs(job)))

In a job or session on the pool, Client() needs no setup: DSPOOL_SERVER,
DSPOOL_TOKEN (a token of that job's or session's own) and DSPOOL_CA are set.
The standard library alone; Python 3.9 or newer.
"""

from ._version import __version__
from .client import Client, config_path
from .errors import (
    ConflictError,
    DspoolError,
    ForbiddenError,
    InternalError,
    InvalidError,
    NotFoundError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    WaitTimeout,
)
from .types import (
    ArraySummary,
    Attempt,
    Job,
    JobDetail,
    JobList,
    Notebook,
    PoolUsage,
    Queue,
    QueueEntry,
    Secret,
    SecretUse,
    ShareAccount,
    ShareReport,
    UsageReport,
    User,
    UserUsage,
)

__all__ = [
    "__version__",
    "Client",
    "config_path",
    "DspoolError",
    "InvalidError",
    "NotFoundError",
    "ConflictError",
    "UnauthorizedError",
    "ForbiddenError",
    "TooLargeError",
    "UnavailableError",
    "InternalError",
    "UnreachableError",
    "WaitTimeout",
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
]
