#!/usr/bin/env bash
# `make docker-test`: the dtq image and both designs' Compose files, checked on a real Docker engine.
#
#  1. engine    installs docker.io, docker-compose and debootstrap with apt when missing (needs root)
#  2. daemon    starts dockerd unless one answers (storage: overlay2 where the kernel allows it, else
#               vfs; DTQ_DOCKER_STORAGE_DRIVER overrides); stops only a daemon it started
#  3. base      BASE_IMAGE: $DTQ_BASE_IMAGE, else python:3.11-slim if it can be pulled, else a local
#               Debian bookworm with python3 (debootstrap from the host's own apt mirror, imported as
#               dtq-base:bookworm-python3, so that the build needs no network: a daemon in a network
#               namespace, as docker/swarm-test.sh's, builds it too;
#               the rootfs tarball is cached in $DTQ_DOCKER_CACHE, and the image is reused while it exists)
#  4. image     fills docker/wheels/ on the host (containers here cannot reach PyPI) and builds the image;
#               `docker run ... id -u` in it must not be 0 (and each node container's, after step 5)
#  5-9. per design (micro, then mono): compose up and wait for health; a loadgen run of
#       docker/workloads/smoke.yaml; every accepted job must succeed; the same again with a
#       worker-bearing container killed (docker kill) mid-run and restarted; compose down -v
#  10.  per design: `dtq faults run --backend compose` (lab/faults/), two short audited runs on
#       fresh projects: a worker-bearing container paused (docker pause) and another role or node
#       killed (docker kill) under load; no accepted job may be lost or left unfinished, and Design A's
#       two faults must show in the completions (docker/check_faults.py). Needs PYTHON with dtq in it
#       (`make docker-test` passes the project's .venv).
#  11.  per design (helper "operability"'s step, kept apart from the others): a fresh project with the
#       `monitoring` profile and DTQ_JOB_MODULES=realsys.examples.jobs; a `wordcount` job submitted from
#       the host must return the expected counts, and Prometheus (docker/prometheus, built once from the
#       same base: step 4d) must report every dtq container's target up (docker/check_ops.py).
#       DTQ_DOCKER_OPS=0 skips 4d and 11.
# Prints each step's time and the total. Environment: DTQ_DESIGNS="micro mono", PYTHON (a Python 3
# with pip), DTQ_BASE_IMAGE, DTQ_DOCKER_CACHE (/var/cache/dtq), DTQ_KEEP=1 (leave the clusters up: for a
# daemon that was already running, as the script stops one that it started), DTQ_DOCKER_FAULTS=0 (skip 10).
#
# `bash docker/test.sh image` does steps 1-4 only and leaves a daemon it started running (it prints how
# to stop it): the image dtq:test for `dtq faults run --backend compose --image dtq:test`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
DESIGNS=${DTQ_DESIGNS:-micro mono}
CACHE=${DTQ_DOCKER_CACHE:-/var/cache/dtq}
STATE=${DTQ_DOCKER_STATE:-/tmp/dtq-docker-test}
IMAGE=dtq:test
PUBLIC_BASE=python:3.11-slim
LOCAL_BASE=dtq-base:bookworm-python3
SUITE=bookworm # the container's Python must match the wheelhouse's: bookworm's python3 is 3.11
KILL_AFTER=${DTQ_KILL_AFTER:-3} # seconds after the loadgen container starts (the trace lasts 6 s)
DOWN_AFTER=${DTQ_DOWN_FOR:-2}   # seconds the killed container stays down
MODE=${1:-all}                  # all | image

TAG=docker-test
# shellcheck source=docker/lib.sh
source "$ROOT/docker/lib.sh"
STARTED_DAEMON=0
CURRENT_PROJECT=""

# ---------------------------------------------------------------------------------------- 1. engine
compose_cmd() {
    if docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    elif command -v docker-compose >/dev/null; then
        echo docker-compose
    fi
}

install_engine() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || missing+=(docker.io)
    [[ -n $(compose_cmd) ]] || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    install_missing "engine, compose and debootstrap" "${missing[@]}"
}

# ---------------------------------------------------------------------------------------- 2. daemon
daemon_answers() { timeout 10 docker info >/dev/null 2>&1; }

storage_driver() {
    if [[ -n ${DTQ_DOCKER_STORAGE_DRIVER:-} ]]; then
        echo "$DTQ_DOCKER_STORAGE_DRIVER"
        return
    fi
    overlay_or_vfs /var/lib/dtq-overlay-probe.XXXXXX
}

