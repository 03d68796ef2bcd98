#!/usr/bin/env bash
# `make swarm-test`: both designs as Docker Swarm stacks on SEVERAL hosts, checked on a real engine.
# The hosts are network namespaces on this machine, each with its own dockerd (own data root, exec root,
# socket and cgroup), joined into one swarm over veth links to a bridge; overlay networks run on VXLAN.
#
#  1. engine    installs docker.io, docker-registry and debootstrap with apt when missing (needs root)
#  2. hosts     network namespaces dtqs1..dtqsH (DTQ_SWARM_HOSTS, default 3) at 10.78.0.1..H on a bridge
#               dtqsbr (this machine: 10.78.0.254), and an iptables rule that lets the bridge forward
#               between them (a dockerd in the root namespace sets FORWARD's policy to DROP)
#  3. registry  Debian's docker-registry on 10.78.0.254:5000 (`docker stack deploy` ignores build:, so
#               every host pulls the image from it)
#  4. daemons   one dockerd per host, started in its namespace and in a cgroup of its own (so that a
#               host can be killed whole: its daemon, containerd, shims and containers)
#  5. swarm     `swarm init` on h1 (the manager), the others join as workers; each gets the node label
#               dtq.host=hK that the stacks' placement constraints use
#  6. image     `bash docker/test.sh image` against h1's daemon (the debootstrapped base carries
#               python3, the wheelhouse the dependencies: the build needs no network), then pushed
#  7-8. per design: `python -m lab.faults.swarm` (lab/faults/swarm.py), fresh stacks of docker/stack.<design>.yml
#               rendered for the hosts, the load generator on this machine through the ports the
#               services publish on their hosts, one fault per run, and lab.faults' auditor: no
#               accepted job may be lost or left unfinished (docker/check_faults.py). Design A: the
#               worker's task killed (docker kill; the swarm restarts it). Design B: a whole host (h2,
#               with its nodes) killed and started again 3 s later, and one node's task killed.
#               Then Design B at DTQ_SWARM_SCALE_NODES (12; 0 skips) nodes: `dtq deploy swarm` renders the
#               stack, every node becomes healthy on its host, a job through each node succeeds, and
#               n1's listing gathers jobs of all of them.
#  9. down      every stack, the swarm, the daemons, the registry, namespaces, bridge, rule and data
# Prints each step's time and the total. Environment: PYTHON (a Python with dtq: `make swarm-test`
# passes .venv/bin/python), DTQ_DESIGNS="micro mono", DTQ_SWARM_HOSTS=3, DTQ_SWARM_NODES=6 (Design B's
# node count), DTQ_KEEP=1 (leave the rig up; `bash docker/swarm-test.sh down` takes it down),
# DTQ_SWARM_FAULTS (per design, e.g. "mono=host:h3,kill:n1 micro=kill:job"), DTQ_SWARM_OUT (a folder
# for the rows and run directories; default a temporary one, removed on success).
#
#   bash docker/swarm-test.sh            all of the above
#   bash docker/swarm-test.sh up         steps 1-6 only: the rig stays up (DOCKER_HOST for h1 printed)
#   bash docker/swarm-test.sh down       step 9 only
#   bash docker/swarm-test.sh host down|up hK    kill host hK whole / start its daemon again
#   bash docker/swarm-test.sh scale N    on a rig that is up: Design B at N nodes (the check above)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
DESIGNS=${DTQ_DESIGNS:-micro mono}
HOSTS=${DTQ_SWARM_HOSTS:-3}
NODES=${DTQ_SWARM_NODES:-6}
RUN=/run/dtq-swarm                       # sockets, pid files, logs
LIB=/var/lib/dtq-swarm                   # data roots, registry storage
BRIDGE=dtqsbr
SUBNET=10.78.0                           # host k at .k, this machine at .254
GATEWAY=$SUBNET.254
REGISTRY=$GATEWAY:5000
POOL=10.79.0.0/16                        # swarm overlay networks
LOCAL_POOL=10.80.0.0/16                  # each daemon's local bridges (docker_gwbridge)
IMAGE=$REGISTRY/dtq:test
MODE=${1:-all}

TAG=swarm-test
# shellcheck source=docker/lib.sh
source "$ROOT/docker/lib.sh"

