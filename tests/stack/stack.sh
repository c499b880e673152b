#!/usr/bin/env bash
# Starts and stops a real receiving stack on loopback for mailcanary's
# integration tests: NSD (authoritative DNS), Postfix with OpenDKIM,
# OpenDMARC and two policyd-spf instances, and Dovecot (IMAP, LMTP, Sieve).
#
#   tests/stack/stack.sh start DIR   # writes every file into DIR, starts the daemons
#   tests/stack/stack.sh stop DIR    # stops the daemons whose PID files are in DIR
#
# Runs as root on Debian or Ubuntu. Missing packages are installed with
# apt-get. Every daemon listens on 127.0.0.0/8 only, and every DNS lookup
# they make goes to this stack's NSD, which answers only its own zones. The
# daemons run in a private mount namespace whose /etc/resolv.conf names that
# NSD, so the machine's resolver configuration is left alone.
#
# NSD is the DNS server because it is authoritative only: it has no
# recursion and no forwarding, so no query can leave the machine through it.
# dnsmasq forwards to the servers in /etc/resolv.conf unless configured
# otherwise, and unbound is a recursive resolver.
#
# DIR/stack.env lists the ports, addresses and paths as KEY=value lines.
# Several stacks can run at once in different directories: each gets its own
# ports and its own DNS address 127.0.53.N, because the resolver in libc (used
# by Postfix, OpenDMARC and policyd-spf) can only ask port 53.
set -euo pipefail

readonly SCRIPT="$(readlink -f "${BASH_SOURCE[0]}")"
readonly REPOSITORY="$(cd "$(dirname "$SCRIPT")/../.." && pwd)"
readonly PACKAGES=(postfix dovecot-imapd dovecot-lmtpd dovecot-sieve opendkim opendmarc
    postfix-policyd-spf-python nsd openssl python3)

# The names of the test world. The sending IPs and keys match
# scenarios/zones/news.example.com.zone and scenarios/keys/.
readonly MX_HOST="mx.customer-a.example"
readonly SEED_DOMAIN="customer-a.example"
readonly SENDER_DOMAIN="news.example.com"
readonly SEEDS=(pp-seed-1 pp-seed-2)

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: stack.sh start DIR   start a receiving stack with its files in DIR
       stack.sh stop DIR    stop the stack started in DIR
EOF
    exit 2
}

# Installs the packages that are missing. A temporary policy-rc.d keeps the
# packages' own services (Postfix, Dovecot and NSD on all interfaces) from
# starting during the installation.
install_packages() {
    local missing=()
    local package
    for package in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return
    fi

    log "installing ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d
    local added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

    local status=0
    export DEBIAN_FRONTEND=noninteractive
    # Another apt-get (a second stack starting at the same time) may hold
    # the dpkg lock, so wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=300 update -q || status=$?
    if ((status == 0)); then
        apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" || status=$?
    fi
    if ((added_policy)); then
        rm -f "$policy"
    fi
    ((status == 0)) || die "apt-get failed with status $status"
}

# Prints the first address 127.0.53.N (N from 1) where UDP and TCP port 53
# are both free.
free_dns_address() {
    python3 - <<'EOF'
import socket, sys
for n in range(1, 255):
    address = f"127.0.53.{n}"
    sockets = []
    try:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind)
            sockets.append(s)
            s.bind((address, 53))
    except OSError:
        continue
    finally:
        for s in sockets:
            s.close()
    print(address)
    sys.exit(0)
sys.exit("no free address 127.0.53.N with port 53")
EOF
}

# Prints COUNT TCP ports on 127.0.0.1 that the kernel reports free, one a
# line. NOTE: a port is free when this runs, not necessarily when the daemon
# binds it. A daemon that loses that race fails to start, and start() stops
# the stack with an error.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
for s in sockets:
    print(s.getsockname()[1])
EOF
}

# Waits up to 20 s until HOST:PORT accepts a TCP connection.
wait_for_port() {
    local host=$1 port=$2 name=$3
    local deadline=$((SECONDS + 20))
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            die "$name is not listening on $host:$port after 20 s; see the logs in $DIR"
        fi
        sleep 0.2
    done
}

