#!/usr/bin/env bash
# Measures mailcanary's speed and memory on loopback, side by side with
# Postfix's smtp-sink and smtp-source in the same run:
#
#   1. send throughput: mailcanary run versus smtp-source, both into smtp-sink;
#   2. the simulator as a receiver: smtp-source into `mailcanary sim` versus
#      smtp-source into smtp-sink;
#   3. the scale of a plan: wall time and peak RSS of runs through the built-in
#      simulator, from 1,000 to 10,000 messages over 50 paths and 20 seeds.
#
# Usage: benches/send.sh [RESULTS_FILE]
#
# Every server listens on 127.0.0.1 and every client binds 127.0.0.0/8, so
# nothing leaves the machine. Each load has a fixed message count and each
# step a time limit (STEP_TIMEOUT), so the script ends by itself.
# Settings (environment): REPEAT (3), MESSAGES (2000), SESSIONS (10),
# SCALE_SIZES ("1000 5000 10000"), STEP_TIMEOUT (600 seconds).
# It prints the medians and ratios and writes every raw measurement to
# RESULTS_FILE (default: target/bench/send-<UTC time>.tsv).

set -euo pipefail

repeat=${REPEAT:-3}
messages=${MESSAGES:-2000}
sessions=${SESSIONS:-10}
scale_sizes=${SCALE_SIZES:-"1000 5000 10000"}
step_timeout=${STEP_TIMEOUT:-600}

crate=$(cd "$(dirname "$0")/.." && pwd)
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=${1:-$crate/target/bench/send-$stamp.tsv}
mkdir -p "$(dirname "$results")"
results=$(cd "$(dirname "$results")" && pwd)/$(basename "$results")
work=$(mktemp -d /tmp/mailcanary-bench.XXXXXX)
started_pids=()

cleanup() {
    for pid in "${started_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------

missing=()
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || missing+=(postfix)
[ -x /usr/bin/time ] || missing+=(time)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} with apt-get"
    # A policy-rc.d that exits with 101 keeps the package scripts from
    # starting the system Postfix. Only smtp-sink and smtp-source are used.
    own_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=yes
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$own_policy" = yes ] && rm -f /usr/sbin/policy-rc.d
fi

log "building mailcanary (cargo build --release --locked)"
(cd "$crate" && cargo build --release --locked --quiet)
mailcanary=$crate/target/release/mailcanary

# smtp-sink must drop root privileges after binding its socket.
sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)

# --- helpers ---------------------------------------------------------------

# Prints a TCP port on 127.0.0.1 that nothing accepts connections on.
free_port() {
    local port
    for port in $(shuf -i 20000-29999 -n 50); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    log "no free port found on 127.0.0.1"
    exit 1
}

# Waits until 127.0.0.1:PORT accepts connections, for at most 20 s.
wait_for_port() {
    local tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        tries=$((tries + 1))
        if [ $tries -gt 200 ]; then
            log "nothing listens on 127.0.0.1:$1 after 20 s"
            exit 1
        fi
        sleep 0.1
    done
}

now_ns() { date +%s%N; }

# Seconds between two nanosecond stamps, with millisecond precision.
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Reads the peak RSS in KiB from a `/usr/bin/time -v` output file.
peak_rss_kb() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }

# One tab-separated line per measurement.
record() { printf '%s\n' "$(IFS=$'\t'; echo "$*")" >>"$results"; }

