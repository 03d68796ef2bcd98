# Sourced by docker/test.sh and docker/swarm-test.sh: logging, timed steps and their report, the apt
# install of missing tools, and the storage-driver probe. The script sets TAG (its log prefix) first.

STEP="" # the step running now
STEP_START=0
STEP_NAMES=()
STEP_TIMES=()
CHECKS_PASSED=0
T0=$(date +%s)

log() { printf '[%s %s] %s\n' "$TAG" "$(date +%T)" "$*"; }
die() {
    log "FAIL: $*" >&2
    exit 1
}

# step NAME COMMAND...: runs COMMAND (errexit stays in force: a failure ends the script, and the
# EXIT trap records the failed step) and records how long it took
step() {
    STEP=$1
    STEP_START=$(date +%s)
    shift
    log "== $STEP"
    "$@"
    end_step ""
}

end_step() {
    STEP_NAMES+=("$STEP$1")
    STEP_TIMES+=($(($(date +%s) - STEP_START)))
    log "   $STEP: ${STEP_TIMES[-1]}s$1"
    STEP=""
}

report() {
    local i
    echo "---------------------------------------------- $TAG timings"
    for i in "${!STEP_NAMES[@]}"; do
        printf '  %-44s %5ss\n' "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}"
    done
    printf '  %-44s %5ss\n' total $(($(date +%s) - T0))
}

# install_missing WHAT PACKAGE...: apt-get installs the PACKAGEs (none: WHAT are all installed; root only)
install_missing() {
    local what=$1
    shift
    if (($# == 0)); then
        log "$what are installed"
        return
    fi
    [[ $(id -u) == 0 ]] || die "missing $*: install them (apt-get install $*) or run as root"
    log "installing $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# overlay_or_vfs TEMPLATE: overlay2 when the kernel mounts overlayfs in a directory made by
# `mktemp -d TEMPLATE` (containers start in well under a second), else vfs (copies the whole image for
# each container: tens of seconds each)
overlay_or_vfs() {
    local probe driver=vfs
    probe=$(mktemp -d "$1")
    mkdir "$probe"/{lower,upper,work,merged}
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        driver=overlay2
    fi
    rm -rf "$probe"
    echo "$driver"
}
