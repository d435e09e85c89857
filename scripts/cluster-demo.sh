#!/usr/bin/env bash
# make cluster-demo: three ringgate nodes on this machine, each with an embedded NATS JetStream
# server, forming one cluster (replicas 3). Calls are played against the nodes in turn; then
# node 1 is killed (kill -9) and calls go on against nodes 2 and 3; every event reaches the
# sink with both signatures checked.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=bin/ringgate
SECRET=${DEMO_WEBHOOK_SECRET:-whsec_ZGVtby1zZWNyZXQtZm9yLWxvY2FsLXRlc3Rpbmc=}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

$BIN sink --listen 127.0.0.1:9000 --secret "$SECRET" > "$work/sink.jsonl" 2> "$work/sink.log" &
pids=()
for i in 1 2 3; do
  routes=""
  for j in 1 2 3; do [ "$j" = "$i" ] || routes="$routes${routes:+, }nats://127.0.0.1:1622$j"; done
  # node i: public :1808i, admin :1818i, cluster :1622i
  sed -e "s#listen: 127.0.0.1:8080#listen: 127.0.0.1:1808$i#" \
      -e "s#public_url: http://127.0.0.1:8080#public_url: http://127.0.0.1:18080#" \
      -e "s#listen: 127.0.0.1:8081#listen: 127.0.0.1:1818$i#" \
      -e "s#^storage: .*#storage: {backend: jetstream, path: $work/node$i, jetstream: {embedded: true, name: node$i, cluster_listen: \"127.0.0.1:1622$i\", routes: [$routes], replicas: 3, lease: 5s}}#" \
      config.example.yaml > "$work/node$i.yaml"
  $BIN serve --config "$work/node$i.yaml" 2> "$work/node$i.log" &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:1808$i/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:1808$i/readyz" >/dev/null || { echo "node $i did not start:"; tail -20 "$work/node$i.log"; exit 1; }
done
echo "== three nodes up, one JetStream cluster (replicas 3); their public URL is the same (a balancer's)"
grep -h "embedded NATS server started" "$work"/node*.log | cut -c1-140 | sed 's/^/   /'

play() { # play outcome on node
  $BIN simulate --config "$work/node$2.yaml" --gateway "http://127.0.0.1:1808$2" --to +18005551234 \
    --from "+1415555$(printf %04d $((RANDOM % 10000)))" --outcome "$1" --quiet --retries 20
}
echo "== six calls, each played against the next node"
n=0
for o in answered no-answer busy answered voicemail no-answer; do
  node=$((n % 3 + 1)); n=$((n + 1))
  echo "   node $node: $o $(play "$o" "$node")"
done
echo "== kill -9 node 1 (ringgate and its NATS server)"
{ kill -9 "${pids[0]}"; wait "${pids[0]}"; } 2>/dev/null || true
echo "== three more calls against nodes 2 and 3"
for o in answered busy no-answer; do
  node=$((n % 2 + 2)); n=$((n + 1))
  echo "   node $node: $o $(play "$o" "$node")"
done
# events: 3 answered calls x 3 (started, completed, recording), 5 missed x 2 (started, missed),
# 1 voicemail x 4 (started, missed, voicemail received and transcribed)
want=$((3 * 3 + 5 * 2 + 4))
for _ in $(seq 300); do [ "$(grep -c '"signature_ok":true,"webhook_signature_ok":true' "$work/sink.jsonl" || true)" -ge $want ] && break; sleep 0.1; done
got=$(grep -c '"signature_ok":true,"webhook_signature_ok":true' "$work/sink.jsonl" || true)
echo
echo "== the sink received $got of the $want events, both signatures verified (a redelivery after the kill may repeat one):"
python3 - "$work/sink.jsonl" <<'PY' 2>/dev/null || true
import json, sys, collections
c = collections.Counter(json.loads(l)["event"] for l in open(sys.argv[1]))
for k, v in sorted(c.items()):
    print(f"   {k:<24} {v}")
PY
[ "$got" -ge "$want" ]