# Starts smtp-sink on 127.0.0.1:PORT and sets sink_pid.
start_sink() {
    /usr/sbin/smtp-sink "${sink_user[@]}" "127.0.0.1:$1" 256 >>"$work/smtp-sink.log" 2>&1 &
    sink_pid=$!
    started_pids+=("$sink_pid")
    wait_for_port "$1"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Runs smtp-source and prints its wall time in seconds. Its -c counter goes
# to a log, not to the terminal.
run_source() {
    local port=$1 size=$2 to=$3
    shift 3
    local begin end
    begin=$(now_ns)
    timeout "$step_timeout" /usr/sbin/smtp-source -c "$@" -m "$messages" -s "$sessions" -l "$size" \
        -M mta10.news.example.com -f bounces@news.example.com -t "$to" "127.0.0.1:$port" >>"$work/smtp-source.log"
    end=$(now_ns)
    seconds_between "$begin" "$end"
}

# Seconds from the first attempt's start to the last attempt's end in run.json.
send_phase_seconds() {
    jq -r '
        def ts: capture("^(?<s>[^.Z]+)(?<f>\\.[0-9]+)?Z$") | ((.s + "Z") | fromdate) + ((.f // ".0") | tonumber);
        ([.attempts[].finished_at | ts] | max) - ([.attempts[].started_at | ts] | min) | . * 1000 | round / 1000
    ' "$1"
}

# --- scenarios -------------------------------------------------------------

# write_scenario FILE PATHS SEEDS COUNT DKIM(yes|no) ROUTE(host:port|simulator)
write_scenario() {
    local file=$1 paths=$2 seeds=$3 count=$4 dkim=$5 route=$6 i
    {
        cat <<EOF
[scenario]
name = "bench"
max_messages = $((paths * seeds * count))

[sender]
from = "Deliverability Control <control@news.example.com>"
mail_from = "bounces@news.example.com"
EOF
        if [ "$dkim" = yes ]; then
            cat <<EOF

[[dkim]]
domain = "news.example.com"
selector = "rsa2026"
private_key = "$crate/scenarios/keys/demo-rsa.test-key.pem"

[[dkim]]
domain = "news.example.com"
selector = "ed2026"
private_key = "$crate/scenarios/keys/demo-ed25519.test-key.pem"
EOF
        fi
        for i in $(seq 1 "$paths"); do
            printf '\n[[path]]\nname = "p%d"\npool = "bench"\nsource_ip = "127.0.0.%d"\nhelo = "mta%d.news.example.com"\n' \
                "$i" "$((100 + i))" "$i"
        done
        for i in $(seq 1 "$seeds"); do
            printf '\n[[seed]]\naddress = "seed-%d@customer-a.example.net"\n' "$i"
        done
        printf '\n[[stream]]\nname = "control"\nrole = "control"\npaths = [%s]\ncount = %d\n' \
            "$(seq -s, -f '"p%g"' 1 "$paths")" "$count"
        cat <<'EOF'
subject = "Control {run_id} via {path}"
body = """
Control message {sequence} of run {run_id}.
Path {path} in {pool}, to {seed}, sent {time}.
"""

[delivery]
rate_per_minute = 0
EOF
        if [ "$route" = simulator ]; then
            cat <<EOF
starttls = "opportunistic"

[dns]
zones = ["$crate/scenarios/zones/news.example.com.zone", "$crate/scenarios/zones/customer-a.example.net.zone"]

[simulator]
hostname = "mx1.customer-a.example.net"

[collect]
timeout = "5m"
poll_interval = "500ms"
EOF
        else
            # smtp-sink offers no STARTTLS.
            printf 'starttls = "never"\nroutes = { "customer-a.example.net" = "%s" }\n' "$route"
        fi
    } >"$file"
}

# Runs one scenario under /usr/bin/time -v and sets run_wall, run_phase (the
# send phase), run_rss (KiB), run_size (the first message's bytes) and
# run_accepted. Exit codes 0, 3 and 4 are checkpoints; 1 and 2 mean the run
# failed.
run_mailcanary() {
    local scenario=$1 runs=$2 begin end status=0 record
    rm -rf "$runs"
    begin=$(now_ns)
    timeout "$step_timeout" /usr/bin/time -v -o "$work/time.txt" \
        "$mailcanary" run "$scenario" --runs-dir "$runs" --no-preflight >"$work/run.out" 2>"$work/run.err" || status=$?
    end=$(now_ns)
    if [ "$status" != 0 ] && [ "$status" != 3 ] && [ "$status" != 4 ]; then
        log "mailcanary run $scenario failed with exit code $status:"
        tail -20 "$work/run.err" >&2
        exit 1
    fi
    record=$(echo "$runs"/*/run.json)
    run_wall=$(seconds_between "$begin" "$end")
    run_phase=$(send_phase_seconds "$record")
    run_rss=$(peak_rss_kb "$work/time.txt")
    run_size=$(jq '.messages[0].size' "$record")
    run_accepted=$(jq '.totals.accepted' "$record")
}

printf 'figure\tsubject\trepetition\tmessages\twall_s\tsend_phase_s\tmessages_per_s\tpeak_rss_kb\tmessage_bytes\n' >"$results"
log "raw results: $results"
log "machine: $(nproc) cores, $(lscpu | awk -F': +' '/Model name/ { print $2; exit }')"

# --- 1. send throughput ----------------------------------------------------

sink_port=$(free_port)
start_sink "$sink_port"
route="127.0.0.1:$sink_port"
paths=$sessions
per_path_seeds=20
count=$((messages / paths / per_path_seeds))
if [ $((paths * per_path_seeds * count)) != "$messages" ]; then
    log "MESSAGES ($messages) must be a multiple of SESSIONS x $per_path_seeds"
    exit 1
fi
write_scenario "$work/send-signed.toml" "$paths" "$per_path_seeds" "$count" yes "$route"
write_scenario "$work/send-unsigned.toml" "$paths" "$per_path_seeds" "$count" no "$route"

# One short run gives the size of a signed message, so smtp-source sends
# about as many bytes per message.
write_scenario "$work/probe.toml" 1 1 1 yes "$route"
run_mailcanary "$work/probe.toml" "$work/runs-probe"
size=$run_size
log "signed message size: $size bytes; smtp-source sends -l $size plus its own few headers"

declare -A wall send_rate
for rep in $(seq 1 "$repeat"); do
    for variant in signed unsigned; do
        run_mailcanary "$work/send-$variant.toml" "$work/runs-$variant"
        w=$run_wall phase=$run_phase rss=$run_rss bytes=$run_size accepted=$run_accepted
        if [ "$accepted" != "$messages" ]; then
            log "mailcanary ($variant) had $accepted of $messages messages accepted by smtp-sink"
            exit 1
        fi
        record send "mailcanary-$variant" "$rep" "$messages" "$w" "$phase" "$(rate "$messages" "$w")" "$rss" "$bytes"
        wall[mailcanary-$variant]+="$w "
        send_rate[mailcanary-$variant]+="$(rate "$messages" "$phase") "
        log "send rep $rep mailcanary $variant: ${w}s wall, ${phase}s sending, ${rss} KiB peak"
    done
    w=$(run_source "$sink_port" "$size" seed-1@customer-a.example.net)
    record send smtp-source "$rep" "$messages" "$w" "$w" "$(rate "$messages" "$w")" "" "$size"
    wall[smtp-source]+="$w "
    log "send rep $rep smtp-source (one connection per message): ${w}s"
    w=$(run_source "$sink_port" "$size" seed-1@customer-a.example.net -d)
    record send smtp-source-reuse "$rep" "$messages" "$w" "$w" "$(rate "$messages" "$w")" "" "$size"
    wall[smtp-source-reuse]+="$w "
    log "send rep $rep smtp-source -d (connections reused): ${w}s"
done
stop_pid "$sink_pid"

# --- 2. the simulator as a receiver ----------------------------------------

cat >"$work/policy.toml" <<EOF
[simulator]
hostname = "mx1.customer-a.example.net"
domains = ["customer-a.example.net"]
default = "accept"

[dns]
zones = ["$crate/scenarios/zones/news.example.com.zone", "$crate/scenarios/zones/customer-a.example.net.zone"]
EOF
sink_port=$(free_port)
start_sink "$sink_port"
declare -A receive
sim_rss=()
for rep in $(seq 1 "$repeat"); do
    w=$(run_source "$sink_port" 1000 seed-1@customer-a.example.net)
    record receive smtp-sink "$rep" "$messages" "$w" "$w" "$(rate "$messages" "$w")" "" 1000
    log "receive rep $rep: smtp-sink ${w}s"
    receive[smtp-sink]+="$w "

    sim_port=$(free_port)
    rm -rf "$work/sim-maildir"
    /usr/bin/time -v -o "$work/sim-time.txt" \
        "$mailcanary" sim --policy "$work/policy.toml" --listen "127.0.0.1:$sim_port" --maildir "$work/sim-maildir" \
        2>"$work/sim.err" &
    time_pid=$!
    started_pids+=("$time_pid")
    wait_for_port "$sim_port"
    w=$(run_source "$sim_port" 1000 seed-1@customer-a.example.net)
    # The simulator stops on SIGINT; GNU time passes the exit through.
    sim_pid=$(pgrep -P "$time_pid")
    kill -INT "$sim_pid"
    wait "$time_pid" || true
    delivered=$(find "$work/sim-maildir" -path '*/new/*' -type f | wc -l)
    if [ "$delivered" != "$messages" ]; then
        log "the simulator delivered $delivered of $messages messages"
        exit 1
    fi
    rss=$(peak_rss_kb "$work/sim-time.txt")
    record receive mailcanary-sim "$rep" "$messages" "$w" "$w" "$(rate "$messages" "$w")" "$rss" 1000
    receive[mailcanary-sim]+="$w "
    sim_rss+=("$rss")
    log "receive rep $rep: mailcanary sim ${w}s, ${rss} KiB peak"
done
stop_pid "$sink_pid"

# Postfix as a receiver, where the integration stack can run (root, Debian):
# the stack's Postfix checks each message with OpenDKIM, OpenDMARC and
# policyd-spf and delivers it over LMTP into Dovecot. POSTFIX=0 skips it.
postfix_walls=()
if [ "${POSTFIX:-1}" = 1 ] && [ "$(id -u)" = 0 ] && [ -x "$crate/tests/stack/stack.sh" ]; then
    stack_dir=$(mktemp -u /tmp/mailcanary-bench-stack.XXXXXX)
    # The daemons keep the script's stdout open, so their output goes to a file.
    if "$crate/tests/stack/stack.sh" start "$stack_dir" >"$work/stack.log" 2>&1; then
        # shellcheck disable=SC1091 # written by stack.sh
        stack_port=$(. "$stack_dir/stack.env" && echo "$SMTP_PORT")
        stack_seed=$(. "$stack_dir/stack.env" && echo "pp-seed-1@$SEED_DOMAIN")
        for rep in $(seq 1 "$repeat"); do
            w=$(run_source "$stack_port" 1000 "$stack_seed")
            record receive postfix-stack "$rep" "$messages" "$w" "$w" "$(rate "$messages" "$w")" "" 1000
            postfix_walls+=("$w")
            log "receive rep $rep: Postfix with milters ${w}s"
        done
        "$crate/tests/stack/stack.sh" stop "$stack_dir" >>"$work/stack.log" 2>&1 || true
    else
        log "the integration stack did not start (see $work/stack.log); Postfix is not measured"
    fi
fi

# --- 3. scale of a plan ----------------------------------------------------

declare -A scale_wall scale_rss
for total in $scale_sizes; do
    write_scenario "$work/scale-$total.toml" 50 20 $((total / 1000)) yes simulator
    for rep in $(seq 1 "$repeat"); do
        run_mailcanary "$work/scale-$total.toml" "$work/runs-scale"
        w=$run_wall phase=$run_phase rss=$run_rss bytes=$run_size accepted=$run_accepted
        if [ "$accepted" != "$total" ]; then
            log "the simulator accepted $accepted of $total messages"
            exit 1
        fi
        record scale "mailcanary-$total" "$rep" "$total" "$w" "$phase" "$(rate "$total" "$w")" "$rss" "$bytes"
        scale_wall[$total]+="$w "
        scale_rss[$total]+="$rss "
        log "scale $total rep $rep: ${w}s wall, ${phase}s sending, ${rss} KiB peak"
    done
done

# --- summary ---------------------------------------------------------------

# shellcheck disable=SC2086 # the arrays hold space-separated numbers
{
    m_signed=$(median ${wall[mailcanary-signed]})
    m_unsigned=$(median ${wall[mailcanary-unsigned]})
    m_source=$(median ${wall[smtp-source]})
    m_reuse=$(median ${wall[smtp-source-reuse]})
    echo "send throughput, $messages messages over $sessions connections into smtp-sink (median of $repeat):"
    printf '  %-44s %7.1f msg/s (%ss)\n' "mailcanary run, DKIM RSA + Ed25519" "$(rate "$messages" "$m_signed")" "$m_signed"
    printf '  %-44s %7.1f msg/s (%ss)\n' "mailcanary run, unsigned" "$(rate "$messages" "$m_unsigned")" "$m_unsigned"
    printf '  %-44s %7.1f msg/s (%ss)\n' "smtp-source, one connection per message" "$(rate "$messages" "$m_source")" "$m_source"
    printf '  %-44s %7.1f msg/s (%ss)\n' "smtp-source -d, connections reused" "$(rate "$messages" "$m_reuse")" "$m_reuse"
    printf '  %-44s %7.1f msg/s\n' "mailcanary send phase only, signed" "$(median ${send_rate[mailcanary-signed]})"
    echo "  ratio mailcanary signed / smtp-source:    $(ratio "$m_source" "$m_signed")"
    echo "  ratio mailcanary unsigned / smtp-source:  $(ratio "$m_source" "$m_unsigned")"
    echo "  ratio mailcanary signed / smtp-source -d: $(ratio "$m_reuse" "$m_signed")"

    m_sink=$(median ${receive[smtp-sink]})
    m_sim=$(median ${receive[mailcanary-sim]})
    echo "receiver, smtp-source -s $sessions -m $messages -l 1000 (median of $repeat):"
    printf '  %-44s %7.1f msg/s (%ss)\n' "smtp-sink" "$(rate "$messages" "$m_sink")" "$m_sink"
    printf '  %-44s %7.1f msg/s (%ss), peak RSS %s KiB\n' "mailcanary sim (SPF/DKIM/DMARC, Maildir)" \
        "$(rate "$messages" "$m_sim")" "$m_sim" "$(median "${sim_rss[@]}")"
    echo "  ratio mailcanary sim / smtp-sink:         $(ratio "$m_sink" "$m_sim")"
    if [ "${#postfix_walls[@]}" -gt 0 ]; then
        m_postfix=$(median "${postfix_walls[@]}")
        printf '  %-44s %7.1f msg/s (%ss)\n' "Postfix + OpenDKIM/OpenDMARC/policyd-spf" "$(rate "$messages" "$m_postfix")" "$m_postfix"
        echo "  ratio mailcanary sim / Postfix stack:     $(ratio "$m_postfix" "$m_sim")"
    fi

    echo "scale, 50 paths x 20 seeds through the built-in simulator (median of $repeat):"
    for total in $scale_sizes; do
        printf '  %6d messages: %8.2fs wall, %7.1f msg/s, peak RSS %7.1f MiB\n' "$total" \
            "$(median ${scale_wall[$total]})" "$(rate "$total" "$(median ${scale_wall[$total]})")" \
            "$(awk -v k="$(median ${scale_rss[$total]})" 'BEGIN { print k / 1024 }')"
    done
} | tee -a "$results.summary"
log "raw results: $results; summary: $results.summary"