sock() { echo "unix://$RUN/$1.sock"; }
on() { # on hK docker ARGS...: a docker command against host hK's daemon
    local host=$1
    shift
    DOCKER_HOST=$(sock "$host") "$@"
}
host_labels() { seq -f 'h%g' 1 "$HOSTS"; }

# ---------------------------------------------------------------------------------------- 1. engine
install_engine() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    install_missing "engine, registry and debootstrap" "${missing[@]}"
}

# ---------------------------------------------------------------------------------------- 2. hosts
hosts_up() {
    [[ $(id -u) == 0 ]] || die "the hosts are network namespaces: run as root"
    ((HOSTS >= 2 && HOSTS <= 9)) || die "DTQ_SWARM_HOSTS must be 2..9, not $HOSTS"
    mkdir -p "$RUN" "$LIB"
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # bridged frames go through the root namespace's FORWARD chain (br_netfilter, which a dockerd turns
    # on), whose policy a dockerd sets to DROP: accept what stays on our bridge
    iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    local k
    for k in $(seq "$HOSTS"); do
        ip netns add "dtqs$k"
        ip link add "dtqs${k}h" type veth peer name "dtqs${k}n"
        ip link set "dtqs${k}h" master "$BRIDGE" up
        ip link set "dtqs${k}n" netns "dtqs$k"
        ip -n "dtqs$k" addr add "$SUBNET.$k/24" dev "dtqs${k}n"
        ip -n "dtqs$k" link set "dtqs${k}n" up
        ip -n "dtqs$k" link set lo up
        ip -n "dtqs$k" route add default via "$GATEWAY"
    done
    log "$HOSTS hosts: $(for k in $(seq "$HOSTS"); do printf 'h%s=%s.%s ' "$k" "$SUBNET" "$k"; done)"
}

# ---------------------------------------------------------------------------------------- 3. registry
registry_up() {
    mkdir -p "$LIB/registry"
    cat >"$RUN/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $LIB/registry}
  delete: {enabled: true}
http:
  addr: $REGISTRY
EOF
    setsid docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 </dev/null &
    echo $! >"$RUN/registry.pid"
    local i
    for i in $(seq 50); do
        curl -fs "http://$REGISTRY/v2/" >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -fs "http://$REGISTRY/v2/" >/dev/null || die "the registry did not answer on $REGISTRY; see $RUN/registry.log"
    log "registry on $REGISTRY"
}

# ---------------------------------------------------------------------------------------- 4. daemons
# A host's cgroup: every process of the host (the daemon and what it starts) is in it or below it.
cgroup_of() {
    if [[ -d /sys/fs/cgroup/pids ]]; then echo "/sys/fs/cgroup/pids/dtq-swarm-$1"; else echo "/sys/fs/cgroup/dtq-swarm-$1"; fi
}

storage_driver() { overlay_or_vfs "$LIB/overlay-probe.XXXXXX"; }

