#!/usr/bin/env bash
# bench/peers/slurm.sh — Slurm peer benchmark for dspool's batch scheduler.
#
# Brings up a private Slurm cluster (Debian's slurm-wlm 22.05 + munge) on 127.0.0.1 only,
# emulating NODES nodes x CPUS cpus with one slurmd per node on one host, measures it through
# the ordinary CLI, and tears it down. Nothing outside $SLURM_BENCH_DIR is written (no
# /etc/slurm, no system munged); daemons are stopped by the PID files they wrote.
#
# Usage:
#   bench/peers/slurm.sh up        install (Debian, root) if missing, write config, start daemons
#   bench/peers/slurm.sh measure   run the measurements; ONE line of JSON on stdout, progress on stderr
#   bench/peers/slurm.sh down      cancel jobs, stop the daemons by PID file
#   bench/peers/slurm.sh status    show the daemons and nodes
#
# Environment:
#   SLURM_BENCH_DIR=/tmp/dspool-bench-slurm   all config, state, logs, sockets, PID files
#   SLURM_BENCH_PORT=16817                    slurmctld port; slurmd n<i> listens on PORT+i
#   SLURM_BENCH_NODES=4 SLURM_BENCH_CPUS=2    emulated topology
#   SLURM_BENCH_SCHED_PARAMS=batch_sched_delay=0
#                                             SchedulerParameters (Slurm's default delay of 3 s
#                                             dominates start latency; 0 is its best here)
#   SLURM_BENCH_SCHEDULER=sched/backfill      SchedulerType
#   SLURM_BENCH_DEBUG=error                   SlurmctldDebug / SlurmdDebug
#   SLURM_BENCH_NO_INSTALL=1                  never run apt-get; fail if Slurm is missing
#   measure: N_SUBMIT=200 N_MAKESPAN=1000 N_LATENCY=20 PARALLEL=8
#            MAKESPAN_PARALLEL=$PARALLEL (submitters used in the makespan phase)
#            MAX_WAIT=1800 (seconds, upper bound on any single wait)
#            N_ARRAY=1000 N_CHAIN=100
#            PHASES="submit makespan latency" (subset to run; also: array chain)
#
# Measurements (all through sbatch/squeue, as a user would):
#   submit_per_s   N_SUBMIT `sbatch --wrap true` with PARALLEL concurrent submitters; wall time
#                  from just before the first sbatch starts to the moment the last one has
#                  printed its job id (acknowledged). The jobs run; the cluster is drained after.
#   makespan_s     N_MAKESPAN trivial jobs (`true`, then the job writes its end time); from just
#                  before the first submission to the latest end time written by any job.
#                  makespan_drain_s: until squeue no longer lists any of them (Slurm's own view).
#   latency_p50/p90_ms  N_LATENCY sequential jobs on an idle cluster; t0 = just before sbatch,
#                  start = `date +%s.%N` written by the job as its first action.
#   array_s        one `sbatch --array=0-(N_ARRAY-1)` of `true` (each task writes its end time);
#                  from just before sbatch to the latest end time written.
#   chain_s        N_CHAIN jobs, each --dependency=afterok: the one before (submitted in turn);
#                  from the first job's start to the last job's end, as the jobs write them.
set -uo pipefail

D=${SLURM_BENCH_DIR:-/tmp/dspool-bench-slurm}
PORT=${SLURM_BENCH_PORT:-16817}
NODES=${SLURM_BENCH_NODES:-4}
CPUS=${SLURM_BENCH_CPUS:-2}
SCHED_PARAMS=${SLURM_BENCH_SCHED_PARAMS-batch_sched_delay=0}
SCHEDULER=${SLURM_BENCH_SCHEDULER:-sched/backfill}
DEBUG=${SLURM_BENCH_DEBUG:-error}
MAX_WAIT=${MAX_WAIT:-1800}

S=$D/slurm          # slurm config/state/logs/pids
M=$D/munge          # munge key/socket/pid (owned by the munge user)
W=$D/work           # job cwd and job-written timestamps
MUNGE_SOCK=$M/sock/munge.sock
export SLURM_CONF=$S/etc/slurm.conf

