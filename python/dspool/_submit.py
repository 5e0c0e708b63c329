"""What `dspool job submit` does on the submitter's side before it sends a
job, done the same way here: a batch script read and sent with the job, its
#DSPOOL lines as options the call did not give; the submitter's variables
(export, export_all, env_file); the login shell (login); and the rows of a
sweep read from a file (sweep)."""

import csv
import io
import json
import os
import re
import shlex

from .errors import InvalidError

SCRIPT_PREFIX = "#DSPOOL"
# A batch script travels in its job's command, which holds at most 128KiB.
MAX_SCRIPT = 128 * 1024 - 1024

# The options a #DSPOOL line may set, by flag: (keyword, kind). A list
# option takes each value given; export also splits them on commas.
DIRECTIVES = {
    "pool": ("pool", str), "team": ("team", str), "name": ("name", str), "cpus": ("cpus", str),
    "memory": ("memory", str), "gpus": ("gpus", int), "gpu-type": ("gpu_type", str), "gpu-memory": ("gpu_memory", str),
    "time": ("time_limit", str), "retries": ("retries", int),
    "priority": ("priority", int), "workdir": ("workdir", str), "image": ("image", str), "env": ("env", list), "secret": ("secrets", list),
    "secret-file": ("secret_files", list), "export": ("export", list), "export-all": ("export_all", bool),
    "env-file": ("env_file", str), "login": ("login", bool), "array": ("array", str), "sweep": ("sweep", str),
    "after": ("after", str), "hold": ("hold", bool), "preemptible": ("preemptible", bool),
}

_SHELLS = ("sh", "bash", "dash", "zsh", "ksh")

# Variables of the submitter's environment that export_all leaves behind:
# the node sets its own, or they describe a terminal and a login.
_NOT_EXPORTED = {"PWD", "OLDPWD", "SHLVL", "TERM", "SHELL", "MAIL", "_", "DISPLAY", "COLORTERM", "TERM_PROGRAM",
                 "HOSTNAME", "TMPDIR"}
_RESERVED = {"BASH_ENV", "ENV", "IFS", "SHELLOPTS", "BASHOPTS", "PS4", "HOME", "USER", "LOGNAME",
             "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"}


