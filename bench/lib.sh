# Shared set-up of the benchmarks that run tidepool next to PostgreSQL 15 (sourced).
# Sets BIN (a release tidepool, built unless BIN is given) and PG_BIN (Debian's
# PostgreSQL, installed if missing); start_postgres DATA PORT starts a throwaway server
# (trust auth, stopped on exit) and sets PGSQL (a psql command line for it).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidepool-release}
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin tidepool -q
  BIN="$CARGO_TARGET_DIR/release/tidepool"
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

start_postgres() {
  local data=$1 port=$2
  mkdir -p "$data" && chown postgres "$data" && chmod o+rx "$(dirname "$data")"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -o "-p $port -k /tmp" -l "$data/server.log" -w start >/dev/null
  # shellcheck disable=SC2064
  trap "runuser -u postgres -- '$PG_BIN/pg_ctl' -D '$data' -m fast stop >/dev/null || true" EXIT
  PGSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
}

# Starts the tidepool server on a new lake at $1, Postgres port $2 (stopped on exit);
# sets TP (its pid) and TPSQL (a psql command line for it) and waits until it answers.
# Flight SQL listens on port $3 when given.
start_tidepool() {
  "$BIN" --lake "$1" serve --pg-listen "127.0.0.1:$2" --http-listen 127.0.0.1:0 \
    --flight-listen "127.0.0.1:${3:-0}" 2>"$WORK/serve.log" &
  TP=$!
  # shellcheck disable=SC2064
  trap "kill $TP 2>/dev/null || true" EXIT
  TPSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$2" -U tidepool -d lake)
  for _ in $(seq 100); do "${TPSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
}

# Prints tidepool's peak RSS and stops it.
stop_tidepool() {
  echo "tidepool peak RSS: $(grep VmHWM "/proc/$TP/status" | awk '{print int($2/1024)}') MiB"
  kill "$TP"
  wait "$TP" 2>/dev/null || true
}