[ "${BASH_VERSINFO[0]:-0}" -ge 5 ] || { echo "slurm.sh: bash >= 5 required" >&2; exit 1; }
log() { printf '[slurm-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
UP_CLEANUP=0
die() {
  log "ERROR: $*"
  # a failed 'up' does not leave half a cluster running
  [ "$UP_CLEANUP" = 1 ] && { UP_CLEANUP=0; log "stopping the daemons this 'up' started"; stop_daemons; }
  exit 1
}
now() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }     # bash >= 5: wall clock without a fork
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
deadline() { echo $(( $(date +%s) + $1 )); }
before() { [ "$(date +%s)" -lt "$1" ]; }

# ---------------------------------------------------------------- install / preflight
ensure_installed() {
  local missing=0 b
  for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/bin/squeue /usr/bin/scontrol \
           /usr/sbin/munged /usr/bin/munge; do
    [ -x "$b" ] || missing=1
  done
  [ "$missing" = 0 ] && return 0
  [ "${SLURM_BENCH_NO_INSTALL:-0}" = 1 ] && die "Slurm/munge not installed and SLURM_BENCH_NO_INSTALL=1 (need: apt-get install slurm-wlm munge)"
  [ "$(id -u)" = 0 ] || die "Slurm/munge not installed; as root run: apt-get install -y slurm-wlm munge"
  command -v apt-get >/dev/null || die "Slurm/munge not installed and no apt-get here; install slurm-wlm (22.05) and munge"
  log "installing slurm-wlm and munge with apt-get (this can take a few minutes)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 900 apt-get -q -o DPkg::Lock::Timeout=300 update >&2 || log "apt-get update failed; trying install anyway"
  timeout 900 apt-get -q -y -o DPkg::Lock::Timeout=300 install slurm-wlm munge >&2 \
    || die "apt-get install slurm-wlm munge failed"
  for b in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged; do
    [ -x "$b" ] || die "after install, $b is still missing"
  done
}