def batch_script(path, args):
    """The command that runs the batch script at path with args, and the
    words of its #DSPOOL lines."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCRIPT + 1)
    except OSError as e:
        raise InvalidError("read the batch script: %s" % e, field="script") from None
    if not data.startswith(b"#!"):
        raise InvalidError("%s is no batch script: its first line is not #!interpreter" % path, field="script")
    if len(data) > MAX_SCRIPT:
        raise InvalidError("%s is over %d bytes; a batch script travels in its job: put it on the share and submit "
                           "['./%s']" % (path, MAX_SCRIPT, os.path.basename(path)), field="script")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidError("%s is not UTF-8 text" % path, field="script") from None
    lines = text.split("\n")
    interp = lines[0][2:].split()
    if not interp:
        raise InvalidError("the first line of %s names no interpreter: begin it with #!/bin/bash, "
                           "#!/usr/bin/env python3, ..." % path, field="script")
    words = []
    for n, line in enumerate(lines[1:], start=2):
        t = line.strip()
        if t and not t.startswith("#"):
            break
        if t.startswith(SCRIPT_PREFIX):
            try:
                words += shlex.split(t[len(SCRIPT_PREFIX):])
            except ValueError as e:
                raise InvalidError("%s, line %d: %s" % (path, n, e), field="script") from None
    name = os.path.basename(interp[-1])
    args = [str(a) for a in args]
    if name in _SHELLS:
        command = interp + ["-c", text, os.path.basename(path)] + args
    elif name.startswith("python"):
        command = interp + ["-c", text] + args
    elif name in ("perl", "ruby", "Rscript", "node"):
        command = interp + ["-e", text] + args
    else:
        raise InvalidError("%s runs with %s, which dspool does not know how to hand a script's text: put it on the "
                           "share and submit ['./%s']" % (path, interp[-1], os.path.basename(path)), field="script")
    return command, words


def apply_directives(opts, path, words):
    """Sets in opts the options a script's #DSPOOL words give, but for
    those the call gave (not None, False or empty)."""
    given = {k for k, v in opts.items() if v not in (None, False, (), [], {})}
    i = 0
    while i < len(words):
        w = words[i]
        flag, eq, value = w[2:].partition("=")
        if not w.startswith("--") or not flag:
            raise InvalidError("%s: %s %r is not a flag: write flags of `dspool job submit` as --name value or "
                               "--name=value" % (path, SCRIPT_PREFIX, w), field="script")
        if flag not in DIRECTIVES:
            raise InvalidError("%s: %s --%s is no flag a script may set (see `dspool job submit --help`)"
                               % (path, SCRIPT_PREFIX, flag), field="script")
        key, kind = DIRECTIVES[flag]
        if not eq:
            if kind is bool:
                value = "true"
            elif i + 1 < len(words):
                i += 1
                value = words[i]
            else:
                raise InvalidError("%s: %s --%s needs a value" % (path, SCRIPT_PREFIX, flag), field="script")
        i += 1
        if key in given:
            continue  # the call wins
        try:
            if kind is bool:
                opts[key] = {"true": True, "false": False}[value.lower()]
            elif kind is list:
                items = value.split(",") if key == "export" else [value]
                opts[key] = list(opts.get(key) or []) + items
            else:
                opts[key] = kind(value)
        except (KeyError, ValueError):
            raise InvalidError("%s: %s --%s %s: not a %s" % (path, SCRIPT_PREFIX, flag, value, kind.__name__),
                               field="script") from None
    return opts


def env_name_ok(k):
    return (k.replace("_", "a").isalnum() and k.isascii() and not k[:1].isdigit() and len(k) <= 256
            and k not in _RESERVED and not k.startswith(("LD_", "DSPOOL_", "BASH_FUNC_", "GCONV_")))


def environment(export, export_all, env_file, environ=None):
    """The variables of export_all, export and env_file, in that order (a
    later one wins; the call's env wins over them all)."""
    environ = os.environ if environ is None else environ
    out = {}
    if export_all:
        for k, v in environ.items():
            if (k not in _NOT_EXPORTED and not k.startswith(("SSH_", "XDG_", "TMUX")) and env_name_ok(k)):
                out[k] = v
    if isinstance(export, str):
        export = [export]
    for k in (x for item in export or () for x in item.split(",")):
        if not env_name_ok(k):
            raise InvalidError("%s cannot be exported: it is no variable name, or dspool sets it" % k, field="export")
        if k not in environ:
            raise InvalidError("%s is not set here: set it, or leave it out" % k, field="export")
        out[k] = environ[k]
    if env_file:
        try:
            with open(env_file, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except OSError as e:
            raise InvalidError(str(e), field="env_file") from None
        for n, line in enumerate(lines, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            k, eq, v = (line[len("export "):] if line.startswith("export ") else line).partition("=")
            k, v = k.strip(), v.strip()
            if not eq or not env_name_ok(k):
                raise InvalidError("%s, line %d: %r is not KEY=VALUE" % (env_file, n, line), field="env_file")
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[k] = v
    return out


def login_command(command):
    """The command run in the user's login shell, so that their profile
    applies."""
    return ["/bin/bash", "-l", "-c", " ".join(shlex.quote(w) if w else "''" for w in command)]


# A job, an array or a task, as the API names them: 12, 40, 40_7.
REF = re.compile(r"^[1-9][0-9]*(_[0-9]+)?$")
_AFTER_KINDS = ("ok", "notok", "any")


def ref_of(job, field="id"):
    """The ref of job: a Job (its ref), a job id, or a ref string ("40_7")."""
    r = getattr(job, "ref", job)
    if not isinstance(r, (bool, str)) and hasattr(r, "__index__"):
        r = r.__index__()  # a numpy integer, say
    if isinstance(r, bool) or not isinstance(r, (int, str)) or not REF.match(str(r)):
        raise InvalidError("%r is not a job id: give a job id (12), an array (40) or one of its tasks (\"40_7\")"
                           % (job,), field=field)
    return str(r)


def array_spec(array):
    """The API's array expression of array: a string as it is ("0-99%10",
    "%5" with a sweep), a range, or indices."""
    if isinstance(array, str):
        return array
    if isinstance(array, range):
        if len(array) == 0 or array.step < 1:
            raise InvalidError("%r has no indices, or goes down" % (array,), field="array")
        last = array[-1]
        if array.step == 1:
            return "%d-%d" % (array.start, last) if last != array.start else str(last)
        return "%d-%d:%d" % (array.start, last, array.step)
    try:
        indices = [int(i) for i in array if not isinstance(i, bool)]
    except (TypeError, ValueError):
        indices = None
    if not indices or isinstance(array, (bytes, dict)):
        raise InvalidError("give indices as \"0-99\", \"0-999%%50\", a range or a list of numbers, not %r" % (array,),
                           field="array")
    return ",".join(str(i) for i in indices)


def after_spec(after):
    """The API's --after list of after: a string as it is ("ok:12,any:40"),
    or a job, id or ref (that it succeeds), a (kind, job) pair, or a list of
    them."""
    if isinstance(after, str):
        return after
    if isinstance(after, (int, tuple)) or hasattr(after, "ref"):
        after = [after]
    parts = []
    for a in after:
        if isinstance(a, tuple):
            if len(a) != 2 or a[0] not in _AFTER_KINDS:
                raise InvalidError("%r: give (kind, job) with kind ok, notok or any" % (a,), field="after")
            parts.append("%s:%s" % (a[0], ref_of(a[1], "after")))
        elif isinstance(a, str) and ":" in a:
            parts.append(a)
        else:
            parts.append("ok:" + ref_of(a, "after"))
    return ",".join(parts)


def sweep_rows(sweep):
    """The rows of a sweep: a list of dicts (values as text: numbers as
    written, booleans as true and false), or the path of a file read as
    `dspool job submit --sweep` reads it (CSV with a header that names the
    variables, or JSON lines, one object per line)."""
    if isinstance(sweep, (str, bytes, os.PathLike)):
        return read_sweep(sweep)
    rows = []
    for i, row in enumerate(sweep):
        if not hasattr(row, "items"):
            raise InvalidError("row %d is %r: give a dict of variables per task" % (i, row), field="sweep[%d]" % i)
        out = {}
        for k, v in row.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, (int, float, str)):
                v = str(v)
            else:
                raise InvalidError("the value of %s is %r: give a string, number or boolean" % (k, v),
                                   field="sweep[%d].%s" % (i, k))
            out[str(k)] = v
        rows.append(out)
    if not rows:
        raise InvalidError("has no rows: give one dict per task", field="sweep")
    return rows


def read_sweep(path):
    """The rows of a sweep file: JSON lines when its first character that is
    not space is '{', else CSV whose header row names the variables."""
    name = os.fsdecode(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidError("read the sweep: %s" % e, field="sweep") from None
    if not text.strip():
        raise InvalidError("%s is empty: give a CSV file with a header row, or JSON lines" % name, field="sweep")
    if text.lstrip().startswith("{"):
        return _sweep_json_lines(name, text)
    return _sweep_csv(name, text)


def _bad_json_constant(c):
    raise ValueError("%s is not JSON" % c)


def _sweep_json_lines(name, text):
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            # Numbers stay as written, as the CLI keeps them.
            obj = json.loads(line, parse_float=str, parse_int=str, parse_constant=_bad_json_constant)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            raise InvalidError("%s: line %d is not a JSON object: give one object per line, as {\"lr\": 0.1}"
                               % (name, n), field="sweep")
        row = {}
        for k, v in obj.items():
            if not env_name_ok(k):
                raise InvalidError("%s: line %d: %s is not a variable a job may set" % (name, n, k), field="sweep")
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif not isinstance(v, str):
                raise InvalidError("%s: line %d: the value of %s is not a string, number or boolean" % (name, n, k),
                                   field="sweep")
            row[k] = v
        rows.append(row)
    if not rows:
        raise InvalidError("%s has no rows: give one JSON object per line" % name, field="sweep")
    return rows


def _sweep_csv(name, text):
    reader = csv.reader(io.StringIO(text.lstrip("\r\n\t ")), skipinitialspace=True, strict=True)
    try:
        header = [h.strip() for h in next(reader)]
        for i, h in enumerate(header, start=1):
            if not env_name_ok(h):
                raise InvalidError("%s: header column %d: %r is not a variable a job may set" % (name, i, h),
                                   field="sweep")
            if header.count(h) > 1:
                raise InvalidError("%s: the header names %s twice" % (name, h), field="sweep")
        rows = []
        for rec in reader:
            if not rec:
                continue  # a blank line
            if len(rec) != len(header):
                raise InvalidError("%s: line %d: wrong number of fields (%d; the header has %d)"
                                   % (name, reader.line_num, len(rec), len(header)), field="sweep")
            rows.append(dict(zip(header, rec)))
    except csv.Error as e:
        raise InvalidError("%s: line %d: %s" % (name, reader.line_num, e), field="sweep") from None
    if not rows:
        raise InvalidError("%s has a header and no rows: give one row per task" % name, field="sweep")
    return rows
