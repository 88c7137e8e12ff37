#!/usr/bin/env bash
# Start a real, throw-away Slurm cluster on this machine, from Debian's packages, without systemd.
#
#   sudo hpc/devcluster/up.sh [--nodes 1|2] [--state DIR]
#   export SLURM_CONF=DIR/etc/slurm.conf      (printed at the end)
#
# What it starts (and hpc/devcluster/down.sh stops, nothing else):
#   munged, mariadbd (TCP 127.0.0.1:13306, own datadir), slurmdbd, slurmctld in this network namespace,
#   and one slurmd per node, each in its own network namespace on a private bridge (10.213.0.0/24),
#   with its own hostname (node1, node2) and /etc/hosts. Nodes have no route off the machine.
# Each node has 4 CPUs, 4000 MB and 4 fake GPUs (gres gpu:tiny:4 backed by character devices).
# Partitions on the same nodes: debug (default, never preempted), lowprio (preempted by highprio: SIGCONT+SIGTERM,
# then SIGKILL after GraceTime=30 s and a requeue by Slurm) and highprio.
set -euo pipefail

NODES=1
STATE=${HPCFT_DEVCLUSTER_STATE:-/tmp/hpcft-devcluster}
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --state) STATE=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "up.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$NODES" in 1|2) ;; *) echo "up.sh: --nodes must be 1 or 2" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "up.sh: must run as root (it creates network namespaces and devices)" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
if [ -f "$STATE/pids" ]; then
  echo "up.sh: a dev cluster already runs from $STATE; stop it with $HERE/down.sh --state $STATE" >&2
  exit 2
fi

if ip link show hpcft-br >/dev/null 2>&1; then
  echo "up.sh: another dev cluster runs on this machine (bridge hpcft-br exists); stop it with down.sh --state DIR" >&2
  exit 2
fi
# No bridge, so no cluster: links or namespaces of ours still here are leftovers of a killed up.sh
for i in 1 2; do
  ip link del "hpcft-v$i" 2>/dev/null || true
  ip netns del "hpcft-node$i" 2>/dev/null || true
done

need=""
for b in slurmctld slurmd slurmdbd munged mariadbd sacctmgr ip nsenter unshare; do
  command -v "$b" >/dev/null 2>&1 || need="$need $b"
done
if [ -n "$need" ]; then
  echo "up.sh: installing Debian's slurm packages (missing:$need)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurmctld slurmd slurm-client munge mariadb-server slurmdbd iproute2 util-linux >/dev/null
fi

rm -rf "$STATE"
mkdir -p "$STATE"/{etc,log,ctld,mysql,dev,run}
: > "$STATE/pids"
record() { echo "$1 $2" >> "$STATE/pids"; }   # kind pid|name
BR=hpcft-br
SUBNET=10.213.0
CPUS=4; MEM=4000

