#!/usr/bin/env bash
# pipedemo's stack without Docker: PostgreSQL (logical decoding), Apache Kafka (KRaft, one node),
# Kafka Connect with the Debezium PostgreSQL connector, and a MongoDB-wire-protocol server, all
# on loopback with the same ports and credentials as docker-compose.yml.
#
#   scripts/stack.sh up | down | status | logs [SERVICE] | start SERVICE | stop SERVICE |
#                    kill SERVICE | freeze SERVICE | thaw SERVICE | install | env |
#                    kafka-tool consumer-groups|topics ARGS | test-tools
#
# `freeze` stops a service's processes without ending them (SIGSTOP: alive, connections open,
# nothing answered, as a stalled VM or a long pause looks); `thaw` lets them go on (SIGCONT).
#
# `test-tools` installs what the tests drive besides the stack, when missing: tmux (the
# dashboard in a real terminal), Prometheus (scrapes pipedemo) and Chromium (renders the HTML
# report), from Debian's packages, and cargo-nextest (runs the tests, each in its own process
# and at the same time), from crates.io.
#
# STACK_SECURE=1 runs the secured variant next to it (own directory and ports): TLS and
# authentication everywhere, with a CA, certificates and passwords made at install time;
# `STACK_SECURE=1 scripts/stack.sh env` prints the settings pipedemo needs for it.
#
# Everything it needs comes from package registries: Debian packages (PostgreSQL, Java, Maven),
# Maven Central (Kafka, Connect, Debezium) and crates.io (the MongoDB-compatible server).
# Downloads and builds are cached in $STACK_CACHE so a second `up` takes seconds; data, logs and
# pid files live in $STACK_DIR.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Nothing this script runs writes colour codes into a log file or a pipe: every tool is told
# so by its own setting whenever the output is not a terminal (Maven, which ignores it, is
# filtered in maven_copy).
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ ! -t 1 || ! -t 2 ]]; then
  export NO_COLOR=1 CLICOLOR=0 CARGO_TERM_COLOR=never PIP_NO_COLOR=1 TERM=dumb
  unset CLICOLOR_FORCE FORCE_COLOR
fi
STACK_CACHE="${STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pipedemo-stack}"
STACK_SECURE="${STACK_SECURE:-0}"

if [[ "$STACK_SECURE" == 1 ]]; then
  # Its own directory (not STACK_DIR, which the plain stack's `env` exports) and ports, so
  # both stacks can run side by side.
  STACK_DIR="${STACK_SECURE_DIR:-$REPO/.stack-secure}"
  PG_PORT="${SECURE_PG_PORT:-15432}"
  KAFKA_PORT="${SECURE_KAFKA_PORT:-19092}"
  KAFKA_CONTROLLER_PORT="${SECURE_KAFKA_CONTROLLER_PORT:-19093}"
  # A second listener, TLS with client certificates (mutual TLS), for pipedemo's mTLS settings.
  KAFKA_MTLS_PORT="${SECURE_KAFKA_MTLS_PORT:-19094}"
  CONNECT_PORT="${SECURE_CONNECT_PORT:-18083}"
  MONGO_PORT="${SECURE_MONGO_PORT:-37017}"
else
  STACK_DIR="${STACK_DIR:-$REPO/.stack}"
  PG_PORT="${PG_PORT:-5432}"
  KAFKA_PORT="${KAFKA_PORT:-9092}"
  KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
  CONNECT_PORT="${CONNECT_PORT:-8083}"
  MONGO_PORT="${MONGO_PORT:-27017}"
fi
TLS_DIR="$STACK_DIR/tls"
SECRETS="$STACK_DIR/secrets.env"
TOOLS_VENV="$STACK_CACHE/tools-venv"

PG_DB="${POSTGRES_DB:-activity_db}"
PG_USER="${POSTGRES_USER:-pipedemo}"
PG_PASSWORD="${POSTGRES_PASSWORD:-pipedemo}"

# Pinned together: Debezium 3.7 is built and tested against Kafka 4.3 (see docs/stack.md, "Versions").
KAFKA_VERSION=4.3.1
DEBEZIUM_VERSION=3.7.1.Final
# The MongoDB-compatible server (see docs/stack.md, "Why SecantusDB"). GPL-2.0: it runs as a separate
# process and is never linked into pipedemo.
SECANTUS_CRATE=secantus-mdb
SECANTUS_VERSION=0.5.3-beta.196

# Knobs for running a second, differently configured service next to the stack (the tests use
# them to prove pipedemo's errors for a PostgreSQL without logical decoding and a Connect
# without Debezium): give it its own STACK_DIR and port as well.
PG_WAL_LEVEL="${PG_WAL_LEVEL:-logical}"
CONNECT_GROUP_ID="${CONNECT_GROUP_ID:-pipedemo-connect}"

READY_TIMEOUT="${STACK_READY_TIMEOUT:-180}"
SERVICES=(postgres kafka connect mongo)

KAFKA_HOME="$STACK_CACHE/kafka-$KAFKA_VERSION"
PLUGIN_DIR="$STACK_CACHE/plugins-$DEBEZIUM_VERSION"
CONNECT_PLUGIN_PATH="${CONNECT_PLUGIN_PATH:-$PLUGIN_DIR}"
SECANTUS_HOME="$STACK_CACHE/secantus-$SECANTUS_VERSION"
LOG_DIR="$STACK_DIR/logs"
RUN_DIR="$STACK_DIR/run"

say() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

port_of() {
  case "$1" in
    postgres) echo "$PG_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;;
    connect) echo "$CONNECT_PORT" ;;
    mongo) echo "$MONGO_PORT" ;;
    *) die "unknown service '$1' (services: ${SERVICES[*]})" ;;
  esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who holds a TCP port, for the "port already taken" message.
port_owner() {
  ss -H -ltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\),pid=\([0-9]*\).*/\1 pid \2/p' | head -n 1
}

pid_file() { echo "$RUN_DIR/$1.pid"; }

running_pid() {
  local f pid want
  f="$(pid_file "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A pid file outlives its process and the pid may since belong to another program: only a
  # process of this stack (its command line names the stack's directory) is this service.
  want="$STACK_DIR/"
  [[ "$1" == postgres ]] && want="$(pg_home)/"
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want" || return 1
  echo "$pid"
}

# Where PostgreSQL keeps its data, socket and log. Started by root, PostgreSQL runs as the
# `postgres` user, which must reach that directory: a checkout in a private home directory
# (root's is mode 700) is out of its reach, so the data then lives under /var/lib instead.
pg_home() {
  local home="$STACK_DIR/postgres"
  if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
    mkdir -p "$STACK_DIR"
    if ! runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
      home="/var/lib/pipedemo-stack/$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)/postgres"
    fi
  fi
  echo "$home"
}

JAVA_EXTRA=()

elapsed_since() { echo $(($(date +%s%N) / 1000000 - $1)); }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------------------------------------
# Installation (idempotent; each part leaves a marker only once complete)
# ---------------------------------------------------------------------------------------------

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "missing packages: $* (and no apt-get to install them); install them and retry"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  if [[ $apt_updated -eq 0 ]]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/postgres" ]] && { echo "$d"; return 0; }
  done
  return 1
}

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

