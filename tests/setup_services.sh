#!/bin/sh
# Test services for `make test`: installs what some tests need from the system's package
# manager, idempotently (a no-op taking milliseconds once installed).
#   chromium      - renders the validation report headless (tests/ml/test_report_browser.py)
#   poppler-utils - pdftotext, to read the sections back from the printed PDF
# Without apt-get or root (a developer laptop) it only says what it could not install; the
# browser test then skips with that reason.
set -u
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v pdftotext >/dev/null 2>&1 || missing="$missing poppler-utils"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_services: cannot install$missing (needs root and apt-get); the tests that" \
         "need them will be skipped." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt run (a parallel job) holds the lock: wait for it instead of failing.
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_get install -y --no-install-recommends $missing >/dev/null 2>&1 || {
    apt_get update -qq >/dev/null 2>&1
    apt_get install -y --no-install-recommends $missing >/dev/null 2>&1 ||
        echo "setup_services: installing$missing failed; those tests will be skipped." >&2
}
exit 0
