#!/bin/sh
# Checks systemd/inferd.service and the user unit systemd/inferd-user.service offline (no
# running systemd needed, systemd >= 250):
#  1. `systemd-analyze verify` of the unit and of the unit + GPU drop-in: any
#     warning fails the check (verify alone exits 0 on unknown keys);
#  2. `systemd-analyze security --offline=true`: the unit's overall exposure must be
#     at most $MAX_EXPOSURE (2.0); the score with the GPU drop-in is printed only.
# /usr/bin/inferd need not exist: the unit is checked from a temporary copy whose
# ExecStart= binary is a stub. Leaves nothing behind.
set -eu

MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
top=$(cd "$(dirname "$0")/.." && pwd)
unit=$top/systemd/inferd.service
dropin=$top/systemd/gpu.conf.example

command -v systemd-analyze >/dev/null || { echo "check-unit: systemd-analyze not found" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Two copies: base/ (the unit alone) and gpu/ (the unit + drop-in). Only the binary
# path of ExecStart= changes; its arguments and every other line are checked as shipped.
stub=$tmp/inferd
printf '#!/bin/sh\nexit 0\n' >"$stub"
chmod 755 "$stub"
grep -q '^ExecStart=/usr/bin/inferd ' "$unit" || { echo "check-unit: ExecStart=/usr/bin/inferd ... not found in $unit" >&2; exit 1; }
for v in base gpu; do
    mkdir -p "$tmp/$v"
    sed "s|^ExecStart=/usr/bin/inferd |ExecStart=$stub |" "$unit" >"$tmp/$v/inferd.service"
done
mkdir -p "$tmp/gpu/inferd.service.d"
cp "$dropin" "$tmp/gpu/inferd.service.d/gpu.conf"

fail=0
verify() { # $1: variant
    # verify prints problems (unknown keys, bad values, missing binaries) on stderr;
    # some of them only as warnings with exit status 0, so any output is a failure.
    if ! (cd "$tmp/$1" && systemd-analyze verify --man=no ./inferd.service) >"$tmp/verify.out" 2>&1 \
        || [ -s "$tmp/verify.out" ]; then
        echo "check-unit: systemd-analyze verify failed ($1):" >&2
        sed "s|$tmp/$1/||g" "$tmp/verify.out" >&2
        fail=1
    else
        echo "check-unit: systemd-analyze verify ($1): ok"
    fi
}

exposure() { # $1: variant; prints the overall exposure level
    (cd "$tmp/$1" && systemd-analyze security --offline=true --no-pager ./inferd.service) >"$tmp/security.out" 2>&1 || true
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' "$tmp/security.out")
    if [ -z "$score" ]; then
        echo "check-unit: no exposure level in systemd-analyze security output ($1):" >&2
        cat "$tmp/security.out" >&2
        return 1
    fi
    echo "$score"
}

verify base
verify gpu

# The user unit: started by `systemctl --user` where a user manager runs (tested then), else
# checked with `systemd-analyze --user verify` (which needs only a runtime directory).
user_unit=$top/systemd/inferd-user.service
mkdir -p "$tmp/user" "$tmp/run"
chmod 700 "$tmp/run"
sed "s|^ExecStart=/usr/bin/inferd |ExecStart=$stub |" "$user_unit" >"$tmp/user/inferd.service"
if systemctl --user is-system-running >/dev/null 2>&1; then
    echo "check-unit: a user manager runs here: starting the user unit (inferd a stub that says READY=1)"
    printf '#!/bin/sh\nexec systemd-notify --ready\n' >"$tmp/notify-stub"
    chmod 755 "$tmp/notify-stub"
    mkdir -p "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
    sed "s|^ExecStart=/usr/bin/inferd .*|ExecStart=$tmp/notify-stub|" "$user_unit" \
        >"${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/inferd-check.service"
    systemctl --user daemon-reload
    if ! systemctl --user start inferd-check.service; then
        echo "check-unit: systemctl --user start failed" >&2
        fail=1
    fi
    systemctl --user stop inferd-check.service || true
    rm -f "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/inferd-check.service"
    systemctl --user daemon-reload
elif ! (cd "$tmp/user" && XDG_RUNTIME_DIR=$tmp/run systemd-analyze --user verify --man=no ./inferd.service) \
        >"$tmp/verify.out" 2>&1 || [ -s "$tmp/verify.out" ]; then
    echo "check-unit: systemd-analyze --user verify failed (user unit):" >&2
    sed "s|$tmp/user/||g" "$tmp/verify.out" >&2
    fail=1
else
    echo "check-unit: no user manager here (systemctl --user has no bus): the user unit passed systemd-analyze --user verify"
fi

# The resource and network bounds a shared device relies on (docs/deploy.md).
for key in MemoryHigh MemoryMax TasksMax IPAddressDeny IPAddressAllow; do
    if grep -q "^$key=" "$unit"; then
        echo "check-unit: $key=$(sed -n "s/^$key=//p" "$unit")"
    else
        echo "check-unit: $key= is missing from the unit" >&2
        fail=1
    fi
done

base=$(exposure base) || exit 1
gpu=$(exposure gpu) || exit 1
echo "check-unit: exposure of inferd.service: $base (limit $MAX_EXPOSURE)"
echo "check-unit: exposure with the GPU drop-in: $gpu (reported only)"
if awk -v s="$base" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    echo "check-unit: inferd.service exposure $base is above $MAX_EXPOSURE:" >&2
    (cd "$tmp/base" && systemd-analyze security --offline=true --no-pager ./inferd.service) 2>&1 | grep -v '✓' >&2 || true
    fail=1
fi
exit "$fail"