# ---- munge ---------------------------------------------------------------------------------
if ! pgrep -x munged >/dev/null; then
  [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
  record pid "$(pgrep -x -n munged)"
fi

# ---- mariadb + slurmdbd --------------------------------------------------------------------
mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/run/mysql.sock" --pid-file="$STATE/run/mysql.pid" \
  --bind-address=127.0.0.1 --port=13306 --skip-log-bin --innodb-buffer-pool-size=64M \
  >"$STATE/log/mariadb.log" 2>&1 &
record pid $!
for _ in $(seq 100); do [ -S "$STATE/run/mysql.sock" ] && break; sleep 0.1; done
mariadb --socket="$STATE/run/mysql.sock" -uroot <<SQL
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'hpcft-devcluster';
CREATE DATABASE slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

cat > "$STATE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=16819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=13306
StorageUser=slurm
StoragePass=hpcft-devcluster
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/etc/slurmdbd.conf"

# ---- slurm.conf ----------------------------------------------------------------------------
if [ "$NODES" = 1 ]; then NODESPEC=node1; else NODESPEC="node[1-$NODES]"; fi
{
  cat <<CONF
ClusterName=hpcft
SlurmctldHost=$(hostname -s)($SUBNET.1)
MailProg=/bin/true
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
GresTypes=gpu
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=2
MinJobAge=3600
KillWait=20
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
AccountingStorageTRES=gres/gpu
JobRequeue=1
# preemption: a job of a higher PriorityTier partition takes the nodes of a lower one's jobs (see the partitions)
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
CONF
  for i in $(seq "$NODES"); do
    echo "NodeName=node$i NodeAddr=$SUBNET.$((10 + i)) CPUs=$CPUS RealMemory=$MEM Gres=gpu:tiny:4 State=UNKNOWN"
  done
  common="Nodes=$NODESPEC MaxTime=02:00:00 DefaultTime=00:30:00 MaxNodes=$NODES State=UP"
  # debug: never preempted. lowprio: preemptable (SIGCONT+SIGTERM, GraceTime s later SIGKILL, then requeued by
  # Slurm); highprio: preempts lowprio on the same nodes.
  echo "PartitionName=debug $common Default=YES PriorityTier=1 PreemptMode=OFF"
  echo "PartitionName=lowprio $common PriorityTier=1 PreemptMode=REQUEUE GraceTime=30"
  echo "PartitionName=highprio $common PriorityTier=2 PreemptMode=OFF"
} > "$STATE/etc/slurm.conf"

for g in 0 1 2 3; do mknod "$STATE/dev/gpu$g" c 1 3; done
echo "NodeName=$NODESPEC Name=gpu Type=tiny File=$STATE/dev/gpu[0-3]" > "$STATE/etc/gres.conf"
export SLURM_CONF=$STATE/etc/slurm.conf

slurmdbd 2>>"$STATE/log/slurmdbd.log"   # reads slurmdbd.conf beside $SLURM_CONF
# slurmdbd daemonizes; its pid file appears once it listens.
for _ in $(seq 100); do [ -s "$STATE/run/slurmdbd.pid" ] && break; sleep 0.1; done
record pid "$(cat "$STATE/run/slurmdbd.pid")"
for _ in $(seq 50); do sacctmgr -i add cluster hpcft >/dev/null 2>&1 && break; sleep 0.2; done

# ---- network: a bridge in this namespace, one namespace per node ---------------------------
ip link add "$BR" type bridge
record link "$BR"
ip addr add "$SUBNET.1/24" dev "$BR"
ip link set "$BR" up
{
  echo "127.0.0.1 localhost"
  echo "$SUBNET.1 $(hostname -s)"
  for i in $(seq "$NODES"); do echo "$SUBNET.$((10 + i)) node$i"; done
} > "$STATE/etc/hosts"

slurmctld -f "$SLURM_CONF" -i
for _ in $(seq 100); do [ -s "$STATE/run/slurmctld.pid" ] && break; sleep 0.1; done
record pid "$(cat "$STATE/run/slurmctld.pid")"

for i in $(seq "$NODES"); do
  ns=hpcft-node$i
  ip netns add "$ns"
  record netns "$ns"
  ip link add "hpcft-v$i" type veth peer name eth0 netns "$ns"
  ip link set "hpcft-v$i" master "$BR" up
  ip -n "$ns" addr add "$SUBNET.$((10 + i))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  mkdir -p "$STATE/spool/node$i"
  nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private sh -c \
    "hostname node$i && mount --bind '$STATE/etc/hosts' /etc/hosts && exec slurmd -D -N node$i -f '$SLURM_CONF'" \
    >>"$STATE/log/slurmd.node$i.out" 2>&1 &
  record pid $!
done

# ---- wait until every node is idle ----------------------------------------------------------
for _ in $(seq 150); do
  idle=$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)
  [ "$idle" -ge "$NODES" ] && break
  sleep 0.2
done
if [ "$idle" -lt "$NODES" ]; then
  echo "up.sh: nodes did not become idle; see $STATE/log" >&2
  sinfo -N -l >&2 || true
  exit 1
fi
echo "export SLURM_CONF=$SLURM_CONF"