daemon_start() { # daemon_start hK: its dockerd, in its namespace and cgroup
    local host=$1 k=${1#h} cgroup
    cgroup=$(cgroup_of "$host")
    mkdir -p "$cgroup" "$LIB/$host"
    # nsenter --net (not `ip netns exec`, which remounts /sys and so hides the cgroup mounts dockerd needs)
    setsid bash -c "echo \$\$ >'$cgroup/cgroup.procs' && exec nsenter --net=/run/netns/dtqs$k \
        dockerd --data-root '$LIB/$host' --exec-root '$RUN/$host' --pidfile '$RUN/$host.pid' \
        -H '$(sock "$host")' --storage-driver '$DRIVER' --insecure-registry '$REGISTRY' \
        --bip 10.81.$k.1/24 --default-address-pool base=$LOCAL_POOL,size=24 \
        --cgroup-parent '/dtq-swarm-$host/containers'" >>"$RUN/$host.log" 2>&1 </dev/null &
    disown $! # a host killed later is no job of this shell's to report
}

daemon_wait() {
    local host=$1 i
    for i in $(seq 120); do
        on "$host" timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    tail -20 "$RUN/$host.log" >&2
    die "$host's dockerd did not answer within 60 s; see $RUN/$host.log"
}

daemons_up() {
    local host
    DRIVER=${DTQ_DOCKER_STORAGE_DRIVER:-$(storage_driver)}
    for host in $(host_labels); do daemon_start "$host"; done
    for host in $(host_labels); do daemon_wait "$host"; done
    log "$HOSTS daemons up: dockerd $(on h1 docker version --format '{{.Server.Version}}'), storage $DRIVER"
}

# Every process of the host killed at once (SIGKILL), as a crash of the machine would: repeated until
# the cgroup is empty (a process may fork while it dies).
host_down() {
    local host=$1 cgroup pids _
    cgroup=$(cgroup_of "$host")
    [[ -d $cgroup ]] || die "no host $host"
    for _ in $(seq 50); do
        pids=$(find "$cgroup" -name cgroup.procs -exec cat {} + | tr '\n' ' ')
        [[ -z ${pids// /} ]] && return 0
        # shellcheck disable=SC2086 # a list of pids
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    die "$host: processes left after 50 rounds of SIGKILL"
}

host_up() {
    DRIVER=${DTQ_DOCKER_STORAGE_DRIVER:-$(storage_driver)}
    daemon_start "$1"
    daemon_wait "$1"
}

# ---------------------------------------------------------------------------------------- 5. swarm
swarm_up() {
    local token host id addr
    on h1 docker swarm init --advertise-addr "$SUBNET.1" --default-addr-pool "$POOL" \
        --dispatcher-heartbeat 2s >/dev/null
    token=$(on h1 docker swarm join-token -q worker)
    for host in $(host_labels | tail -n +2); do
        on "$host" docker swarm join --advertise-addr "$SUBNET.${host#h}" --token "$token" "$SUBNET.1:2377" >/dev/null
    done
    for id in $(on h1 docker node ls -q); do
        addr=$(on h1 docker node inspect --format '{{.Status.Addr}}' "$id")
        on h1 docker node update --label-add "dtq.host=h${addr##*.}" "$id" >/dev/null
    done
    local i
    for i in $(seq 60); do
        [[ $(on h1 docker node ls --format '{{.Status}}' | grep -c Ready) == "$HOSTS" ]] && break
        sleep 0.5
    done
    on h1 docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}} {{.EngineVersion}}' |
        sed 's/^/    /'
    [[ $(on h1 docker node ls --format '{{.Status}}' | grep -c Ready) == "$HOSTS" ]] ||
        die "not every host joined the swarm"
    log "swarm of $HOSTS hosts, labelled dtq.host=h1..h$HOSTS"
}

# ---------------------------------------------------------------------------------------- 6. image
image() {
    DOCKER_HOST=$(sock h1) PYTHON=$PYTHON bash "$ROOT/docker/test.sh" image >"$RUN/image.log" 2>&1 || {
        tail -30 "$RUN/image.log" >&2
        die "the image build on h1 failed; see $RUN/image.log"
    }
    on h1 docker tag dtq:test "$IMAGE"
    on h1 docker push -q "$IMAGE" >/dev/null
    log "image $IMAGE pushed ($(grep -o 'image dtq:test: [0-9]* MB' "$RUN/image.log" || true))"
}

# ---------------------------------------------------------------------------------------- 7-8. designs
faults_of() { # the design's faults: DTQ_SWARM_FAULTS's entry, else the defaults
    local entry
    for entry in ${DTQ_SWARM_FAULTS:-}; do
        [[ ${entry%%=*} == "$1" ]] && {
            echo "${entry#*=}"
            return
        }
    done
    [[ $1 == micro ]] && echo kill:worker || echo host:h2,kill:n3
}

design_runs() {
    local design=$1 faults hosts="" k count felt=()
    faults=$(faults_of "$design")
    for k in $(seq "$HOSTS"); do hosts+="h$k=$SUBNET.$k=$(sock "h$k"),"; done
    "$PYTHON" -m lab.faults.swarm --design "$design" --image "$IMAGE" --hosts "${hosts%,}" \
        --host-command "bash $ROOT/docker/swarm-test.sh host" --faults "$faults" --nodes "$NODES" \
        --out "$OUT/swarm-$design.json" --runs-dir "$OUT/runs" 2>&1 | tee "$OUT/swarm-$design.log"
    # a run that raised (deploy, readiness, docker) is tried once more by lab.faults.swarm; say so here
    { grep '^lab.faults.swarm: .* failed: ' "$OUT/swarm-$design.log" || true; } | while read -r line; do
        log "retried: ${line#lab.faults.swarm: }"
    done
    count=$(tr ',' '\n' <<<"$faults" | grep -c .)
    for k in $(tr ',' ' ' <<<"$faults"); do # a killed task or host must show in the completions
        felt+=(--felt "kill:${k#kill:}")
    done
    "$PYTHON" "$ROOT/docker/check_faults.py" --rows "$count" --min-accepted 100 "${felt[@]}" \
        "$OUT/swarm-$design.csv"
    CHECKS_PASSED=$((CHECKS_PASSED + count))
}

# Design B at another node count (DTQ_SWARM_SCALE_NODES, default 12; 0 skips): the stack `dtq deploy`
# renders for it, every node healthy on its host, a job through each node, and one node's listing
# gathering jobs of every owner (the peers found each other by name over the overlay).
scale_check() {
    local count=$1 stack=dtq-scale file k i port owners started out try
    file=$RUN/stack.mono.$count.yml
    "$PYTHON" -m realsys deploy swarm --design mono --nodes "$count" --hosts "$HOSTS" --out "$file"
    started=$(date +%s)
    DTQ_IMAGE=$IMAGE DTQ_HEALTH_INTERVAL=5s on h1 docker stack deploy --compose-file "$file" "$stack" >/dev/null
    for i in $(seq "$count"); do
        k=$(((i - 1) % HOSTS + 1))
        port=$((50060 + i))
        "$PYTHON" -c "from realsys.cluster import wait_healthy; wait_healthy('$SUBNET.$k:$port', 240)" ||
            die "node n$i of $count not healthy on h$k:$port"
    done
    log "$count nodes healthy after $(($(date +%s) - started))s, on $HOSTS hosts"
    for i in $(seq "$count"); do
        k=$(((i - 1) % HOSTS + 1))
        # `submit --wait` prints the job's output and exits 0 only when it SUCCEEDED; a node that has just
        # joined a loaded host may miss its first handshake, so up to 3 tries. No request id: a keyed
        # submit is owned by its key's home node, not by the node it came through (a second echo job
        # after a lost reply changes nothing here)
        for try in 1 2 3; do
            out=$("$PYTHON" -m realsys submit --addr "$SUBNET.$k:$((50060 + i))" --timeout 20 \
                echo --payload "to n$i" --wait 30) && [[ $out == "to n$i" ]] && break
            log "a job through n$i: try $try did not succeed (printed: ${out:-nothing})"
            ((try < 3)) || die "a job through n$i did not succeed in 3 tries"
            sleep 2
        done
    done
    owners=$("$PYTHON" -m realsys list --addr "$SUBNET.1:50061" --timeout 30 --all --state succeeded |
        grep -o '"owner_node": "n[0-9]*"' | sort -u | wc -l)
    [[ $owners == "$count" ]] || die "n1's listing saw jobs of $owners owners, not $count"
    log "a job through each of the $count nodes succeeded; n1's listing gathers all $count owners"
    on h1 docker stack rm "$stack" >/dev/null
    local host volumes
    for host in $(host_labels); do # its volumes too (`stack rm` keeps them), once its containers are gone
        for _ in $(seq 120); do
            [[ -z $(on "$host" docker ps -aq --filter "label=com.docker.stack.namespace=$stack") ]] && break
            sleep 0.5
        done
        volumes=$(on "$host" docker volume ls -q --filter "label=com.docker.stack.namespace=$stack")
        # shellcheck disable=SC2086 # a list of names
        [[ -z $volumes ]] || on "$host" docker volume rm --force $volumes >/dev/null
    done
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
}

# ---------------------------------------------------------------------------------------- 9. down
rig_down() {
    local host k mounts
    for host in $(host_labels); do
        [[ -S $RUN/$host.sock ]] || continue
        for stack in $(on "$host" timeout 20 docker stack ls --format '{{.Name}}' 2>/dev/null); do
            on "$host" timeout 60 docker stack rm "$stack" >/dev/null 2>&1 || true
        done
    done
    for host in $(host_labels); do
        [[ -S $RUN/$host.sock ]] && on "$host" timeout 30 docker swarm leave --force >/dev/null 2>&1 || true
    done
    for host in $(host_labels); do
        if [[ -f $RUN/$host.pid ]] && kill -0 "$(cat "$RUN/$host.pid")" 2>/dev/null; then
            kill -TERM "$(cat "$RUN/$host.pid")" 2>/dev/null || true
        fi
    done
    for host in $(host_labels); do
        for _ in $(seq 60); do
            [[ -f $RUN/$host.pid ]] && kill -0 "$(cat "$RUN/$host.pid")" 2>/dev/null || break
            sleep 0.5
        done
        [[ -d $(cgroup_of "$host") ]] && host_down "$host" # what a stuck daemon left
        rmdir "$(cgroup_of "$host")"/containers/* "$(cgroup_of "$host")"/containers "$(cgroup_of "$host")" \
            2>/dev/null || true
    done
    if [[ -f $RUN/registry.pid ]]; then
        kill -TERM "$(cat "$RUN/registry.pid")" 2>/dev/null || true
    fi
    for k in $(seq 9); do
        ip netns list 2>/dev/null | grep -qw "dtqs$k" && ip netns del "dtqs$k"
        ip link del "dtqs${k}h" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
    # mounts a killed daemon left behind (its containers' layers, its namespaces' bind mounts)
    mounts=$(awk -v a="$LIB/" -v b="$RUN/" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/mounts | sort -r)
    for m in $mounts; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$LIB" "$RUN"
    log "rig down: stacks, swarm, daemons, registry, namespaces, bridge, rule and data removed"
}

on_exit() {
    local rc=$?
    trap - EXIT
    [[ -z $STEP ]] || end_step " (FAILED)"
    if ((rc != 0)) && [[ -d $RUN ]]; then
        for host in $(host_labels); do
            log "--- $host's dockerd log, last errors"
            grep -E 'level=(error|fatal)' "$RUN/$host.log" 2>/dev/null | tail -5 | cut -c1-300 >&2 || true
        done
    fi
    if [[ $MODE == all && ${DTQ_KEEP:-0} != 1 ]]; then
        STEP="down"
        STEP_START=$(date +%s)
        rig_down
        end_step ""
    fi
    if [[ $MODE == all ]]; then
        report
        if ((rc == 0)); then
            [[ -n ${DTQ_SWARM_OUT:-} ]] || rm -rf "$OUT"
            log "PASS"
        else
            { grep -h '^lab.faults.swarm: .* failed: ' "$OUT"/swarm-*.log 2>/dev/null || true; } | tail -2 |
                while read -r line; do
                    log "the fault runs' error: ${line#lab.faults.swarm: }"
                done
            log "FAIL (exit $rc); the rows and runs are kept in $OUT"
        fi
        echo "swarm-test: $CHECKS_PASSED passed, $((rc == 0 ? 0 : 1)) failed"
    fi
    exit "$rc"
}

rig_up() {
    [[ ! -e $RUN && -z $(ip netns list | grep -w dtqs1 || true) ]] ||
        die "a rig is up already ($RUN): bash docker/swarm-test.sh down"
    step "1 engine installed" install_engine
    step "2 hosts (network namespaces)" hosts_up
    step "3 registry" registry_up
    step "4 daemons" daemons_up
    step "5 swarm" swarm_up
    step "6 image built on h1, pushed" image
}

main() {
    case $MODE in
    host)
        case ${2:-} in
        down) host_down "${3:?host label}" ;;
        up) host_up "${3:?host label}" ;;
        *) die "usage: swarm-test.sh host down|up hK" ;;
        esac
        return
        ;;
    down)
        rig_down
        return
        ;;
    scale)
        scale_check "${2:?node count}"
        log "PASS: Design B at $2 nodes"
        return
        ;;
    up)
        trap on_exit EXIT
        rig_up
        log "rig up: DOCKER_HOST=$(sock h1) docker node ls; take it down with: bash docker/swarm-test.sh down"
        return
        ;;
    all) ;;
    *) die "unknown mode $MODE (all | up | down | host down|up hK)" ;;
    esac
    "$PYTHON" -c 'import lab.faults.swarm' 2>/dev/null ||
        die "the runs need dtq in $PYTHON (make swarm-test passes .venv/bin/python)"
    OUT=${DTQ_SWARM_OUT:-$(mktemp -d /tmp/dtq-swarm-test.XXXXXX)}
    mkdir -p "$OUT"
    trap on_exit EXIT
    rig_up
    local design n=7 scale=${DTQ_SWARM_SCALE_NODES:-12}
    for design in $DESIGNS; do
        step "$n $design: stacks deployed, faults, audited" design_runs "$design"
        n=$((n + 1))
    done
    if ((scale > 0)) && [[ " $DESIGNS " == *" mono "* ]]; then
        step "$n mono at $scale nodes: healthy, serving, listing" scale_check "$scale"
    fi
}

main "$@"
