#!/bin/sh
# Test services for `make test`: installs what some tests need from the system's package
# manager, idempotently (a no-op taking milliseconds once installed).
#   chromium      - renders the validation report headless (tests/ml/test_report_browser.py)
#   poppler-utils - pdftotext, to read the sections back from the printed PDF
#   postgresql    - the server binaries for the shared-project tests (tests/pg_server.py
#                   starts a throwaway server of its own per test run and stops it at
#                   the end; no cluster of the package's own is created or left running)
# Without apt-get or root (a developer laptop) it only says what it could not install; the
# browser test then skips with that reason.
set -u
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v pdftotext >/dev/null 2>&1 || missing="$missing poppler-utils"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 ||
    missing="$missing postgresql"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_services: cannot install$missing (needs root and apt-get); the tests that" \
         "need them will be skipped." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
export UCF_FORCE_CONFFOLD=1  # createclusterconf is ucf-managed: keep the one written below
case "$missing" in *postgresql*)  # binaries only: no "main" cluster started by the package
    mkdir -p /etc/postgresql-common &&
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf ;;
esac
# Another apt run (a parallel job) holds the lock: wait for it instead of failing.
# (--force-confold: keep the createcluster.conf written above instead of asking.)
apt_get() { apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold "$@"; }
apt_get install -y --no-install-recommends $missing >/dev/null 2>&1 || {
    apt_get update -qq >/dev/null 2>&1
    apt_get install -y --no-install-recommends $missing >/dev/null 2>&1 ||
        echo "setup_services: installing$missing failed; those tests will be skipped." >&2
}
case "$missing" in *postgresql*)  # should the package have started a cluster: stop it
    command -v pg_lsclusters >/dev/null 2>&1 && pg_lsclusters -h 2>/dev/null |
        while read -r version cluster _port status _rest; do
            [ "$status" = online ] && pg_ctlcluster "$version" "$cluster" stop
        done ;;
esac
exit 0
