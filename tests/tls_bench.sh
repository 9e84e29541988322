#!/bin/sh
# TLS benchmark, ser vs Kamailio's tls module (BENCHMARKS.md, "TLS"):
# REGISTER/s with connection reuse and server CPU per new handshake, with
# the same Python ssl client (tests/tls_bench.py), on 127.0.0.1.
#   tests/tls_bench.sh /path/to/release/ser [rounds]
set -eu
SER=${1:?usage: tls_bench.sh /path/to/ser [rounds]}
ROUNDS=${2:-3}
REGS=${REGS:-10000}   # REGISTERs per connection (4 connections)
HS=${HS:-2000}        # new connections (handshakes), in total
HSCONNS=${HSCONNS:-4} # clients opening them at once
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d /tmp/tls-bench.XXXXXX)
LOGS=${LOGS:-/tmp/tls-bench-logs}
trap 'kill -9 -$SERPG -$KAMPG 2>/dev/null || true; mkdir -p "$LOGS"; cp "$D"/*.log "$LOGS"/ 2>/dev/null; rm -rf "$D"' EXIT INT TERM
SERPG=0 KAMPG=0
cd "$D"
# one EC P-256 certificate for both servers
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout srv.key -out srv.pem -days 2 -subj "/CN=tls bench" \
    -addext subjectAltName=IP:127.0.0.1 2>/dev/null
# Kamailio takes the certificate from its tls.cfg once one is named
printf '[server:default]\ncertificate = %s/srv.pem\nprivate_key = %s/srv.key\n' "$D" "$D" > kam-tls.cfg
SERPORT=45061 KAMPORT=45062
cat > ser.cfg <<CFG
loadmodule "sl"
loadmodule "usrloc"
loadmodule "registrar"
loadmodule "tls"
modparam("tls", "certificate", "$D/srv.pem")
modparam("tls", "private_key", "$D/srv.key")
route {
    if (method == "REGISTER") { save("location"); exit; }
    sl_send_reply("200", "OK");
}
CFG
cat > kam.cfg <<CFG
#!KAMAILIO
children=1
tcp_children=2
enable_tls=yes
listen=tls:127.0.0.1:$KAMPORT
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("tls", "config", "$D/kam-tls.cfg")
request_route {
    if (method == "REGISTER") { save("location"); exit; }
    sl_send_reply("200", "OK");
}
CFG
setsid "$SER" -f ser.cfg -n 1 -N 2 -E -DD -m 64 -l "tls:127.0.0.1:$SERPORT" 2>ser.log &
SERPG=$!
setsid /usr/sbin/kamailio -f kam.cfg -E -DD -m 64 -M 8 >kam.log 2>&1 &
KAMPG=$!
sleep 2
for r in $(seq 1 "$ROUNDS"); do
    for s in ser:$SERPORT:$SERPG kamailio:$KAMPORT:$KAMPG; do
        name=${s%%:*}; rest=${s#*:}; port=${rest%%:*}; pg=${rest#*:}
        printf '%s round %s ' "$name" "$r"
        python3 "$HERE/tls_bench.py" reuse --port "$port" --conns 4 --count "$REGS" --window 8 --pgid "$pg" || true
        printf '%s round %s ' "$name" "$r"
        python3 "$HERE/tls_bench.py" handshake --port "$port" --conns "$HSCONNS" --count "$HS" --pgid "$pg" || true
    done
done
