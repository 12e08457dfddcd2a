#!/bin/sh
# A dns-01 hook as an operator would write one, for tests: publishes the TXT record
# through pebble-challtestsrv's management API ($CHALLTESTSRV). kmsd runs it as
# `hook present|cleanup` with KMS_DOMAIN, KMS_RECORD, KMS_VALIDATION, KMS_TOKEN set.
set -eu
case "$1" in
  present)
    curl -sf -X POST -d "{\"host\":\"${KMS_RECORD}.\",\"value\":\"${KMS_VALIDATION}\"}" "${CHALLTESTSRV}/set-txt" ;;
  cleanup)
    curl -sf -X POST -d "{\"host\":\"${KMS_RECORD}.\"}" "${CHALLTESTSRV}/clear-txt" ;;
  *)
    echo "usage: $0 present|cleanup" >&2; exit 2 ;;
esac