# Writes a throwaway CA and a server certificate it signs, for Postfix and
# Dovecot. Clients trust DIR/tls/ca.pem. A single self-signed certificate
# would not do, because rustls rejects a CA certificate used as the server's.
write_tls() {
    local tls=$DIR/tls
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=mailcanary stack CA" \
        -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$MX_HOST" \
        -keyout "$tls/key.pem" -out "$tls/server.csr" 2>/dev/null
    printf '%s\n' "basicConstraints = critical, CA:FALSE" "extendedKeyUsage = serverAuth" \
        "subjectAltName = DNS:$MX_HOST, IP:127.0.0.1" >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
        -days 7 -extfile "$tls/server.ext" -out "$tls/cert.pem" 2>/dev/null
    chmod 600 "$tls/key.pem" "$tls/ca-key.pem"
}

# Writes the zones and nsd.conf. Besides the test domains, NSD serves a
# root zone with only SOA and NS, so every other name gets an authoritative
# NXDOMAIN instead of REFUSED.
write_dns() {
    local dns=$DIR/dns
    mkdir -p "$dns"

    # The DKIM public keys come from the demo zone, so the keys under
    # scenarios/keys/ verify here too.
    local keys
    keys=$(grep -E '^(rsa2026|ed2026)\._domainkey' "$REPOSITORY/scenarios/zones/$SENDER_DOMAIN.zone")
    [[ $(wc -l <<<"$keys") -eq 2 ]] || die "DKIM records rsa2026 and ed2026 not found in scenarios/zones/$SENDER_DOMAIN.zone"

    local soa="@ IN SOA ns.stack.example. hostmaster.stack.example. 2026010101 3600 600 86400 60
@ IN NS ns.stack.example."

    cat >"$dns/root.zone" <<EOF
\$ORIGIN .
\$TTL 300
$soa
EOF
    cat >"$dns/$SENDER_DOMAIN.zone" <<EOF
\$ORIGIN $SENDER_DOMAIN.
\$TTL 300
$soa
@ IN TXT "v=spf1 ip4:127.0.0.10 ip4:127.0.0.11 ip4:127.0.0.12 -all"
_dmarc IN TXT "v=DMARC1; p=reject"
mta10 IN A 127.0.0.10
mta11 IN A 127.0.0.11
mta12 IN A 127.0.0.12
mta13 IN A 127.0.0.13
$keys
EOF
    # A foreign From domain for the spoofed control stream.
    cat >"$dns/bank.example.com.zone" <<EOF
\$ORIGIN bank.example.com.
\$TTL 300
$soa
_dmarc IN TXT "v=DMARC1; p=reject"
EOF
    cat >"$dns/$SEED_DOMAIN.zone" <<EOF
\$ORIGIN $SEED_DOMAIN.
\$TTL 300
$soa
@ IN MX 10 mx.$SEED_DOMAIN.
mx IN A 127.0.0.1
EOF
    cat >"$dns/0.0.127.in-addr.arpa.zone" <<EOF
\$ORIGIN 0.0.127.in-addr.arpa.
\$TTL 300
$soa
1 IN PTR $MX_HOST.
10 IN PTR mta10.$SENDER_DOMAIN.
11 IN PTR mta11.$SENDER_DOMAIN.
12 IN PTR mta12.$SENDER_DOMAIN.
13 IN PTR mta13.$SENDER_DOMAIN.
EOF

    {
        cat <<EOF
server:
    ip-address: $DNS_ADDRESS
    port: 53
    do-ip6: no
    zonesdir: "$dns"
    pidfile: "$dns/nsd.pid"
    logfile: "$dns/nsd.log"
    zonelistfile: "$dns/zone.list"
    xfrdfile: "$dns/xfrd.state"
    xfrdir: "$dns/xfr"
    database: ""
    username: nsd
    hide-version: yes
    verbosity: 1
remote-control:
    control-enable: no
EOF
        local zone
        for zone in . "$SENDER_DOMAIN" bank.example.com "$SEED_DOMAIN" 0.0.127.in-addr.arpa; do
            local file=$zone.zone
            [[ $zone == . ]] && file=root.zone
            printf 'zone:\n    name: "%s"\n    zonefile: "%s"\n' "$zone" "$file"
        done
    } >"$dns/nsd.conf"
    mkdir -p "$dns/xfr"
    chown -R nsd: "$dns"

    local zone
    for zone in "$dns"/*.zone; do
        local name
        name=$(basename "$zone" .zone)
        [[ $name == root ]] && name=.
        nsd-checkzone "$name" "$zone" >/dev/null || die "invalid zone $zone"
    done
    nsd-checkconf "$dns/nsd.conf" || die "invalid $dns/nsd.conf"

    printf 'nameserver %s\noptions timeout:2 attempts:2\n' "$DNS_ADDRESS" >"$DIR/resolv.conf"
}

write_policyd_spf() {
    mkdir -p "$DIR/spf"
    # Both instances only label mail, never reject it, because an SPF failure
    # is a verdict to record. TestOnly = 0 turns that test mode on (the
    # setting is inverted). skip_addresses drops 127.0.0.0/8 from the default
    # so the sending IPs 127.0.0.10 to .13 are checked.
    local header_type
    for header_type in AR SPF; do
        cat >"$DIR/spf/policyd-spf-$header_type.conf" <<EOF
debugLevel = 1
TestOnly = 0
HELO_reject = False
Mail_From_reject = False
PermError_reject = False
TempError_Defer = False
skip_addresses = 127.0.0.1/32,::1/128
Header_Type = $header_type
Authserv_Id = $MX_HOST
EOF
    done
    chmod 644 "$DIR"/spf/*.conf
}

write_milters() {
    mkdir -p "$DIR/opendkim" "$DIR/opendmarc"
    cat >"$DIR/opendkim/opendkim.conf" <<EOF
Mode v
Socket inet:$OPENDKIM_PORT@127.0.0.1
PidFile $DIR/opendkim/opendkim.pid
UserID opendkim
Background yes
Syslog no
AuthservID $MX_HOST
AlwaysAddARHeader yes
Nameservers $DNS_ADDRESS
EOF
    # OpenDMARC's own SPF check would pass every loopback client, so it reads
    # the SPF result from the Authentication-Results and Received-SPF fields
    # that policyd-spf adds. p=reject failures are delivered, labeled, so
    # Sieve can file them into Junk.
    cat >"$DIR/opendmarc/opendmarc.conf" <<EOF
Socket inet:$OPENDMARC_PORT@127.0.0.1
PidFile $DIR/opendmarc/opendmarc.pid
UserID opendmarc
Background true
Syslog false
AuthservID $MX_HOST
TrustedAuthservIDs $MX_HOST
SPFSelfValidate false
SPFIgnoreResults false
RejectFailures false
FailureReports false
RequiredHeaders false
EOF
    chown opendkim: "$DIR/opendkim"
    chown opendmarc: "$DIR/opendmarc"
}

write_postfix() {
    local config=$DIR/postfix
    mkdir -p "$config" "$DIR/postfix-queue" "$DIR/postfix-data"
    chown postfix: "$DIR/postfix-data"

    cat >"$config/client_access" <<'EOF'
127.0.0.11/32 421 Deferred - please refer to https://ipcheck.proofpoint.com/?ip=127.0.0.11
127.0.0.13/32 554 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=127.0.0.13
EOF

    cat >"$config/main.cf" <<EOF
compatibility_level = 3.6
myhostname = $MX_HOST
mydomain = $SEED_DOMAIN
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
queue_directory = $DIR/postfix-queue
data_directory = $DIR/postfix-data
maillog_file = $DIR/postfix.log
maillog_file_prefixes = $DIR
alias_maps =
alias_database =
biff = no
smtputf8_enable = no

relay_domains = $SEED_DOMAIN
relay_transport = lmtp:inet:[127.0.0.1]:$LMTP_PORT

# With the default smtpd_delay_reject = yes, the client verdict is given at
# RCPT TO. A 421 from the map makes smtpd disconnect after the reply.
smtpd_client_restrictions = check_client_access cidr:$config/client_access
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions =
    check_policy_service unix:private/policyd-spf-ar,
    check_policy_service unix:private/policyd-spf-received
policyd-spf-ar_time_limit = 3600
policyd-spf-received_time_limit = 3600

smtpd_milters = inet:127.0.0.1:$OPENDKIM_PORT, inet:127.0.0.1:$OPENDMARC_PORT
non_smtpd_milters =
milter_default_action = tempfail

smtpd_tls_security_level = may
smtpd_tls_cert_file = $DIR/tls/cert.pem
smtpd_tls_key_file = $DIR/tls/key.pem
smtpd_tls_loglevel = 1
EOF

    cat >"$config/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
policyd-spf-ar unix - n n - 0 spawn
    user=policyd-spf argv=/usr/bin/policyd-spf $DIR/spf/policyd-spf-AR.conf
policyd-spf-received unix - n n - 0 spawn
    user=policyd-spf argv=/usr/bin/policyd-spf $DIR/spf/policyd-spf-SPF.conf
EOF
    # Postfix waits for a main.cf written in the last few seconds to settle.
    touch -d '-1 min' "$config/main.cf" "$config/master.cf"
    postfix -c "$config" check || die "postfix check failed for $config"
}

write_dovecot() {
    local config=$DIR/dovecot
    mkdir -p "$config/run" "$config/sieve" "$DIR/mail"
    chown mail:mail "$DIR/mail"

    # Both seeds share one password, so a test needs one variable. It is in
    # stack.env and in DIR/SEED.password.
    SEED_PASSWORD=$(openssl rand -hex 12)
    : >"$config/passwd"
    local seed
    for seed in "${SEEDS[@]}"; do
        printf '%s\n' "$SEED_PASSWORD" >"$DIR/$seed.password"
        chmod 600 "$DIR/$seed.password"
        printf '%s@%s:%s\n' "$seed" "$SEED_DOMAIN" "$(doveadm pw -s SHA512-CRYPT -p "$SEED_PASSWORD")" >>"$config/passwd"
    done
    chown root:dovecot "$config/passwd"
    chmod 640 "$config/passwd"

    # Mail that OpenDMARC labels dmarc=fail goes to Junk. Only the field with
    # this stack's authserv-id counts.
    cat >"$config/sieve/dmarc.sieve" <<EOF
require ["fileinto"];
if header :matches "Authentication-Results" "$MX_HOST; dmarc=fail*" {
    fileinto "Junk";
    stop;
}
EOF
    sievec "$config/sieve/dmarc.sieve"

    local dh=""
    [[ -r /usr/share/dovecot/dh.pem ]] && dh="ssl_dh = </usr/share/dovecot/dh.pem"

    cat >"$config/dovecot.conf" <<EOF
instance_name = mailcanary-stack-$SMTP_PORT
base_dir = $config/run
state_dir = $config/state
log_path = $config/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
postmaster_address = postmaster@$SEED_DOMAIN
hostname = $MX_HOST

ssl = yes
ssl_cert = <$DIR/tls/cert.pem
ssl_key = <$DIR/tls/key.pem
$dh

auth_mechanisms = plain login
passdb {
    driver = passwd-file
    args = scheme=SHA512-CRYPT $config/passwd
}
userdb {
    driver = static
    args = uid=mail gid=mail home=$DIR/mail/%u
}
first_valid_uid = 8
first_valid_gid = 8
mail_location = maildir:$DIR/mail/%u

namespace inbox {
    inbox = yes
    separator = /
    mailbox Junk {
        special_use = \\Junk
        auto = subscribe
    }
}

service imap-login {
    inet_listener imap {
        address = 127.0.0.1
        port = $IMAP_PORT
    }
    inet_listener imaps {
        address = 127.0.0.1
        port = $IMAPS_PORT
        ssl = yes
    }
}
service lmtp {
    inet_listener lmtp {
        address = 127.0.0.1
        port = $LMTP_PORT
    }
}
protocol lmtp {
    mail_plugins = \$mail_plugins sieve
}
plugin {
    sieve_before = $config/sieve/dmarc.sieve
}
EOF
    doveconf -c "$config/dovecot.conf" -n >/dev/null || die "invalid $config/dovecot.conf"
}

write_env() {
    cat >"$DIR/stack.env" <<EOF
STACK_DIR=$DIR
DNS_ADDRESS=$DNS_ADDRESS
DNS_PORT=53
SMTP_HOST=127.0.0.1
SMTP_PORT=$SMTP_PORT
LMTP_PORT=$LMTP_PORT
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
OPENDKIM_PORT=$OPENDKIM_PORT
OPENDMARC_PORT=$OPENDMARC_PORT
AUTHSERV_ID=$MX_HOST
SEED_DOMAIN=$SEED_DOMAIN
SEED_PASSWORD=$SEED_PASSWORD
MAILDIR_ROOT=$DIR/mail
POSTFIX_LOG=$DIR/postfix.log
TLS_CA=$DIR/tls/ca.pem
EOF
}

# Runs inside the private mount namespace: points /etc/resolv.conf at the
# stack's NSD, then starts the daemons, which stay in this namespace.
run_daemons() {
    local target
    target=$(readlink -f /etc/resolv.conf)
    [[ -e $target ]] || : >"$target"
    mount --bind "$DIR/resolv.conf" "$target"

    nsd -c "$DIR/dns/nsd.conf" || die "nsd failed to start; see $DIR/dns/nsd.log"
    opendkim -x "$DIR/opendkim/opendkim.conf" || die "opendkim failed to start"
    opendmarc -c "$DIR/opendmarc/opendmarc.conf" || die "opendmarc failed to start"
    dovecot -c "$DIR/dovecot/dovecot.conf" || die "dovecot failed to start; see $DIR/dovecot/dovecot.log"
    postfix -c "$DIR/postfix" start || die "postfix failed to start; see $DIR/postfix.log"
}

start() {
    [[ $EUID -eq 0 ]] || die "start needs root (the Postfix master and DNS on port 53)"
    install_packages

    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    [[ ! -e $DIR/stack.env ]] || die "$DIR already holds a stack; stop it and use a new directory"
    # The daemons' own users (mail, postfix, nsd, ...) must reach their files.
    chmod 755 "$DIR"

    local started=$SECONDS
    DNS_ADDRESS=$(free_dns_address)
    local ports
    mapfile -t ports < <(free_ports 6)
    SMTP_PORT=${ports[0]} LMTP_PORT=${ports[1]} IMAP_PORT=${ports[2]} IMAPS_PORT=${ports[3]}
    OPENDKIM_PORT=${ports[4]} OPENDMARC_PORT=${ports[5]}

    write_tls
    write_dns
    write_policyd_spf
    write_milters
    write_dovecot
    write_postfix
    write_env

    # From here on, a failure stops whatever did start.
    trap 'log "start failed; stopping the daemons that started"; stop' ERR
    unshare --mount --propagation private "$SCRIPT" __run-daemons "$DIR"

    wait_for_port "$DNS_ADDRESS" 53 nsd
    wait_for_port 127.0.0.1 "$OPENDKIM_PORT" opendkim
    wait_for_port 127.0.0.1 "$OPENDMARC_PORT" opendmarc
    wait_for_port 127.0.0.1 "$LMTP_PORT" "dovecot lmtp"
    wait_for_port 127.0.0.1 "$IMAP_PORT" "dovecot imap"
    wait_for_port 127.0.0.1 "$IMAPS_PORT" "dovecot imaps"
    wait_for_port 127.0.0.1 "$SMTP_PORT" postfix

    trap - ERR

    cat <<EOF
receiving stack in $DIR (started in $((SECONDS - started)) s)
  dns        $DNS_ADDRESS:53 (nsd, authoritative only)
  smtp       127.0.0.1:$SMTP_PORT (postfix, STARTTLS; log $DIR/postfix.log)
  lmtp       127.0.0.1:$LMTP_PORT (dovecot)
  imap       127.0.0.1:$IMAP_PORT (dovecot, STARTTLS)
  imaps      127.0.0.1:$IMAPS_PORT (dovecot, implicit TLS)
  opendkim   127.0.0.1:$OPENDKIM_PORT (milter)
  opendmarc  127.0.0.1:$OPENDMARC_PORT (milter)
  maildir    $DIR/mail/<seed address>
  settings   $DIR/stack.env
EOF
}

# Sends TERM to the process in PIDFILE and waits up to 10 s for it to exit,
# then sends KILL.
stop_pid_file() {
    local pid_file=$1 name=$2
    [[ -s $pid_file ]] || return 0
    local pid
    pid=$(head -n 1 "$pid_file" | tr -d ' ')
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) did not exit after TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    log "stopped $name (pid $pid)"
}

stop() {
    [[ -d $DIR ]] || die "$DIR does not exist"
    DIR=$(cd "$DIR" && pwd)
    stop_pid_file "$DIR/postfix-queue/pid/master.pid" "postfix master"
    stop_pid_file "$DIR/dovecot/run/master.pid" "dovecot"
    stop_pid_file "$DIR/opendmarc/opendmarc.pid" "opendmarc"
    stop_pid_file "$DIR/opendkim/opendkim.pid" "opendkim"
    stop_pid_file "$DIR/dns/nsd.pid" "nsd"
}

(($# == 2)) || usage
DIR=$2
case $1 in
start) start ;;
stop) stop ;;
__run-daemons) run_daemons ;;
*) usage ;;
esac
