#!/usr/bin/env bash
# Writes the live introspection of org.inferd.Inferd1 to the given file.
set -euo pipefail
inferd=$1
out=$2
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
mkdir "$dir/models"
dbus-daemon --session --fork --print-address=3 --print-pid=4 3>"$dir/addr" 4>"$dir/pid"
addr=$(head -n1 "$dir/addr")
trap 'kill $(jobs -p) 2>/dev/null; wait; kill "$(cat "$dir/pid")"; rm -rf "$dir"' EXIT
"$inferd" --models "$dir/models" --bus "$addr" --log-level warn &
for _ in $(seq 100); do busctl --address "$addr" status org.inferd.Inferd1 >/dev/null 2>&1 && break; sleep 0.1; done
busctl --address "$addr" introspect --xml-interface org.inferd.Inferd1 /org/inferd/Inferd1 | python3 -c '
import sys
x = sys.stdin.read()
s = x.index("<interface name=\"org.inferd.Inferd1\">")
e = x.index("</interface>", s) + len("</interface>")
print("""<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!-- org.inferd.Inferd1, written from the running daemon by `make dbus-xml`; tests/tests/clients.rs checks it. -->
<node>
  """ + x[s:e] + "\n</node>")
' >"$out"
echo "wrote $out"
