#!/usr/bin/env bash
# Kafka ACLs of the platform on Apache Kafka (docs/operations.md, "Broker security": why each one).
# The broker runs with StandardAuthorizer and allow.everyone.if.no.acl.found=false, so a principal
# may do exactly what is granted here. Run it as the admin (super) user; adding an ACL twice is
# harmless, so it can run on every start (docker-compose.yml does, for the platform's services).
#
#   deploy/kafka-acls.sh platform              # gateway, binding, settlement, notify
#   deploy/kafka-acls.sh bureau 610100         # one region's bureau (社保经办机构), per region
#   deploy/kafka-acls.sh his H61010300001      # one institution's HIS (a vendor: once per institution)
#
# Environment: BOOTSTRAP (default kafka:9092), COMMAND_CONFIG (the admin client's properties file,
# default /tmp/admin.properties), KAFKA_ACLS (default /opt/kafka/bin/kafka-acls.sh), and the
# services' consumer group prefixes when changed from the defaults: BINDING_GROUP_ID,
# SETTLEMENT_GROUP_ID, NOTIFY_GROUP_ID, GATEWAY_GROUP_ID (groups are `<prefix>.<topic>`).
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
COMMAND_CONFIG=${COMMAND_CONFIG:-/tmp/admin.properties}
KAFKA_ACLS=${KAFKA_ACLS:-/opt/kafka/bin/kafka-acls.sh}

# allow <principal> <operation>... -- <resource options>...
allow() {
  local principal=$1 args=()
  shift
  while [ "$1" != "--" ]; do args+=(--operation "$1"); shift; done
  shift
  "$KAFKA_ACLS" --bootstrap-server "$BOOTSTRAP" --command-config "$COMMAND_CONFIG" --add \
    --allow-principal "User:$principal" "${args[@]}" "$@"
}

topics() { for t in "$@"; do printf -- '--topic\n%s\n' "$t"; done; }

platform() {
  local gateway=${GATEWAY_GROUP_ID:-gateway} binding=${BINDING_GROUP_ID:-binding}
  local settlement=${SETTLEMENT_GROUP_ID:-settlement} notify=${NOTIFY_GROUP_ID:-notify}

  # gateway: the HTTP API's commands and queries, the window audit, revocations, the SMS uplink;
  # reads its own reply topics reply.gateway.<instance> (no consumer group) and creates them.
  allow gateway Write Create -- $(topics binding.commands settlement.queries gateway.audit gateway.revocations sms.uplink)
  allow gateway Read -- $(topics gateway.audit gateway.revocations)
  allow gateway Read Create -- --resource-pattern-type prefixed --topic reply.gateway.
  allow gateway Read -- --resource-pattern-type prefixed --group "$gateway."

  # binding: commands and the bureaus' accounts and dispute decisions in, binding.events out;
  # FraudSuspected on settlement.results; reads settlement.results for payment references.
  allow binding Read Create -- $(topics binding.commands bureau.accounts bureau.disputes settlement.results)
  allow binding Write Create -- $(topics binding.events settlement.results \
    binding.commands.dlq bureau.accounts.dlq bureau.disputes.dlq)
  allow binding Write -- --resource-pattern-type prefixed --topic reply.
  allow binding Read -- --resource-pattern-type prefixed --group "$binding."

  # settlement: charges, quotes and reconciliation in; results, each region's postings and the
  # replies to HIS (reply.<institution code>.) and to the gateway out; reads back its own results
  # only in the upgrade's ledger drain (python -m services.settlement.ledger_drain).
  allow settlement Read Create -- $(topics his.charges his.reconciliation bureau.accounts bureau.institutions \
    settlement.queries binding.events settlement.results)
  allow settlement Write Create -- $(topics settlement.results his.charges.dlq his.reconciliation.dlq \
    bureau.accounts.dlq bureau.institutions.dlq settlement.queries.dlq binding.events.dlq)
  allow settlement Write Create -- --resource-pattern-type prefixed --topic bureau.postings.
  allow settlement Write -- --resource-pattern-type prefixed --topic reply.
  allow settlement Read -- --resource-pattern-type prefixed --group "$settlement."

  # notify: outcomes, bindings, people, institutions and the SMS uplink in; deliveries out, and
  # DisputePayment on binding.commands for a grantor's SMS reply.
  allow notify Read Create -- $(topics settlement.results binding.events bureau.accounts bureau.institutions sms.uplink)
  allow notify Write Create -- $(topics notify.deliveries binding.commands settlement.results.dlq binding.events.dlq \
    bureau.accounts.dlq bureau.institutions.dlq sms.uplink.dlq)
  allow notify Read -- --resource-pattern-type prefixed --group "$notify."
}

bureau() {
  local region=${1:?usage: kafka-acls.sh bureau <region code>}
  allow "bureau-$region" Write -- $(topics bureau.accounts bureau.institutions bureau.disputes)
  allow "bureau-$region" Read -- --topic "bureau.postings.$region"
  allow "bureau-$region" Read -- --resource-pattern-type prefixed --group "bureau-$region."
}

his() {
  local institution=${1:?usage: kafka-acls.sh his <institution code>}
  allow "his-$institution" Write -- $(topics his.charges his.reconciliation)
  allow "his-$institution" Read -- --resource-pattern-type prefixed --topic "reply.$institution."
  allow "his-$institution" Read -- --resource-pattern-type prefixed --group "his-$institution."
}

case "${1:-}" in
  platform) platform ;;
  bureau) bureau "${2:-}" ;;
  his) his "${2:-}" ;;
  *) echo "usage: $0 platform | bureau <region code> | his <institution code>" >&2; exit 2 ;;
esac