start_daemon() {
    if daemon_answers; then
        log "a Docker daemon already answers: using it ($(docker version --format '{{.Server.Version}}'))"
        return
    fi
    local driver
    driver=$(storage_driver)
    mkdir -p "$STATE"
    log "starting dockerd --storage-driver=$driver (log $STATE/dockerd.log)"
    setsid dockerd --storage-driver="$driver" --pidfile "$STATE/dockerd.pid" \
        >"$STATE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$STATE/dockerd.started"
    STARTED_DAEMON=1
    local i
    for i in $(seq 60); do
        daemon_answers && break
        kill -0 "$(cat "$STATE/dockerd.started")" 2>/dev/null || {
            tail -20 "$STATE/dockerd.log" >&2
            die "dockerd exited"
        }
        sleep 1
    done
    daemon_answers || die "dockerd did not answer within 60 s; see $STATE/dockerd.log"
    log "dockerd $(docker version --format '{{.Server.Version}}') up after ${i}s"
}

stop_daemon() {
    ((STARTED_DAEMON)) || return 0
    local pid
    pid=$(cat "$STATE/dockerd.started")
    log "stopping the dockerd this script started (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------- 3. base
# The host's own Debian mirror (apt's configuration) serving $SUITE or the host's own release, for
# debootstrap: from apt's index targets, else from the sources files (one-line and deb822 formats).
debian_mirror() {
    local codename uri
    # shellcheck disable=SC1091 # a system file
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-$SUITE}")
    # shellcheck disable=SC2016 # apt's own $(FIELD) syntax, not a shell expansion
    uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 2>/dev/null |
        awk -v a="$SUITE" -v b="$codename" '($2 == a || $2 == b) && $3 == "main" { print $1; exit }')
    if [[ -z $uri ]]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v a="$SUITE" -v b="$codename" '$1 == "deb" {
                sub(/\[[^]]*\][ \t]*/, "") # [options]
                if ($3 == a || $3 == b) { print $2; exit } }')
    fi
    if [[ -z $uri ]]; then
        uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
            awk -v a="$SUITE" -v b="$codename" 'BEGIN { RS = "" } {
                uri = ""; ok = 0; n = split($0, lines, "\n")
                for (i = 1; i <= n; i++) {
                    m = split(lines[i], f, /[ \t]+/)
                    if (f[1] == "URIs:") uri = f[2]
                    if (f[1] == "Suites:") for (j = 2; j <= m; j++) if (f[j] == a || f[j] == b) ok = 1
                }
                if (ok && uri != "") { print uri; exit } }')
    fi
    [[ -n $uri ]] || die "no Debian mirror for $SUITE in the host's apt sources"
    echo "$uri"
}

