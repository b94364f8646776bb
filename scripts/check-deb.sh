#!/usr/bin/env bash
# Checks a built inferd .deb: unpacked into an empty root, every file is where the unit, the
# D-Bus policy and the activation file expect it, `inferd check` runs from there, and the
# packaged `inferctl import` imports a GGUF with no Python anywhere on PATH.
# Usage: scripts/check-deb.sh target/debian/inferd_*.deb [FILE.gguf]   (needs ORT_DYLIB_PATH for
# the check; the import check runs when a GGUF is given)
set -euo pipefail
deb=$1
gguf=${2:-}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "check-deb: ok    $*"; }

for f in usr/bin/inferd usr/bin/inferctl \
         lib/systemd/system/inferd.service \
         usr/lib/sysusers.d/inferd.conf usr/lib/tmpfiles.d/inferd.conf \
         usr/share/dbus-1/system.d/org.inferd.Inferd1.conf \
         usr/share/dbus-1/system-services/org.inferd.Inferd1.service \
         usr/share/dbus-1/interfaces/org.inferd.Inferd1.xml \
         usr/share/polkit-1/actions/org.inferd.Inferd1.policy \
         etc/inferd/inferd.toml usr/share/doc/inferd/deploy.md usr/share/doc/inferd/gpu.conf.example \
         usr/share/bash-completion/completions/inferctl usr/share/zsh/vendor-completions/_inferctl \
         usr/share/fish/vendor_completions.d/inferctl.fish usr/share/man/man1/inferctl.1.gz \
         usr/lib/systemd/user/inferd.service usr/share/dbus-1/services/org.inferd.Inferd1.service; do
  [ -f "$root/$f" ] || fail "missing /$f"
done
[ -d "$root/var/lib/inferd/models" ] || fail "missing /var/lib/inferd/models"
ok "every file in place"
bash -n "$root/usr/share/bash-completion/completions/inferctl" || fail "the bash completion does not parse"
zcat "$root/usr/share/man/man1/inferctl.1.gz" | grep -q '^.SH "EXIT STATUS"' || fail "the man page has no EXIT STATUS"
if command -v groff >/dev/null; then
  zcat "$root/usr/share/man/man1/inferctl.1.gz" | groff -man -Tutf8 -ww -z 2>&1 | grep . && fail "groff warns about the man page"
fi
ok "completions parse, the man page has its exit statuses"
if find "$root" -name 'libonnxruntime*' | grep -q .; then fail "ONNX Runtime must not be bundled"; fi
# The tests' GPU simulation (the simulate-gpu feature) is not in the packaged daemon.
if grep -qa INFERD_SIMULATE_TENSORRT "$root/usr/bin/inferd"; then fail "the packaged inferd reads INFERD_SIMULATE_TENSORRT"; fi
ok "no test hooks in the packaged daemon"

unit=$root/lib/systemd/system/inferd.service
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
bin=${exec_start%% *}
[ -x "$root$bin" ] || fail "ExecStart binary $bin is not in the package"
conf=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$exec_start")
[ -f "$root$conf" ] || fail "ExecStart's config $conf is not in the package"
grep -qx "$conf" "$root/DEBIAN/conffiles" || fail "$conf is not a conffile"
grep -q '^bus = "system"' "$root$conf" || fail "the packaged config does not use the system bus"
ok "unit runs $bin --config $conf (a conffile, system bus)"

alias=$(sed -n 's/^Alias=//p' "$unit")
activation=$root/usr/share/dbus-1/system-services/org.inferd.Inferd1.service
grep -qx "SystemdService=$alias" "$activation" || fail "activation file does not name the unit's Alias ($alias)"
user=$(sed -n 's/^User=//p' "$unit")
awk '$1 == "u" { print $2 }' "$root/usr/lib/sysusers.d/inferd.conf" | grep -qx "$user" \
  || fail "sysusers does not create the unit's User=$user"
grep -q "<allow own=\"org.inferd.Inferd1\"/>" "$root/usr/share/dbus-1/system.d/org.inferd.Inferd1.conf" \
  || fail "policy does not let the daemon own its name"
grep -q "<policy user=\"$user\">" "$root/usr/share/dbus-1/system.d/org.inferd.Inferd1.conf" \
  || fail "policy's owner is not the unit's User=$user"
grep -q "/var/lib/inferd/models" "$root/usr/lib/tmpfiles.d/inferd.conf" || fail "tmpfiles does not create the repository"
ok "activation → $alias, User=$user owns the name, tmpfiles makes the repository"
policy=$root/usr/share/polkit-1/actions/org.inferd.Inferd1.policy
python3 - "$policy" <<'PY' || fail "the polkit actions are not as docs/dbus.md says"
import sys, xml.etree.ElementTree as ET
actions = {a.get("id"): a for a in ET.parse(sys.argv[1]).getroot().iter("action")}
assert set(actions) == {"org.inferd.Inferd1.manage-models", "org.inferd.Inferd1.warmup"}, actions
for a in actions.values():
    d = a.find("defaults")
    assert (d.findtext("allow_any"), d.findtext("allow_inactive"), d.findtext("allow_active")) == ("no", "no", "auth_admin_keep")
PY
ok "polkit actions manage-models and warmup: auth_admin_keep for active sessions, no otherwise"
grep -qx "SystemdService=inferd.service" "$root/usr/share/dbus-1/services/org.inferd.Inferd1.service" \
  || fail "the session bus activation file does not name the user unit"
grep -q '^ExecStart=/usr/bin/inferd ' "$root/usr/lib/systemd/user/inferd.service" || fail "the user unit does not run /usr/bin/inferd"
ok "the user unit and its session bus activation"

[ -x "$root/DEBIAN/postinst" ] || fail "no postinst"
grep -q "systemd-sysusers inferd.conf" "$root/DEBIAN/postinst" || fail "postinst does not create the user"
grep -q "daemon-reload" "$root/DEBIAN/postinst" || fail "postinst does not reload systemd"
grep -q "ReloadConfig" "$root/DEBIAN/postinst" || fail "postinst does not reload D-Bus"
dpkg-deb -f "$deb" Depends | grep -q libc6 || fail "Depends has no libc6"
ok "maintainer scripts and dependencies"

"$root/usr/bin/inferctl" --version >/dev/null
out=$("$root/usr/bin/inferd" --config "$root$conf" --models "$root/var/lib/inferd/models" check)
echo "$out" | sed 's/^/check-deb:       /'
grep -q "^ok    ONNX Runtime" <<<"$out" || fail "inferd check did not find ONNX Runtime"
grep -q "^ok    model repository" <<<"$out" || fail "inferd check did not read the repository"
ok "inferd check runs from the unpacked package"

if [[ -n $gguf ]]; then
  env -i HOME="$root" PATH=/nonexistent "$root/usr/bin/inferctl" import "$gguf" --name imported \
    --models "$root/models" >/dev/null 2>&1 || fail "the packaged inferctl import failed without Python"
  [ -f "$root/models/imported/model.onnx" ] && [ -f "$root/models/imported/tokenizer.json" ] \
    || fail "the packaged inferctl import wrote no model"
  ok "the packaged inferctl import reads a GGUF with no Python on PATH"
fi