install_system() {
  local pkgs=()
  pg_bindir >/dev/null || pkgs+=(postgresql postgresql-contrib)
  command -v curl >/dev/null || pkgs+=(curl)
  command -v ss >/dev/null || pkgs+=(iproute2)
  if ! command -v java >/dev/null || [[ "$(java_major)" -lt 17 ]]; then pkgs+=(openjdk-17-jre-headless); fi
  command -v mvn >/dev/null || pkgs+=(maven)
  command -v cmake >/dev/null || pkgs+=(cmake)
  command -v cc >/dev/null || pkgs+=(build-essential)
  [[ ${#pkgs[@]} -eq 0 ]] || apt_install "${pkgs[@]}"
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first; the MongoDB-compatible server is built from crates.io"
}

maven_copy() { # pom-dir output-dir
  local t0
  t0=$(now_ms)
  rm -rf "$2.tmp"
  # Debian's Maven 3.8 writes `\e[0m` resets in batch mode with colour off: stripped here.
  (cd "$1" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$2.tmp" 2>&1 \
    | sed -u 's/\x1b\[[0-9;]*[A-Za-z]//g') >&2 \
    || die "Maven could not resolve $(basename "$1") jars (see output above); check that Maven Central is reachable"
  rm -rf "$2" && mv "$2.tmp" "$2"
  say "resolved $(basename "$1") ($(ls "$2" | wc -l) jars) in $(elapsed_since "$t0") ms"
}

# The cache is keyed by the pom's content, so editing a pom re-resolves on the next `up`.
pom_stamp() { sha256sum "$REPO/scripts/stack/$1/pom.xml" | cut -d' ' -f1; }

install_kafka() {
  [[ "$(cat "$KAFKA_HOME/.complete" 2>/dev/null)" == "$(pom_stamp kafka)" ]] && return 0
  mkdir -p "$KAFKA_HOME"
  maven_copy "$REPO/scripts/stack/kafka" "$KAFKA_HOME/libs"
  pom_stamp kafka >"$KAFKA_HOME/.complete"
}

install_debezium() {
  [[ "$(cat "$PLUGIN_DIR/.complete" 2>/dev/null)" == "$(pom_stamp debezium)" ]] && return 0
  mkdir -p "$PLUGIN_DIR"
  # One directory per plugin under plugin.path, as Connect expects.
  maven_copy "$REPO/scripts/stack/debezium" "$PLUGIN_DIR/debezium-connector-postgres"
  pom_stamp debezium >"$PLUGIN_DIR/.complete"
}

install_mongo() {
  [[ -x "$SECANTUS_HOME/bin/secantusd-rs" ]] && return 0
  local t0
  t0=$(now_ms)
  say "building $SECANTUS_CRATE $SECANTUS_VERSION from crates.io (first time only, several minutes)"
  CARGO_TARGET_DIR="$STACK_CACHE/cargo-target" \
    cargo install --quiet --locked --ignore-rust-version "$SECANTUS_CRATE" --version "$SECANTUS_VERSION" \
    --root "$SECANTUS_HOME" >&2 \
    || die "building $SECANTUS_CRATE failed (see output above); it needs cmake and a C compiler"
  rm -rf "$STACK_CACHE/cargo-target"
  [[ -x "$SECANTUS_HOME/bin/secantusd-rs" ]] || die "$SECANTUS_CRATE installed no secantusd-rs binary"
  say "built secantusd-rs in $(elapsed_since "$t0") ms"
}

# The secured stack's CA, server certificate (for 127.0.0.1 and localhost) and passwords.
# Made once per STACK_DIR; `down` keeps them, deleting the directory makes new ones.
install_secure_material() {
  [[ -f "$TLS_DIR/.complete" && -f "$SECRETS" ]] || make_secure_material
  # A client certificate for mutual TLS with Kafka's SSL listener.
  if [[ ! -f "$TLS_DIR/client.pem" ]]; then
    (umask 077 && openssl req -newkey rsa:2048 -nodes -subj "/CN=pipedemo-client" \
      -keyout "$TLS_DIR/client.key" -out "$TLS_DIR/client.csr" >/dev/null 2>&1) || die "making the client key failed"
    printf 'extendedKeyUsage=clientAuth\n' >"$TLS_DIR/client.ext"
    openssl x509 -req -in "$TLS_DIR/client.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
      -days 3650 -extfile "$TLS_DIR/client.ext" -out "$TLS_DIR/client.pem" >/dev/null 2>&1 || die "signing the client certificate failed"
    rm -f "$TLS_DIR/client.csr" "$TLS_DIR/client.ext"
    chmod 600 "$TLS_DIR/client.key"
  fi
  # Connect's REST server (Jetty) reads PKCS#12, not PEM.
  if [[ ! -f "$TLS_DIR/server.p12" ]]; then
    grep -q '^KEYSTORE_PASSWORD=' "$SECRETS" || echo "KEYSTORE_PASSWORD=$(openssl rand -hex 16)" >>"$SECRETS"
    load_secrets
    # The password through the environment, never the command line; the file made private.
    (umask 077 && STACK_KEYSTORE_PASSWORD="$KEYSTORE_PASSWORD" openssl pkcs12 -export \
      -in "$TLS_DIR/server.pem" -inkey "$TLS_DIR/server.key" -name server \
      -out "$TLS_DIR/server.p12" -passout env:STACK_KEYSTORE_PASSWORD) || die "making the PKCS#12 keystore failed"
  fi
}

make_secure_material() {
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  local t="$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pipedemo test CA" \
    -keyout "$t/ca.key" -out "$t/ca.pem" >/dev/null 2>&1 || die "making the CA failed"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$t/server.key" -out "$t/server.csr" >/dev/null 2>&1 || die "making the server key failed"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$t/server.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -days 3650 -extfile "$t/server.ext" -out "$t/server.pem" >/dev/null 2>&1 || die "signing the server certificate failed"
  # Kafka and Connect read one PEM with the (PKCS#8, unencrypted) key and the chain.
  cat "$t/server.key" "$t/server.pem" >"$t/server-keystore.pem"
  rm -f "$t/server.csr" "$t/server.ext"
  chmod 600 "$t"/*.key "$t/server-keystore.pem"
  chmod 644 "$t/ca.pem" "$t/server.pem"
  chmod 755 "$t"
  local old_umask
  old_umask=$(umask)
  umask 077
  {
    echo "PG_PASSWORD=$(openssl rand -hex 16)"
    echo "KAFKA_ADMIN_PASSWORD=$(openssl rand -hex 16)"
    echo "KAFKA_CONNECT_PASSWORD=$(openssl rand -hex 16)"
    echo "KAFKA_PIPEDEMO_PASSWORD=$(openssl rand -hex 16)"
    echo "CONNECT_PASSWORD=$(openssl rand -hex 16)"
    echo "MONGO_PASSWORD=$(openssl rand -hex 16)"
  } >"$SECRETS"
  umask "$old_umask"
  touch "$t/.complete"
  say "made a CA, a server certificate and passwords in $STACK_DIR"
}

# pymongo, to create the secured MongoDB-protocol server's user (there is no shell client).
install_tools_venv() {
  [[ -x "$TOOLS_VENV/bin/python" ]] && "$TOOLS_VENV/bin/python" -c 'import pymongo' 2>/dev/null && return 0
  command -v python3 >/dev/null || apt_install python3
  # Debian splits venv (and the pip it seeds) into python3-venv.
  if ! python3 -m venv "$TOOLS_VENV" >&2; then
    rm -rf "$TOOLS_VENV"
    apt_install python3-venv
    python3 -m venv "$TOOLS_VENV" >&2 || die "python3 -m venv failed even with python3-venv installed"
  fi
  "$TOOLS_VENV/bin/pip" install -q 'pymongo==4.*' >&2 || die "pip could not install pymongo from PyPI"
}

load_secrets() {
  if [[ -f "$SECRETS" ]]; then
    # shellcheck disable=SC1090
    . "$SECRETS"
  fi
}

cmd_install() {
  mkdir -p "$STACK_CACHE"
  install_system
  install_kafka
  install_debezium
  install_mongo
  if [[ "$STACK_SECURE" == 1 ]]; then
    mkdir -p "$STACK_DIR"
    install_secure_material
    install_tools_venv
  fi
}

# ---------------------------------------------------------------------------------------------
# Starting and stopping
# ---------------------------------------------------------------------------------------------

# Runs a command as the unprivileged owner of the PostgreSQL cluster (initdb refuses root).
as_pg() {
  # From `/`: the caller's directory may be one the postgres user cannot enter.
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

fail_service() { # service reason
  local log="$LOG_DIR/$1.log"
  printf '[stack] error: %s did not start: %s\n' "$1" "$2" >&2
  if [[ -f "$log" ]]; then
    printf '[stack] last lines of %s:\n' "$log" >&2
    tail -n 25 "$log" | sed 's/^/    /' >&2
  fi
  return 1
}

check_port_free() { # service port
  if port_open "$2"; then
    local owner
    owner="$(port_owner "$2")"
    local var
    case "$1" in postgres) var=PG_PORT ;; kafka) var=KAFKA_PORT ;; connect) var=CONNECT_PORT ;; *) var=MONGO_PORT ;; esac
    fail_service "$1" "port $2 is already in use${owner:+ by $owner}; stop that process, or set $var to a free port (and pipedemo's matching setting)"
    return 1
  fi
}

wait_until() { # service description command...
  local svc="$1" what="$2" deadline
  shift 2
  deadline=$(($(date +%s) + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    # Alive, not running_pid: the pid file was just written by spawn, and until the process
    # has exec'd its program its command line is still this script's, which running_pid
    # would take for a stale pid file (mongo was reported dead while it started).
    if ! kill -0 "$(cat "$(pid_file "$svc")" 2>/dev/null)" 2>/dev/null; then
      fail_service "$svc" "the process exited while waiting for $what"
      return 1
    fi
    if [[ $(date +%s) -ge $deadline ]]; then
      fail_service "$svc" "not ready after ${READY_TIMEOUT}s (waiting for $what)"
      return 1
    fi
    sleep 0.3
  done
}

# Starts a long-running process in its own session so `down` can stop it with all its children.
spawn() { # service command...
  local svc="$1"
  shift
  setsid "$@" >>"$LOG_DIR/$svc.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$svc")"
}

start_postgres() {
  local bin home data sock pglog local_auth=trust
  home="$(pg_home)"
  data="$home/data" sock="$home/run" pglog="$LOG_DIR/postgres.log"
  if [[ "$STACK_SECURE" == 1 ]]; then load_secrets; fi
  bin="$(pg_bindir)" || die "PostgreSQL is not installed; run scripts/stack.sh install"
  mkdir -p "$home" "$sock"
  if [[ "$home" != "$STACK_DIR/postgres" ]]; then
    say "PostgreSQL's data is in $home: user postgres cannot reach $STACK_DIR (a private directory above it)"
    # Beside its home, not in it: root writes, truncates and reads this file, and in a
    # directory of the postgres account's own it could be swapped for a link to any file.
    pglog="$(dirname "$home")/postgres.log"
    [[ -L "$pglog" ]] && rm -f "$pglog"
    touch "$pglog"
    ln -sfn "$pglog" "$LOG_DIR/postgres.log"
  fi
  # Over the socket, the cluster's owner only: as root that is the `postgres` user (peer);
  # otherwise the user running the stack, the only one who may open the socket (0700).
  [[ $(id -u) -eq 0 ]] && local_auth=peer
  # -h: never through a link (what the postgres account can put in its own directories).
  [[ $(id -u) -eq 0 ]] && chown -R -h postgres: "$home" && chown -h postgres: "$pglog"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    as_pg "$bin/initdb" -D "$data" -U postgres --auth-local="$local_auth" --auth-host=scram-sha-256 -E UTF8 \
      >>"$pglog" 2>&1 || { fail_service postgres "initdb failed"; return 1; }
    # Written by the cluster's owner: the data directory is that account's, and root writing
    # there would follow any link it put in place of a file.
    as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF
# pipedemo: logical decoding for Debezium, loopback only
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
unix_socket_permissions = 0700
wal_level = $PG_WAL_LEVEL
max_replication_slots = 10
max_wal_senders = 10
max_connections = 100
EOF
    printf 'host replication all 127.0.0.1/32 scram-sha-256\n' | as_pg tee -a "$data/pg_hba.conf" >/dev/null
    if [[ "$STACK_SECURE" == 1 ]]; then
      # TLS only over TCP: hostssl lines and no host lines. Root reads the key, the cluster's
      # owner writes it, created with its final mode.
      as_pg sh -c 'umask 077 && cat >"$1"' _ "$data/server.key" <"$TLS_DIR/server.key"
      as_pg sh -c 'umask 022 && cat >"$1"' _ "$data/server.crt" <"$TLS_DIR/server.pem"
      as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
      as_pg tee "$data/pg_hba.conf" >/dev/null <<EOF
local all postgres $local_auth
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl replication all 127.0.0.1/32 scram-sha-256
EOF
    fi
  fi
  # pg_ctl daemonizes postgres; its pid is read back from postmaster.pid.
  as_pg "$bin/pg_ctl" -D "$data" -l "$pglog" -o "-p $PG_PORT -k $sock" -w -t 60 start \
    >/dev/null 2>&1 || { fail_service postgres "pg_ctl start failed"; return 1; }
  # Read as its owner, and only a number: root later signals the pid it records.
  local pid
  pid="$(as_pg head -n 1 "$data/postmaster.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || { fail_service postgres "postmaster.pid holds no pid"; return 1; }
  echo "$pid" >"$(pid_file postgres)"
  # The demo's role and database; re-running is harmless. CREATEDB: each stack test makes a
  # database of its own (its world) so that tests run at the same time.
  local psql=("$bin/psql" -h "$sock" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
  # The password reaches psql through its environment (\getenv), never its command line.
  STACK_PG_PASSWORD="$PG_PASSWORD" as_pg "${psql[@]}" -v user="$PG_USER" >>"$pglog" 2>&1 <<'SQL' || { fail_service postgres "creating the demo role failed"; return 1; }
\getenv pass STACK_PG_PASSWORD
SELECT format('CREATE ROLE %I LOGIN REPLICATION CREATEDB PASSWORD %L', :'user', :'pass')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN REPLICATION CREATEDB PASSWORD %L', :'user', :'pass') \gexec
SQL
  if [[ "$(as_pg "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    as_pg "${psql[@]}" -c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\"" >>"$pglog" 2>&1 \
      || { fail_service postgres "creating database $PG_DB failed"; return 1; }
  fi
}

stop_postgres() {
  local bin data
  data="$(pg_home)/data"
  bin="$(pg_bindir)" || return 0
  [[ -f "$data/postmaster.pid" ]] && as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  rm -f "$(pid_file postgres)"
}

# Sets JAVA_CMD to a JVM command line over the Kafka jars (an array: the classpath has a '*').
# Every pause goes to logs/NAME-gc.log (`pipedemo capacity` reads them to tell a GC pause from
# another stall). JVM_GC_OPTS replaces the collector settings, for measuring another (the
# tests give the stacks they start for one test a lighter JVM this way).
java_cmd() { # heap log4j-name main-class args...
  local heap="$1" name="$2" gc
  shift 2
  read -r -a gc <<<"${JVM_GC_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20}"
  JAVA_CMD=(java "-Xms${heap}" "-Xmx${heap}" "${gc[@]}" -Djava.awt.headless=true
    "-Xlog:gc,safepoint:file=$LOG_DIR/$name-gc.log:time,uptime:filecount=2,filesize=20m"
    "-Dlog4j2.configurationFile=$STACK_DIR/conf/log4j2-$name.properties"
    "${JAVA_EXTRA[@]}" -cp "$KAFKA_HOME/libs/*" "$@")
}

write_log4j() { # name
  cat >"$STACK_DIR/conf/log4j2-$1.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.kafkacore.name = kafka
logger.kafkacore.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.runtime.name = org.apache.kafka.connect.runtime
logger.runtime.level = INFO
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.debezium.name = io.debezium
logger.debezium.level = INFO
EOF
}

start_kafka() {
  local data="$STACK_DIR/kafka/data" conf="$STACK_DIR/conf/kafka.properties"
  install_kafka
  mkdir -p "$data"
  write_log4j kafka
  local listener=PLAINTEXT listeners advertised map
  listeners="PLAINTEXT://127.0.0.1:$KAFKA_PORT"
  map="PLAINTEXT:PLAINTEXT"
  if [[ "$STACK_SECURE" == 1 ]]; then
    listener=SASL_SSL
    listeners="SASL_SSL://127.0.0.1:$KAFKA_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT"
    map="SASL_SSL:SASL_SSL,SSL:SSL"
  fi
  advertised="$listeners"
  # Request threads sized for the two cores this stack shares with four other processes, not
  # Kafka's server defaults (3 network, 8 I/O): at 1,000 ev/s Kafka spent 0.82x the CPU per
  # event (0.78-0.89), at the same latency (docs/performance.md). docker-compose.yml matches.
  cat >"$conf" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$listeners,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=$listener
listener.security.protocol.map=CONTROLLER:PLAINTEXT,$map
log.dirs=$data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.network.threads=1
num.io.threads=2
EOF
  local scram=()
  if [[ "$STACK_SECURE" == 1 ]]; then
    load_secrets
    # Private before a password goes in.
    chmod 600 "$conf"
    # Clients: SASL_SSL with SCRAM-SHA-512, and an SSL listener that requires a client certificate
    # (mutual TLS). No plaintext listener; the KRaft controller listener stays on loopback.
    cat >>"$conf" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.ssl.ssl.client.auth=required
EOF
    chmod 600 "$conf"
    # SCRAM users exist from the first start (KIP-900), before any client connects.
    scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
      --add-scram "SCRAM-SHA-512=[name=connect,password=$KAFKA_CONNECT_PASSWORD]"
      --add-scram "SCRAM-SHA-512=[name=pipedemo,password=$KAFKA_PIPEDEMO_PASSWORD]")
  fi
  if [[ ! -f "$data/meta.properties" ]]; then
    java_cmd 256m kafka kafka.tools.StorageTool
    # The SCRAM passwords go in a java @argfile (mode 600, removed after), not the command line.
    local argfile="$STACK_DIR/conf/kafka-format.args" arg
    (
      umask 077
      for arg in "${JAVA_CMD[@]:1}" format -t "$(tr -d - </proc/sys/kernel/random/uuid | head -c 22)" \
        -c "$conf" --ignore-formatted "${scram[@]}"; do
        arg="${arg//\\/\\\\}"
        printf '"%s"\n' "${arg//\"/\\\"}"
      done >"$argfile"
    )
    java "@$argfile" >>"$LOG_DIR/kafka.log" 2>&1 || { rm -f "$argfile"; fail_service kafka "formatting storage failed"; return 1; }
    rm -f "$argfile"
  fi
  java_cmd "${KAFKA_HEAP:-768m}" kafka kafka.Kafka "$conf"
  spawn kafka "${JAVA_CMD[@]}"
  wait_until kafka "port $KAFKA_PORT and 'Kafka Server started'" \
    bash -c "grep -q 'Kafka Server started' '$LOG_DIR/kafka.log' && (exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT)"
}

connect_curl() { # path
  if [[ "$STACK_SECURE" == 1 ]]; then
    load_secrets
    # The credentials through a config on a pipe, not the command line.
    curl -fsS --cacert "$TLS_DIR/ca.pem" -K <(printf 'user = "pipedemo:%s"\n' "$CONNECT_PASSWORD") \
      "https://127.0.0.1:$CONNECT_PORT$1"
  else
    curl -fsS "http://127.0.0.1:$CONNECT_PORT$1"
  fi
}

connect_ready() {
  local plugins
  plugins="$(connect_curl /connector-plugins 2>/dev/null)" || return 1
  # A worker given another plugin path only has to answer.
  [[ "$CONNECT_PLUGIN_PATH" != "$PLUGIN_DIR" ]] || grep -q 'io.debezium.connector.postgresql.PostgresConnector' <<<"$plugins"
}

start_connect() {
  local conf="$STACK_DIR/conf/connect.properties" storage=connect
  # Another Connect cluster must not share the stack's storage topics.
  [[ "$CONNECT_GROUP_ID" == pipedemo-connect ]] || storage="$CONNECT_GROUP_ID"
  install_kafka
  install_debezium
  write_log4j connect
  # One worker (docs/stack.md, "Connect's settings"): a worker that lost its group membership
  # (a broker frozen for 15 s) gets its connector back at once when it rejoins, instead of
  # after scheduled.rebalance.max.delay.ms (5 min by default), Connect's wait for a departed
  # worker of a cluster to come back.
  cat >"$conf" <<EOF
bootstrap.servers=127.0.0.1:$KAFKA_PORT
group.id=$CONNECT_GROUP_ID
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
config.storage.topic=$storage-configs
offset.storage.topic=$storage-offsets
status.storage.topic=$storage-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.flush.interval.ms=1000
scheduled.rebalance.max.delay.ms=0
# A killed worker's membership holds its connector until its session ends; the restarted worker
# waited out the rest of 10 s before its task started. 6 s is the broker's least.
session.timeout.ms=6000
heartbeat.interval.ms=2000
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
plugin.path=$CONNECT_PLUGIN_PATH
# Every plugin here has a ServiceLoader manifest (Connect says so when told to scan): scanning
# the jars instead took 8 of the 12 s a restart of Connect took.
plugin.discovery=service_load
topic.creation.enable=true
EOF
  if [[ "$STACK_SECURE" == 1 ]]; then
    load_secrets
    local jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"connect\" password=\"$KAFKA_CONNECT_PASSWORD\";"
    sed -i "s#^listeners=http://.*#listeners=https://127.0.0.1:$CONNECT_PORT#" "$conf"
    # Private before a password goes in.
    chmod 600 "$conf"
    {
      echo "rest.advertised.listener=https"
      echo "listeners.https.ssl.keystore.type=PKCS12"
      echo "listeners.https.ssl.keystore.location=$TLS_DIR/server.p12"
      echo "listeners.https.ssl.keystore.password=$KEYSTORE_PASSWORD"
      echo "listeners.https.ssl.key.password=$KEYSTORE_PASSWORD"
      echo "rest.extension.classes=org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension"
      # The worker and the clients it makes for connectors (producer, consumer, admin).
      local p
      for p in "" producer. consumer. admin.; do
        echo "${p}security.protocol=SASL_SSL"
        echo "${p}sasl.mechanism=SCRAM-SHA-512"
        echo "${p}sasl.jaas.config=$jaas"
        echo "${p}ssl.truststore.type=PEM"
        echo "${p}ssl.truststore.location=$TLS_DIR/ca.pem"
      done
    } >>"$conf"
    chmod 600 "$conf"
    (umask 077 && printf 'pipedemo: %s\n' "$CONNECT_PASSWORD" >"$STACK_DIR/conf/connect-users.properties")
    chmod 600 "$STACK_DIR/conf/connect-users.properties"
    cat >"$STACK_DIR/conf/connect-jaas.conf" <<EOF
KafkaConnect {
  org.apache.kafka.connect.rest.basic.auth.extension.PropertyFileLoginModule required
  file="$STACK_DIR/conf/connect-users.properties";
};
EOF
    JAVA_EXTRA=("-Djava.security.auth.login.config=$STACK_DIR/conf/connect-jaas.conf")
  fi
  java_cmd "${CONNECT_HEAP:-768m}" connect org.apache.kafka.connect.cli.ConnectDistributed "$conf"
  JAVA_EXTRA=()
  spawn connect "${JAVA_CMD[@]}"
  wait_until connect "REST on $CONNECT_PORT listing the Debezium PostgreSQL plugin" connect_ready
}

start_mongo() {
  install_mongo
  mkdir -p "$STACK_DIR/mongo/data"
  local secure=()
  if [[ "$STACK_SECURE" == 1 ]]; then
    secure=(--auth --tls-cert-file "$TLS_DIR/server.pem" --tls-key-file "$TLS_DIR/server.key")
  fi
  # As compose's mongo:8.0 runs: a standalone server, no replica set, so no oplog. The
  # server's default (a one-node replica set) writes every change a second time to an oplog
  # and prunes it past 100,000 entries: ~10 % more of its CPU per event and a p99 at 2,000
  # ev/s of 21-30 ms instead of 17-19 (docs/performance.md); pipedemo reads no change stream.
  SECANTUS_DISABLE_OPLOG=1 spawn mongo "$SECANTUS_HOME/bin/secantusd-rs" --host 127.0.0.1 \
    --port "$MONGO_PORT" --standalone --storage-path "$STACK_DIR/mongo/data" "${secure[@]}"
  wait_until mongo "port $MONGO_PORT" port_open "$MONGO_PORT" || return 1
  [[ "$STACK_SECURE" == 1 ]] || return 0
  install_tools_venv
  load_secrets
  # The first user comes in through the localhost exception; later starts find it.
  MONGO_PORT="$MONGO_PORT" MONGO_PASSWORD="$MONGO_PASSWORD" CA="$TLS_DIR/ca.pem" \
    "$TOOLS_VENV/bin/python" - >>"$LOG_DIR/mongo.log" 2>&1 <<'PY' || { fail_service mongo "creating the pipedemo user failed"; return 1; }
import os, pymongo
port, pw, ca = int(os.environ["MONGO_PORT"]), os.environ["MONGO_PASSWORD"], os.environ["CA"]
def client(**auth):
    return pymongo.MongoClient("127.0.0.1", port, tls=True, tlsCAFile=ca, directConnection=True,
                               serverSelectionTimeoutMS=10000, **auth)
try:
    client(username="pipedemo", password=pw, authSource="admin").admin.command("listDatabases")
    print("pipedemo user present")
except pymongo.errors.OperationFailure:
    client().admin.command("createUser", "pipedemo", pwd=pw, roles=[{"role": "root", "db": "admin"}])
    print("pipedemo user created")
PY
}

stop_spawned() { # service
  local pid i
  pid="$(running_pid "$1")" || { rm -f "$(pid_file "$1")"; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$1 did not stop in 30 s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$1")"
}

start_one() {
  local svc="$1" port t0
  port="$(port_of "$svc")"
  if running_pid "$svc" >/dev/null; then
    say "$svc already running on port $port"
    return 0
  fi
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$STACK_DIR/conf"
  check_port_free "$svc" "$port" || return 1
  : >"$LOG_DIR/$svc.log"
  t0=$(now_ms)
  "start_$svc" || { stop_one "$svc"; return 1; }
  say "$svc up on 127.0.0.1:$port in $(elapsed_since "$t0") ms"
}

stop_one() {
  case "$1" in
    postgres) stop_postgres ;;
    *) stop_spawned "$1" ;;
  esac
}

# A crash, for fault tests: no clean shutdown, nothing flushed.
kill_one() {
  local pid bin
  case "$1" in
    postgres)
      bin="$(pg_bindir)" || return 0
      as_pg "$bin/pg_ctl" -D "$(pg_home)/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
      rm -f "$(pid_file postgres)"
      ;;
    *)
      pid="$(running_pid "$1")" || return 0
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      rm -f "$(pid_file "$1")"
      ;;
  esac
}

# Every process of a running service: PostgreSQL's postmaster and its backends, or the process
# group a spawned service leads.
service_pids() {
  local pid
  pid="$(running_pid "$1")" || return 1
  if [[ "$1" == postgres ]]; then
    echo "$pid"
    pgrep -P "$pid" || true
  else
    pgrep -g "$pid" || echo "$pid"
  fi
}

signal_one() { # service SIGNAL
  local pids
  pids="$(service_pids "$1")" || die "$1 is not running under this stack"
  # shellcheck disable=SC2086
  kill "-$2" $pids
}

cmd_up() {
  local started=() svc
  cmd_install
  for svc in "${SERVICES[@]}"; do
    running_pid "$svc" >/dev/null || started+=("$svc")
    if ! start_one "$svc"; then
      # Leave nothing behind that this call started.
      local i
      for ((i = ${#started[@]} - 1; i >= 0; i--)); do stop_one "${started[$i]}"; done
      die "stack not started ($svc failed); fix the cause above and run scripts/stack.sh up again"
    fi
  done
  cmd_status
}

cmd_down() {
  local i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    stop_one "${SERVICES[$i]}"
    say "${SERVICES[$i]} stopped"
  done
}

cmd_status() {
  local svc pid port state rc=0 rss
  printf '%-9s %-6s %-5s %-8s %s\n' SERVICE PORT STATE PID RSS_MB
  for svc in "${SERVICES[@]}"; do
    port="$(port_of "$svc")"
    rss=-
    if pid="$(running_pid "$svc")" && port_open "$port"; then
      state=up
      rss=$(($(ps -o rss= -p "$pid" | tr -d ' ') / 1024))
    else
      state=down
      pid=-
      rc=1
    fi
    if [[ $state == up && $svc == connect ]] && ! connect_ready; then state=starting; rc=1; fi
    printf '%-9s %-6s %-5s %-8s %s\n' "$svc" "$port" "$state" "$pid" "$rss"
  done
  return $rc
}

cmd_logs() {
  local svc
  if [[ $# -gt 0 ]]; then
    port_of "$1" >/dev/null
    tail -n "${LINES_TO_SHOW:-100}" "$LOG_DIR/$1.log"
  else
    for svc in "${SERVICES[@]}"; do
      printf '==> %s <==\n' "$svc"
      tail -n 20 "$LOG_DIR/$svc.log" 2>/dev/null || echo "(no log)"
    done
  fi
}

cmd_env() {
  if [[ "$STACK_SECURE" == 1 ]]; then
    [[ -f "$SECRETS" ]] || die "the secured stack is not installed: run STACK_SECURE=1 scripts/stack.sh up"
    load_secrets
    # One NAME=value a line; the MongoDB URI is quoted for its '&'.
    cat <<EOF
POSTGRES_HOST=127.0.0.1
POSTGRES_PORT=$PG_PORT
POSTGRES_DB=$PG_DB
POSTGRES_USER=$PG_USER
POSTGRES_PASSWORD=$PG_PASSWORD
POSTGRES_SSLMODE=verify-full
POSTGRES_SSLROOTCERT=$TLS_DIR/ca.pem
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=pipedemo
KAFKA_SASL_PASSWORD=$KAFKA_PIPEDEMO_PASSWORD
KAFKA_SSL_CA_LOCATION=$TLS_DIR/ca.pem
CONNECT_URL=https://127.0.0.1:$CONNECT_PORT
CONNECT_CA_FILE=$TLS_DIR/ca.pem
CONNECT_USERNAME=pipedemo
CONNECT_PASSWORD=$CONNECT_PASSWORD
MONGODB_URI='mongodb://pipedemo:$MONGO_PASSWORD@127.0.0.1:$MONGO_PORT/?authSource=admin&tls=true&tlsCAFile=$TLS_DIR/ca.pem'
EOF
    return 0
  fi
  cat <<EOF
POSTGRES_HOST=127.0.0.1
POSTGRES_PORT=$PG_PORT
POSTGRES_DB=$PG_DB
POSTGRES_USER=$PG_USER
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
CONNECT_URL=http://127.0.0.1:$CONNECT_PORT
MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT
STACK_DIR=$STACK_DIR
STACK_CACHE=$STACK_CACHE
EOF
}

# One of Kafka's own command-line tools against the stack's broker, e.g.
# `scripts/stack.sh kafka-tool consumer-groups --describe --group G`: what a user of the
# stack compares pipedemo's figures with.
cmd_kafka_tool() { # tool args...
  [[ $# -ge 1 ]] || die "usage: scripts/stack.sh kafka-tool consumer-groups|topics ARGS"
  [[ "$STACK_SECURE" != 1 ]] || die "kafka-tool runs against the plain stack only"
  local class
  case "$1" in
    consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    topics) class=org.apache.kafka.tools.TopicCommand ;;
    *) die "unknown Kafka tool '$1' (consumer-groups, topics)" ;;
  esac
  shift
  [[ -d "$KAFKA_HOME/libs" ]] || die "Kafka is not installed; run scripts/stack.sh install"
  java -cp "$KAFKA_HOME/libs/*" "$class" --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}

# The test runner's version: the README's test command and .ci/run use its test groups.
NEXTEST_VERSION=0.9.151

cmd_test_tools() {
  if [[ "$(cargo nextest --version 2>/dev/null | head -n 1)" != "cargo-nextest $NEXTEST_VERSION "* ]]; then
    say "installing cargo-nextest $NEXTEST_VERSION (builds from crates.io, a few minutes)"
    cargo install --quiet --locked cargo-nextest --version "$NEXTEST_VERSION" \
      --no-default-features --features default-no-update \
      || die "installing cargo-nextest failed (cargo install cargo-nextest --locked)"
  fi
  local missing=()
  command -v tmux >/dev/null || missing+=(tmux)
  [[ -x /usr/bin/prometheus ]] || missing+=(prometheus)
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "test tools present: cargo-nextest, tmux, prometheus, chromium"
    return 0
  fi
  local before
  before=" $( (pgrep -x prometheus || true) | tr '\n' ' ') "
  apt_install "${missing[@]}"
  # Debian's package may start its own Prometheus on :9090 (the test starts its own): stop
  # that one, by pid, and no Prometheus that was running before.
  local pid
  for pid in $(pgrep -x prometheus || true); do
    [[ "$before" == *" $pid "* ]] || kill "$pid" 2>/dev/null || true
  done
  say "installed ${missing[*]}"
}

usage() {
  sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd="$1"
  shift
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    install) cmd_install ;;
    env) cmd_env ;;
    test-tools) cmd_test_tools ;;
    kafka-tool) cmd_kafka_tool "$@" ;;
    start)
      [[ $# -eq 1 ]] || die "usage: scripts/stack.sh start SERVICE (${SERVICES[*]})"
      port_of "$1" >/dev/null
      start_one "$1" || die "$1 not started"
      ;;
    stop)
      [[ $# -eq 1 ]] || die "usage: scripts/stack.sh stop SERVICE (${SERVICES[*]})"
      port_of "$1" >/dev/null
      stop_one "$1"
      say "$1 stopped"
      ;;
    kill)
      [[ $# -eq 1 ]] || die "usage: scripts/stack.sh kill SERVICE (${SERVICES[*]})"
      port_of "$1" >/dev/null
      kill_one "$1"
      say "$1 killed"
      ;;
    freeze | thaw)
      [[ $# -eq 1 ]] || die "usage: scripts/stack.sh $cmd SERVICE (${SERVICES[*]})"
      port_of "$1" >/dev/null
      if [[ "$cmd" == freeze ]]; then signal_one "$1" STOP; else signal_one "$1" CONT; fi
      say "$1 $([[ $cmd == freeze ]] && echo frozen || echo thawed)"
      ;;
    -h | --help | help) usage ;;
    *) say "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
