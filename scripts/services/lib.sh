# shellcheck shell=bash
# Shared helpers for scripts/services/<name>. Sourced, never executed.
#
# A service script sets SVC_NAME, SVC_URL, SVC_LOG and defines:
#   svc_pid       print the pid and succeed only if the server is running
#   svc_prepare   install packages, create data dirs (only when not running)
#   svc_launch    start the server in the background (must leave svc_pid true)
#   svc_probe     succeed only when the server really answers a client
#   svc_shutdown  (optional) ask for a graceful stop; default is SIGTERM
# then calls `svc_main "$@"`.

NUDGE_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
NUDGE_VAR_DIR=${NUDGE_VAR_DIR:-$NUDGE_REPO_ROOT/var}
SVC_START_TIMEOUT=${SVC_START_TIMEOUT:-20}
SVC_STOP_TIMEOUT=${SVC_STOP_TIMEOUT:-30}

# Diagnostics go to stderr so that stdout carries nothing but the URL.
log() { printf '%s: %s\n' "${SVC_NAME:-services}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Sets SVC_DIR. The .gitignore entry keeps var/ out of commits even when
# the first thing someone ever runs is one of these scripts.
svc_init() {
    SVC_NAME=$1
    SVC_DIR=$NUDGE_VAR_DIR/services/$SVC_NAME
    mkdir -p "$SVC_DIR"
    local gi=$NUDGE_REPO_ROOT/.gitignore
    if ! { [[ -f $gi ]] && grep -qxE '/?var/?' "$gi"; }; then
        # Append after a newline if the file lacks a trailing one.
        if [[ -s $gi && -n $(tail -c1 "$gi") ]]; then echo >>"$gi"; fi
        echo 'var/' >>"$gi"
    fi
}

# Serialises start/stop of one service so parallel test runners don't race
# (two launches would fight over the same data dir).
svc_lock() {
    exec 9>"$SVC_DIR/.lock"
    flock -w 300 9 || die "timed out waiting for $SVC_DIR/.lock"
}

# Installs missing Debian packages. `apt-get update` is slow and needs the
# network, so it only runs when a plain install fails.
ensure_pkgs() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    ((EUID == 0)) || die "packages missing and not root: ${missing[*]}"
    log "installing ${missing[*]}"
    local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install "${opts[@]}" "${missing[@]}" >&2; then
        log "install failed; retrying after apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install "${opts[@]}" "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
}

# kill -0 is not enough: PID 1 on some sandboxes never reaps, so a dead
# server can linger as a zombie and would look alive forever.
pid_alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# Prints the pid from PIDFILE if that process is alive and its command line
# contains PATTERN; the pattern guards against a recycled pid after a reboot.
pidfile_running() {
    local pidfile=$1 pattern=$2 pid=''
    [[ -r $pidfile ]] && read -r pid <"$pidfile" || return 1
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
    echo "$pid"
}

# Succeeds if something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_ports() {
    local p
    for p in "$@"; do
        port_busy "$p" && die "port $p on 127.0.0.1 is already taken by another process"
    done
    return 0
}

svc_fail() {
    log "$*"
    if [[ -f ${SVC_LOG:-} ]]; then
        log "last lines of $SVC_LOG:"
        tail -n 40 "$SVC_LOG" >&2
    fi
    exit 1
}

svc_start() {
    svc_lock
    local pid
    if pid=$(svc_pid); then
        log "already running (pid $pid)"
    else
        svc_prepare
        log "starting"
        # fd 9 holds the lock; a server inheriting it would keep the lock
        # for its whole lifetime and block every later start/stop.
        svc_launch 9>&-
    fi
    local deadline=$((SECONDS + SVC_START_TIMEOUT))
    until svc_probe >/dev/null 2>&1; do
        if ! svc_pid >/dev/null; then
            # Right after the launch the child may still be between fork and
            # exec, its command line not yet the server's: look again.
            sleep 0.5
            svc_pid >/dev/null || svc_fail "server process exited during startup"
        fi
        ((SECONDS < deadline)) || svc_fail "not answering after ${SVC_START_TIMEOUT}s"
        sleep 0.3
    done
    log "ready"
    echo "$SVC_URL"
}

svc_shutdown_default() { kill -TERM "$1" 2>/dev/null || true; }

svc_stop() {
    svc_lock
    local pid
    if ! pid=$(svc_pid); then
        log "not running"
        return 0
    fi
    log "stopping pid $pid"
    if declare -F svc_shutdown >/dev/null; then
        svc_shutdown "$pid" 9>&- || kill -TERM "$pid" 2>/dev/null || true
    else
        svc_shutdown_default "$pid"
    fi
    local deadline=$((SECONDS + SVC_STOP_TIMEOUT))
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "still alive after ${SVC_STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
            pid_alive "$pid" && die "pid $pid survived SIGKILL"
            break
        fi
        sleep 0.2
    done
    log "stopped"
}

svc_status() {
    if svc_pid >/dev/null; then
        echo "running $SVC_URL"
    else
        echo "stopped"
        exit 3
    fi
}

svc_main() {
    case ${1:-} in
    start) svc_start ;;
    stop) svc_stop ;;
    status) svc_status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
    esac
}

# Kafka's jars, resolved from Maven Central into LIBS (shared by the kafka
# and kafka-cluster services). Fetched once; the marker records which pom
# produced them, so editing the pom (e.g. a version bump) refetches and
# nothing else does.
kafka_fetch_libs() {
    local pom=$1 libs=$2 want
    want=$(sha256sum <"$pom")
    if [[ -f $libs/.complete && $(<"$libs/.complete") == "$want" ]]; then
        return 0
    fi
    command -v java >/dev/null || ensure_pkgs openjdk-17-jre-headless
    command -v mvn >/dev/null || ensure_pkgs maven
    log "resolving Kafka jars with maven (cached in ~/.m2 afterwards)"
    rm -rf "$libs" "$libs.tmp"
    # sed: Debian's maven 3.8 emits stray colour resets even with -B.
    mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$libs.tmp" 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' >&2 ||
        die "mvn dependency:copy-dependencies failed"
    echo "$want" >"$libs.tmp/.complete"
    mv "$libs.tmp" "$libs"
}