slurm_version() { /usr/sbin/slurmctld -V 2>/dev/null | awk '{print $2}'; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- PID-file process control
# pid_alive FILE COMM: the PID in FILE is alive and is the expected program (guards PID reuse)
pid_alive() {
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc 0-9 < "$f"); [ -n "$pid" ] || return 1
  [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# stop_pidfiles COMM FILE...: TERM each live PID, wait up to 15 s for all, then KILL; never by name
stop_pidfiles() {
  local comm=$1 f pid i pids=() alive; shift
  for f in "$@"; do
    [ -e "$f" ] || continue
    if pid_alive "$f" "$comm"; then
      pid=$(tr -dc 0-9 < "$f"); pids+=("$pid")
      log "stopping $comm (pid $pid)"; kill "$pid" 2>/dev/null
    fi
    rm -f "$f"
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  for i in $(seq 150); do
    alive=0; for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && { log "$comm (pid $pid) ignored TERM for 15 s; killing"; kill -9 "$pid" 2>/dev/null; }
  done
  sleep 0.2
}

stop_daemons() {
  local files=()
  shopt -s nullglob; files=("$S"/run/slurmd-*.pid); shopt -u nullglob   # whatever NODES was at 'up'
  stop_pidfiles slurmd "${files[@]}"
  stop_pidfiles slurmctld "$S/run/slurmctld.pid"
  stop_pidfiles munged "$M/munged.pid"
}

# ---------------------------------------------------------------- config
write_conf() {
  local hn i
  hn=$(hostname -s)
  mkdir -p "$S/etc"
  {
    echo "# generated by dspool bench/peers/slurm.sh — private loopback cluster, do not edit"
    echo "ClusterName=dspoolbench"
    echo "SlurmctldHost=$hn(127.0.0.1)"
    echo "SlurmctldPort=$PORT"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/munge"
    echo "CredType=cred/munge"
    echo "AuthInfo=socket=$MUNGE_SOCK"
    echo "StateSaveLocation=$S/state"
    echo "SlurmdSpoolDir=$S/spool/%n"
    echo "SlurmctldPidFile=$S/run/slurmctld.pid"
    echo "SlurmdPidFile=$S/run/slurmd-%n.pid"
    echo "SlurmctldLogFile=$S/log/slurmctld.log"
    echo "SlurmdLogFile=$S/log/slurmd-%n.log"
    echo "SlurmctldDebug=$DEBUG"
    echo "SlurmdDebug=$DEBUG"
    # loopback only: bind to the configured address, never INADDR_ANY
    echo "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
    # no cgroups: track job processes by parentage, no task containment
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/none"
    echo "MpiDefault=none"
    echo "SwitchType=switch/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_CPU"
    echo "SchedulerType=$SCHEDULER"
    [ -n "$SCHED_PARAMS" ] && echo "SchedulerParameters=$SCHED_PARAMS"
    # the emulated nodes declare more than one host's worth of hardware
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=2"
    echo "MaxJobCount=50000"
    echo "MinJobAge=30"
    echo "InactiveLimit=0"
    echo "KillWait=5"
    echo "Waittime=0"
    echo "SlurmdTimeout=60"
    echo "SlurmctldTimeout=60"
    for i in $(seq 1 "$NODES"); do
      echo "NodeName=n$i NodeHostname=$hn NodeAddr=127.0.0.1 Port=$((PORT+i)) CPUs=$CPUS RealMemory=1000 State=UNKNOWN"
    done
    echo "PartitionName=bench Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
  } > "$SLURM_CONF"
}

# ---------------------------------------------------------------- up
start_munge() {
  mkdir -p "$M/sock"
  if [ ! -s "$M/munge.key" ]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile="$M/munge.key" --force >&2 || die "mungekey failed"
    else
      dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none || die "cannot create munge key"
    fi
  fi
  id munge >/dev/null 2>&1 || die "user 'munge' missing (the munge package creates it)"
  # munged runs as 'munge'; it refuses a socket directory without o+x and a group/other-readable key
  chown -R munge:munge "$M"; chmod 711 "$M"; chmod 755 "$M/sock"; chmod 600 "$M/munge.key"
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
  runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCK" --key-file="$M/munge.key" \
      --pid-file="$M/munged.pid" --log-file="$M/munged.log" --seed-file="$M/munged.seed" \
      --num-threads=4 >&2 \
    || { tail -5 "$M/munged.log" >&2 2>/dev/null; die "munged failed to start (log: $M/munged.log)"; }
  local end; end=$(deadline 10)
  while ! [ -S "$MUNGE_SOCK" ] && before "$end"; do sleep 0.1; done
  munge -S "$MUNGE_SOCK" -n 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1 \
    || die "munge credential round trip failed (log: $M/munged.log)"
}

start_slurm() {
  local i end up
  ulimit -n 65536 2>/dev/null || true
  /usr/sbin/slurmctld -c -f "$SLURM_CONF" \
    || { tail -20 "$S/log/slurmctld.log" >&2 2>/dev/null; die "slurmctld failed to start (log: $S/log/slurmctld.log)"; }
  end=$(deadline 30)
  until scontrol ping 2>/dev/null | grep -q 'is UP'; do
    before "$end" || { tail -20 "$S/log/slurmctld.log" >&2 2>/dev/null; die "slurmctld did not answer within 30 s (log: $S/log/slurmctld.log)"; }
    sleep 0.2
  done
  for i in $(seq 1 "$NODES"); do
    mkdir -p "$S/spool/n$i"
    # several slurmd on one host: Debian builds with --enable-multiple-slurmd (slurmd -N name)
    /usr/sbin/slurmd -f "$SLURM_CONF" -N "n$i" \
      || { tail -20 "$S/log/slurmd-n$i.log" >&2 2>/dev/null; die "slurmd n$i failed to start (log: $S/log/slurmd-n$i.log)"; }
  done
  end=$(deadline 60)
  while :; do
    up=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2=="idle"{n++} END{print n+0}')
    [ "$up" -ge "$NODES" ] && break
    before "$end" || { sinfo -N >&2; tail -5 "$S"/log/slurmd-n*.log >&2 2>/dev/null; die "only $up of $NODES nodes became idle within 60 s"; }
    sleep 0.2
  done
}

cmd_up() {
  ensure_installed
  local v; v=$(slurm_version)
  case "$v" in 22.05*) ;; *) log "warning: expected Slurm 22.05, found '${v:-unknown}'";; esac
  [[ "$NODES" =~ ^[1-9][0-9]*$ && "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "SLURM_BENCH_NODES/CPUS must be positive integers"
  mkdir -p "$D" || die "cannot create $D"
  chmod 755 "$D"   # the munge user must traverse it
  stop_daemons      # anything a previous 'up' here left behind (by PID file)
  local p
  for p in $(seq "$PORT" $((PORT+NODES))); do
    port_busy "$p" && die "127.0.0.1:$p is already in use; set SLURM_BENCH_PORT to a free range"
  done
  rm -rf "$S/state" "$S/spool" "$S/run" "$W"
  mkdir -p "$S"/{etc,state,spool,run,log} "$W"
  : > "$S/log/slurmctld.log"; for p in $(seq 1 "$NODES"); do : > "$S/log/slurmd-n$p.log"; done
  write_conf
  log "starting munged"
  UP_CLEANUP=1
  start_munge
  log "starting slurmctld on 127.0.0.1:$PORT and $NODES slurmd (ports $((PORT+1))-$((PORT+NODES)))"
  start_slurm
  UP_CLEANUP=0
  sinfo -N -o '%N %t %c %P' >&2
  log "Slurm $v up: $NODES nodes x $CPUS cpus; SchedulerParameters=${SCHED_PARAMS:-<default>}; export SLURM_CONF=$SLURM_CONF"
}

# ---------------------------------------------------------------- down
cmd_down() {
  local end
  if [ -s "$SLURM_CONF" ] && pid_alive "$S/run/slurmctld.pid" slurmctld; then
    # cancel jobs first so no slurmstepd outlives its slurmd
    if [ -n "$(squeue -h -o %i 2>/dev/null | head -1)" ]; then
      log "cancelling remaining jobs"
      timeout 30 scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null
      end=$(deadline 30)
      while [ -n "$(squeue -h -o %i 2>/dev/null | head -1)" ] && before "$end"; do sleep 0.5; done
    fi
  fi
  stop_daemons
  local left="" f
  for f in "$S"/run/*.pid "$M/munged.pid"; do [ -e "$f" ] && left="$left $f"; done
  [ -z "$left" ] || die "PID files still present after stop:$left"
  log "Slurm down (state kept in $D)"
}

cmd_status() {
  local i
  pid_alive "$M/munged.pid" munged && echo "munged: pid $(cat "$M/munged.pid")" || echo "munged: down"
  pid_alive "$S/run/slurmctld.pid" slurmctld && echo "slurmctld: pid $(cat "$S/run/slurmctld.pid")" || echo "slurmctld: down"
  for i in $(seq 1 "$NODES"); do
    pid_alive "$S/run/slurmd-n$i.pid" slurmd && echo "slurmd n$i: pid $(cat "$S/run/slurmd-n$i.pid")" || echo "slurmd n$i: down"
  done
  [ -s "$SLURM_CONF" ] && timeout 10 sinfo -N -o '%N %t %c %P' 2>/dev/null
  return 0
}

# ---------------------------------------------------------------- measure
queue_len() { squeue -h -o %i 2>/dev/null | wc -l; }

# wait_drained SECONDS: until squeue lists no jobs; 1 on timeout
wait_drained() {
  local end; end=$(deadline "$1")
  while before "$end"; do
    [ "$(queue_len)" -eq 0 ] && return 0
    sleep 0.25
  done
  return 1
}

# count_files DIR: number of regular entries (no fork)
count_files() { local a; shopt -s nullglob; a=("$1"/*); shopt -u nullglob; echo "${#a[@]}"; }

# submit_many N P DIR CMD_FOR_INDEX: N sbatch with P parallel submitters; job ids -> DIR/ids
# the wrapped command is CMD with {} replaced by the job's index
submit_many() {
  local n=$1 p=$2 dir=$3 cmd=$4
  seq 1 "$n" | xargs -P "$p" -I{} sbatch --parsable -o /dev/null -e /dev/null -J b{} --wrap "$cmd" \
    > "$dir/ids" 2> "$dir/sbatch.err"
}

percentile() { # P (0-100) of numbers on stdin, nearest rank
  sort -g | awk -v p="$1" '{a[NR]=$1} END{ if(NR==0){print "null"; exit}
    k=int(NR*p/100); if (k < NR*p/100) k++; if(k<1)k=1; if(k>NR)k=NR; print a[k] }'
}

cmd_measure() {
  local N_SUBMIT=${N_SUBMIT:-200} N_MAKESPAN=${N_MAKESPAN:-1000} N_LATENCY=${N_LATENCY:-20}
  local PARALLEL=${PARALLEL:-8} MPAR=${MAKESPAN_PARALLEL:-${PARALLEL:-8}}
  local N_ARRAY=${N_ARRAY:-1000} N_CHAIN=${N_CHAIN:-100} array_s=null chain_s=null
  local PHASES=" ${PHASES:-submit makespan latency} "
  local v sp st nodes_idle total_cpus load_start err=""
  local submit_per_s=null submit_ok=null submit_s=null
  local makespan_s=null makespan_drain_s=null makespan_done=null makespan_submit_s=null
  local lat_p50=null lat_p90=null lat_min=null lat_max=null lat_n=0
  local k
  for k in N_SUBMIT N_MAKESPAN N_LATENCY PARALLEL MPAR MAX_WAIT N_ARRAY N_CHAIN; do
    [[ "${!k}" =~ ^[0-9]+$ ]] || die "$k must be a non-negative integer (got '${!k}')"
  done
  [ "$PARALLEL" -ge 1 ] && [ "$MPAR" -ge 1 ] || die "PARALLEL must be >= 1"

  [ -s "$SLURM_CONF" ] || die "no cluster config at $SLURM_CONF; run: $0 up"
  timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld is not answering; run: $0 up"
  v=$(slurm_version)
  sp=$(scontrol show config 2>/dev/null | awk -F' = ' '$1 ~ /^SchedulerParameters/ {print $2}')
  st=$(scontrol show config 2>/dev/null | awk -F' = ' '$1 ~ /^SchedulerType/ {print $2}')
  nodes_idle=$(sinfo -h -N -o '%N %t' | awk '$2=="idle"||$2=="mixed"||$2=="allocated"{n++} END{print n+0}')
  total_cpus=$(sinfo -h -o '%C' | awk -F/ '{print $4}')
  [ "$nodes_idle" -ge "$NODES" ] || die "only $nodes_idle of $NODES nodes are usable: $(sinfo -h -N -o '%N:%t' | tr '\n' ' ')"
  mkdir -p "$W"; cd "$W" || die "cannot cd to $W"
  wait_drained 120 || die "the cluster still has jobs queued; cancel them or run '$0 down; $0 up'"
  load_start=$(cut -d' ' -f1 /proc/loadavg)
  log "measure: Slurm $v ($st, SchedulerParameters=$sp), $NODES nodes x $CPUS cpus ($total_cpus total), $(nproc) real cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"

  # ---- 1. submission rate
  if [[ "$PHASES" == *" submit "* ]] && [ "$N_SUBMIT" -gt 0 ]; then
    local sd=$W/submit t0 t1
    rm -rf "$sd"; mkdir -p "$sd"
    log "submit: $N_SUBMIT x 'sbatch --wrap true' with $PARALLEL submitters"
    t0=$(now)
    submit_many "$N_SUBMIT" "$PARALLEL" "$sd" true
    t1=$(now)
    submit_ok=$(grep -cE '^[0-9]+' "$sd/ids")
    submit_s=$(sub "$t0" "$t1")
    submit_per_s=$(awk -v n="$submit_ok" -v s="$submit_s" 'BEGIN{printf "%.2f", n/s}')
    log "submit: $submit_ok/$N_SUBMIT acknowledged in ${submit_s}s -> $submit_per_s jobs/s"
    [ "$submit_ok" -eq "$N_SUBMIT" ] || { err="$err submit: $((N_SUBMIT-submit_ok)) sbatch failed ($(head -c 300 "$sd/sbatch.err" | tr '\n"' " '"));"; log "$err"; }
    log "submit: draining"
    wait_drained "$MAX_WAIT" || err="$err submit: queue not drained within ${MAX_WAIT}s;"
    log "submit: drained after $(sub "$t0" "$(now)")s"
  fi

  # ---- 2. makespan
  if [[ "$PHASES" == *" makespan "* ]] && [ "$N_MAKESPAN" -gt 0 ] && [ -z "$err" ]; then
    local md=$W/makespan ed t0 t1 end n last
    ed=$md/end; rm -rf "$md"; mkdir -p "$ed"
    log "makespan: $N_MAKESPAN trivial jobs, $MPAR submitters"
    t0=$(now)
    submit_many "$N_MAKESPAN" "$MPAR" "$md" "true; date +%s.%N > $ed/{}"
    t1=$(now)
    makespan_submit_s=$(sub "$t0" "$t1")
    k=$(grep -cE '^[0-9]+' "$md/ids")
    log "makespan: $k/$N_MAKESPAN submitted in ${makespan_submit_s}s"
    if [ "$k" -ne "$N_MAKESPAN" ]; then
      err="$err makespan: $((N_MAKESPAN-k)) sbatch failed;"
    fi
    end=$(deadline "$MAX_WAIT"); last=-1
    while :; do
      n=$(count_files "$ed")
      [ "$n" -ge "$k" ] && break
      if ! before "$end"; then err="$err makespan: only $n of $k jobs finished within ${MAX_WAIT}s;"; break; fi
      if [ $((n / 100)) -ne "$last" ]; then last=$((n / 100)); log "makespan: $n/$k done at +$(sub "$t0" "$(now)")s"; fi
      sleep 0.2
    done
    makespan_done=$(count_files "$ed")
    if [ "$makespan_done" -gt 0 ]; then
      makespan_s=$(cat "$ed"/* 2>/dev/null | awk -v a="$t0" 'BEGIN{m=0} $1>m{m=$1} END{printf "%.3f", m-a}')
    fi
    wait_drained "$MAX_WAIT" && makespan_drain_s=$(sub "$t0" "$(now)") || err="$err makespan: queue not drained;"
    log "makespan: $makespan_done jobs, last ended at +${makespan_s}s; queue empty at +${makespan_drain_s}s"
  fi

  # ---- 3. submit -> start latency on an idle cluster
  if [[ "$PHASES" == *" latency "* ]] && [ "$N_LATENCY" -gt 0 ] && [ -z "$err" ]; then
    local ld=$W/latency i f t0 end
    rm -rf "$ld"; mkdir -p "$ld"; : > "$ld/lat"
    log "latency: $N_LATENCY sequential jobs on an idle cluster"
    for i in $(seq 1 "$N_LATENCY"); do
      wait_drained 120 || { err="$err latency: cluster not idle before sample $i;"; break; }
      # slurmctld starts pending jobs from a background loop that wakes about once a second,
      # so latency depends on when within that second a job arrives. Spread submit times evenly
      # over the second (golden-ratio sequence, reproducible) instead of phase-locking to it;
      # the 0.3 s floor lets completion traffic of the previous sample settle.
      sleep "$(awk -v i="$i" 'BEGIN{x=i*0.6180339887; printf "%.3f", 0.3+x-int(x)}')"
      f=$ld/$i
      t0=$(now)
      sbatch --parsable -o /dev/null -e /dev/null -J lat$i --wrap "date +%s.%N > $f.tmp && mv $f.tmp $f" >/dev/null \
        || { err="$err latency: sbatch failed;"; break; }
      end=$(deadline 120)
      while [ ! -s "$f" ] && before "$end"; do sleep 0.02; done
      [ -s "$f" ] || { err="$err latency: job $i did not start within 120 s;"; break; }
      awk -v a="$t0" '{printf "%.6f\n", ($1-a)*1000}' "$f" >> "$ld/lat"
    done
    lat_n=$(wc -l < "$ld/lat")
    if [ "$lat_n" -gt 0 ]; then
      lat_p50=$(percentile 50 < "$ld/lat" | awk '{printf "%.1f", $1}')
      lat_p90=$(percentile 90 < "$ld/lat" | awk '{printf "%.1f", $1}')
      lat_min=$(percentile 0 < "$ld/lat" | awk '{printf "%.1f", $1}')
      lat_max=$(percentile 100 < "$ld/lat" | awk '{printf "%.1f", $1}')
    fi
    wait_drained 120 || true
    log "latency: n=$lat_n min=${lat_min}ms p50=${lat_p50}ms p90=${lat_p90}ms max=${lat_max}ms"
  fi

  # ---- 4. an array of trivial tasks
  if [[ "$PHASES" == *" array "* ]] && [ "$N_ARRAY" -gt 0 ] && [ -z "$err" ]; then
    local ad=$W/array t0 end
    rm -rf "$ad"; mkdir -p "$ad/end"
    wait_drained 120 || err="$err array: cluster not idle;"
    log "array: one sbatch --array of $N_ARRAY tasks"
    t0=$(now)
    sbatch --parsable -o /dev/null -e /dev/null -J arr --array="0-$((N_ARRAY-1))" \
      --wrap "true; date +%s.%N > $ad/end/\$SLURM_ARRAY_TASK_ID" > "$ad/id" 2> "$ad/sbatch.err" || err="$err array: sbatch failed;"
    end=$(deadline "$MAX_WAIT")
    while [ "$(count_files "$ad/end")" -lt "$N_ARRAY" ] && before "$end"; do sleep 0.2; done
    [ "$(count_files "$ad/end")" -ge "$N_ARRAY" ] || err="$err array: not every task ended within ${MAX_WAIT}s;"
    array_s=$(cat "$ad"/end/* 2>/dev/null | awk -v a="$t0" 'BEGIN{m=0} $1>m{m=$1} END{printf "%.3f", m-a}')
    wait_drained "$MAX_WAIT" || true
    log "array: last task ended at +${array_s}s"
  fi

  # ---- 5. a chain of dependent jobs
  if [[ "$PHASES" == *" chain "* ]] && [ "$N_CHAIN" -gt 0 ] && [ -z "$err" ]; then
    local cd=$W/chain prev="" id i end dep
    rm -rf "$cd"; mkdir -p "$cd"
    wait_drained 120 || err="$err chain: cluster not idle;"
    log "chain: $N_CHAIN jobs, each afterok the one before"
    for i in $(seq 1 "$N_CHAIN"); do
      dep=(); [ -n "$prev" ] && dep=(--dependency="afterok:$prev")
      id=$(sbatch --parsable -o /dev/null -e /dev/null -J ch$i "${dep[@]}" \
        --wrap "date +%s.%N > $cd/s$i; true; date +%s.%N > $cd/e$i") || { err="$err chain: sbatch failed;"; break; }
      prev=${id%%;*}
    done
    end=$(deadline "$MAX_WAIT")
    while [ ! -s "$cd/e$N_CHAIN" ] && before "$end"; do sleep 0.2; done
    [ -s "$cd/e$N_CHAIN" ] && [ -s "$cd/s1" ] && chain_s=$(sub "$(cat "$cd/s1")" "$(cat "$cd/e$N_CHAIN")") || err="$err chain: did not end within ${MAX_WAIT}s;"
    wait_drained "$MAX_WAIT" || true
    log "chain: ${chain_s}s from the first start to the last end"
  fi

  local load1; load1=$(cut -d' ' -f1 /proc/loadavg)
  printf '{"peer":"slurm %s","version":"%s","nodes":%d,"cpus_per_node":%d,"real_cpus":%d,"scheduler":"%s","sched_params":"%s","submit_per_s":%s,"submit_n":%s,"submit_s":%s,"submit_parallel":%d,"makespan_s":%s,"makespan_n":%s,"makespan_drain_s":%s,"makespan_submit_s":%s,"makespan_parallel":%d,"latency_p50_ms":%s,"latency_p90_ms":%s,"latency_min_ms":%s,"latency_max_ms":%s,"latency_n":%d,"array_s":%s,"chain_s":%s,"load1_start":%s,"load1":%s%s}\n' \
    "$(echo "$v" | cut -d. -f1-2)" "$v" "$NODES" "$CPUS" "$(nproc)" "$st" "${sp// /}" \
    "$submit_per_s" "$submit_ok" "$submit_s" "$PARALLEL" \
    "$makespan_s" "$makespan_done" "$makespan_drain_s" "$makespan_submit_s" "$MPAR" \
    "$lat_p50" "$lat_p90" "$lat_min" "$lat_max" "$lat_n" "$array_s" "$chain_s" "$load_start" "$load1" \
    "$([ -n "$err" ] && printf ',"error":"%s"' "$(echo "$err" | sed 's/^ //; s/"/'"'"'/g')")"
  [ -z "$err" ] || die "measurement incomplete:$err"
}

case "${1:-}" in
  up)      cmd_up ;;
  down)    cmd_down ;;
  measure) cmd_measure ;;
  status)  cmd_status ;;
  *) echo "usage: $0 up|measure|down|status   (see the header of this file for knobs)" >&2; exit 2 ;;
esac