build_local_base() {
    local tarball=$CACHE/dtq-base-$SUITE-python3.tar rootfs mirror
    if [[ ! -s $tarball ]]; then
        mirror=$(debian_mirror)
        rootfs=$(mktemp -d /tmp/dtq-rootfs.XXXXXX)
        log "debootstrap --variant=minbase --include=python3,python3-venv $SUITE from $mirror"
        # python3 in the base: the Dockerfile's apt-get step (which needs a network) is skipped
        if ! debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$rootfs" "$mirror" \
            >"$STATE/debootstrap.log" 2>&1; then
            tail -20 "$STATE/debootstrap.log" >&2
            rm -rf "$rootfs"
            die "debootstrap failed"
        fi
        # slim like the official *-slim images: no package caches, manuals or translations
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
            "$rootfs"/usr/share/locale/*
        find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/dtq-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
        mkdir -p "$CACHE"
        tar -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    else
        log "using the cached rootfs $tarball"
    fi
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' "$tarball" "$LOCAL_BASE" >/dev/null
}

choose_base() {
    if [[ -n ${DTQ_BASE_IMAGE:-} ]]; then
        BASE=$DTQ_BASE_IMAGE
    elif docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1 ||
        timeout 30 docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
        BASE=$PUBLIC_BASE
    elif docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        log "no registry: reusing $LOCAL_BASE"
        BASE=$LOCAL_BASE
    else
        log "no registry: building $LOCAL_BASE"
        build_local_base
        BASE=$LOCAL_BASE
    fi
    log "base image: $BASE"
}

# ---------------------------------------------------------------------------------------- 4. image
# dtq's dependencies, and setuptools to build it, as wheels for the container's CPython 3.11 on glibc
# 2.17..2.36 (bookworm), whatever the host's Python. The image builds dtq itself from the sources.
fill_wheelhouse() {
    local wheels=$ROOT/docker/wheels arch platforms=() minor
    arch=$(uname -m)
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
    platforms+=(--platform "manylinux2014_$arch" --platform "manylinux2010_$arch" --platform "manylinux1_$arch")
    rm -f "$wheels"/*.whl
    if ! "$PYTHON" -m pip download --dest "$wheels" --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        "${platforms[@]}" "$ROOT" "setuptools>=77" >"$STATE/pip.log" 2>&1; then
        tail -30 "$STATE/pip.log" >&2
        die "pip download failed; see $STATE/pip.log"
    fi
    log "wheelhouse: $(find "$wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$wheels" | cut -f1) (pip's log: $STATE/pip.log)"
}

build_image() {
    if ! docker build -f "$ROOT/docker/Dockerfile" --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" "$ROOT" \
        >"$STATE/build.log" 2>&1; then
        tail -30 "$STATE/build.log" >&2
        die "docker build failed; see $STATE/build.log"
    fi
    # the previous build's image and build stage, now untagged
    docker image prune --force --filter label=org.opencontainers.image.title=dtq >/dev/null
    log "image $IMAGE: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }')"
}

# The image runs as the unprivileged dtq user: `id -u` inside a fresh container (no --user, as Compose
# starts the nodes) must be a number other than 0.
check_image_nonroot() {
    local uid
    uid=$(docker run --rm --entrypoint id "$IMAGE" -u) || die "docker run $IMAGE id -u failed"
    [[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || die "the image runs as uid '$uid': root, or not a uid"
    log "image $IMAGE runs as uid $uid (non-root)"
}

# ---------------------------------------------------------------------------------------- 5-9. designs
compose() {
    # shellcheck disable=SC2046 # the compose command is one or two words
    $(compose_cmd) -p "$CURRENT_PROJECT" -f "$ROOT/docker/compose.$DESIGN.yml" "$@"
}

services() { [[ $DESIGN == micro ]] && echo result queue job coordinator worker gateway || echo n{1..6}; }

# Every dtq container of the design reports healthy (the image's HEALTHCHECK).
wait_healthy() {
    local deadline=$(($(date +%s) + 120)) ids="" service states
    for service in $(services); do # once: compose is slow to start, and a restart keeps the id
        ids+=" $(compose ps -q "$service")"
    done
    [[ $(wc -w <<<"$ids") == $(services | wc -w) ]] || die "$CURRENT_PROJECT: containers missing ($ids)"
    while :; do
        # shellcheck disable=SC2086
        states=$(docker inspect --format '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' $ids)
        if ! grep -qv ' running healthy$' <<<"$states"; then
            return 0
        fi
        if grep -qE ' (exited|dead)|unhealthy$' <<<"$states" || (($(date +%s) > deadline)); then
            echo "$states" >&2
            die "$CURRENT_PROJECT: not every container became healthy"
        fi
        sleep 1
    done
}

up() {
    compose up -d --no-build
    wait_healthy
    log "$CURRENT_PROJECT: $(services | wc -w) containers healthy"
    local service uid
    for service in $(services); do # the running nodes too: a compose `user:` could override the image's
        uid=$(compose exec -T "$service" id -u) || die "$service: id -u failed"
        [[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || die "$service runs as uid '$uid': root, or not a uid"
    done
    log "$CURRENT_PROJECT: every node runs as a non-root uid"
}

run_dir() { echo "$DATA/runs/docker-$DESIGN-$1"; }

load() {
    DTQ_RUN_ID=docker-$DESIGN-$1 compose --profile loadgen run --rm -T loadgen
}

check() {
    "$PYTHON" "$ROOT/docker/check_run.py" --min-jobs "${2:-100}" "$(run_dir "$1")"
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
}

smoke() {
    load smoke
    check smoke
}

# Waits until the project's loadgen container runs (`compose run` creates it first).
wait_loadgen_started() {
    local deadline=$(($(date +%s) + 60))
    until [[ -n $(docker ps -q --filter "label=com.docker.compose.project=$CURRENT_PROJECT" \
        --filter label=com.docker.compose.service=loadgen) ]]; do
        (($(date +%s) < deadline)) || die "the loadgen container did not start"
        sleep 0.2
    done
}

# The same run, with the worker (micro) or one node (mono) killed mid-run and started again.
kill_restart() {
    local victim id code loader
    victim=$([[ $DESIGN == micro ]] && echo worker || echo n3)
    id=$(compose ps -q "$victim")
    load kill &
    loader=$!
    wait_loadgen_started
    sleep "$KILL_AFTER"
    kill -0 "$loader" 2>/dev/null || die "the run ended before the kill"
    log "docker kill $victim"
    docker kill "$id" >/dev/null
    code=$(docker inspect --format '{{.State.ExitCode}}' "$id")
    [[ $code == 137 ]] || die "$victim exited with $code, not 137 (SIGKILL)"
    sleep "$DOWN_AFTER"
    log "docker start $victim"
    docker start "$id" >/dev/null
    kill -0 "$loader" 2>/dev/null || die "the run ended before the restart"
    wait_healthy
    log "$victim healthy again; waiting for the load generator"
    wait "$loader" || die "the load generator failed"
    check kill
}

down() {
    [[ -n $CURRENT_PROJECT ]] || return 0
    compose --profile loadgen down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
    CURRENT_PROJECT=""
}

fault_project() { echo "dtq-test-faults-$DESIGN"; }

# 10: two audited fault runs (lab/faults/'s compose backend), each on a fresh project it takes
# down again: a short trace (fault at 7 s: 2 s warm-up and the 5 s recovery baseline, then 6 s).
faults() {
    local targets felt=() rows=$DATA/faults-$DESIGN.json project
    project=$(fault_project)
    if [[ $DESIGN == micro ]]; then
        targets=stop:worker,kill:job # all 12 slots frozen; then the job records' owner, killed
        felt=(--felt pause:worker --felt kill:job)
    else
        targets=stop:n1,kill:n2 # 2 slots of 12 frozen; another node, killed
    fi
    "$PYTHON" -m realsys faults run --backend compose --design "$DESIGN" --image "$IMAGE" \
        --project "$project" --faults stop,kill --targets "$targets" --fault-at 7 --after 6 \
        --pause 2 --downtime 1 --drain 10 --settle 20 --out "$rows" --runs-dir ""
    "$PYTHON" "$ROOT/docker/check_faults.py" --rows 2 --min-accepted 100 "${felt[@]}" "${rows%.json}.csv"
    [[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$project") ]] ||
        die "$project: containers left behind"
    CHECKS_PASSED=$((CHECKS_PASSED + 2))
}

# ---------------------------------------------------------------------------------------- 11. operability
# Helper "operability"'s step: custom job types and Prometheus, on a project of their own.
PROM_IMAGE=dtq-prometheus:test

build_prometheus() {
    if ! docker build -t "$PROM_IMAGE" --build-arg "BASE_IMAGE=$BASE" "$ROOT/docker/prometheus" \
        >"$STATE/prometheus-build.log" 2>&1; then
        tail -30 "$STATE/prometheus-build.log" >&2
        die "docker build of $PROM_IMAGE failed; see $STATE/prometheus-build.log"
    fi
    log "image $PROM_IMAGE: $(docker image inspect --format '{{.Size}}' "$PROM_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }')"
}

operability() {
    local entry port prom
    CURRENT_PROJECT=dtq-test-ops-$DESIGN
    export COMPOSE_PROFILES=monitoring # every compose call, the EXIT trap's `down` too, includes Prometheus
    down
    CURRENT_PROJECT=dtq-test-ops-$DESIGN
    DTQ_JOB_MODULES=realsys.examples.jobs DTQ_PROMETHEUS_IMAGE=$PROM_IMAGE DTQ_PROMETHEUS_PORT="" \
        compose up -d --no-build
    wait_healthy
    entry=$([[ $DESIGN == micro ]] && echo gateway || echo n1)
    port=$(compose port "$entry" 50051 | awk -F: '{ print $NF }')
    prom=$(compose port prometheus 9090 | awk -F: '{ print $NF }')
    "$PYTHON" "$ROOT/docker/check_ops.py" --addr "127.0.0.1:$port" --prometheus "127.0.0.1:$prom" --targets 6
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
    down
    unset COMPOSE_PROFILES
}

# A fault project an interrupted step 10 left behind (the runner takes its project down itself).
down_faults() {
    local files=(-f "$ROOT/docker/compose.$DESIGN.yml") project
    project=$(fault_project)
    [[ $DESIGN == micro ]] && files+=(-f "$ROOT/docker/compose.micro.ports.yml")
    [[ -n $(docker ps -aq --filter "label=com.docker.compose.project=$project") ]] || return 0
    # shellcheck disable=SC2046 # the compose command is one or two words
    $(compose_cmd) -p "$project" "${files[@]}" down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
}

# On failure: the containers' states and last log lines, before they are removed.
dump_logs() {
    [[ -n $CURRENT_PROJECT ]] || return 0
    local id
    for id in $(compose ps -q 2>/dev/null || true); do
        docker inspect --format '--- {{.Name}} {{.State.Status}} exit={{.State.ExitCode}}' "$id" >&2 || true
        docker logs --tail 15 "$id" 2>&1 | cut -c1-400 >&2 || true
    done
}

on_exit() {
    local rc=$?
    trap - EXIT
    [[ -z $STEP ]] || end_step " (FAILED)"
    if ((rc != 0)); then
        dump_logs
        [[ -z ${DATA:-} ]] || log "the runs are kept in $DATA"
    fi
    if [[ ${DTQ_KEEP:-0} != 1 ]]; then
        down
        if [[ -n ${DESIGN:-} ]] && daemon_answers; then
            down_faults
        fi
    fi
    report
    if [[ $MODE == image ]] && ((STARTED_DAEMON)); then
        log "dockerd left running (pid $(cat "$STATE/dockerd.started")): stop it with kill $(cat "$STATE/dockerd.started")"
    else
        stop_daemon
    fi
    if ((rc == 0)); then
        log "PASS"
    else
        log "FAIL (exit $rc)"
    fi
    echo "docker-test: $CHECKS_PASSED passed, $((rc == 0 ? 0 : 1)) failed" # runs checked
    exit "$rc"
}

main() {
    trap on_exit EXIT
    mkdir -p "$STATE"
    DATA=$(mktemp -d /tmp/dtq-docker-data.XXXXXX) # the loadgen's /data: workloads/ in, runs/ out
    mkdir "$DATA/workloads"
    cp "$ROOT/docker/workloads/smoke.yaml" "$DATA/workloads/"
    DTQ_UID=$(id -u)
    DTQ_GID=$(id -g)
    export DTQ_IMAGE=$IMAGE DTQ_HOST_DATA=$DATA DTQ_WORKLOAD=smoke.yaml DTQ_UID DTQ_GID DTQ_DRAIN=60
    export DTQ_HEALTH_INTERVAL=${DTQ_HEALTH_INTERVAL:-3s}
    # empty: the published ports are ephemeral, so a port taken on the host cannot fail the test
    export DTQ_GATEWAY_PORT="" DTQ_N1_PORT="" DTQ_N2_PORT="" DTQ_N3_PORT="" DTQ_N4_PORT="" DTQ_N5_PORT="" DTQ_N6_PORT=""

    step "1 engine installed" install_engine
    step "2 daemon" start_daemon
    step "3 base image" choose_base
    step "4a wheelhouse" fill_wheelhouse
    step "4b image build" build_image
    step "4c image runs as non-root" check_image_nonroot
    if [[ $MODE == all && ${DTQ_DOCKER_OPS:-1} != 0 ]]; then # step 11's Prometheus image (operability)
        step "4d prometheus image" build_prometheus
    fi
    if [[ $MODE == image ]]; then
        rm -rf "$DATA"
        return 0
    fi
    [[ $MODE == all ]] || die "unknown mode $MODE (all | image)"
    if [[ ${DTQ_DOCKER_FAULTS:-1} != 0 ]]; then # before the slow steps: step 10 needs dtq on the host
        "$PYTHON" -c 'import lab.faults.cli' 2>/dev/null ||
            die "step 10 needs dtq in $PYTHON (make docker-test passes .venv/bin/python; DTQ_DOCKER_FAULTS=0 skips it)"
    fi
    for DESIGN in $DESIGNS; do
        CURRENT_PROJECT=dtq-test-$DESIGN
        down # leftovers of an interrupted run (down clears CURRENT_PROJECT)
        CURRENT_PROJECT=dtq-test-$DESIGN
        step "5 $DESIGN: compose up, healthy" up
        step "6-7 $DESIGN: smoke run, checked" smoke
        step "8 $DESIGN: kill, restart, checked" kill_restart
        if [[ ${DTQ_KEEP:-0} != 1 ]]; then
            step "9 $DESIGN: compose down -v" down
        fi
        if [[ ${DTQ_DOCKER_FAULTS:-1} != 0 ]]; then
            step "10 $DESIGN: pause + kill, audited" faults
        fi
        if [[ ${DTQ_DOCKER_OPS:-1} != 0 ]]; then # operability: custom job module and Prometheus
            step "11 $DESIGN: job module + Prometheus" operability
        fi
    done
    rm -rf "$DATA"
}

main "$@"
