#!/usr/bin/env bash
# Compile time and peak compiler memory of translation units, one at a time, with the flags
# of the build (compile_commands.json), written as a markdown table (docs/compile-cost.md).
#
#   bench/compile_cost.sh                       # mnemo_bench's and every test's units
#   PATTERN='test_dual|mnemo_bench' bench/compile_cost.sh
#
# Environment: BUILD_DIR (default build, configured and built by scripts/test.sh or cmake),
# PATTERN (an extended regular expression on the source path; default: bench/mnemo_bench and
# tests/), REPORT (default docs/compile-cost.md). Needs GNU time (/usr/bin/time, Debian
# package `time`: installed here if missing, as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${BUILD_DIR:-build}
PATTERN=${PATTERN:-'bench/mnemo_bench|/tests/'}
REPORT=${REPORT:-docs/compile-cost.md}
DB="$BUILD_DIR/compile_commands.json"

if [ ! -f "$DB" ]; then
    echo "compile_cost: $DB is missing: configure the build first (scripts/test.sh)" >&2
    exit 1
fi
if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "compile_cost: GNU time (/usr/bin/time) is missing: apt-get install time" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y time
fi

/usr/bin/python3 - "$DB" "$PATTERN" "$REPORT" <<'EOF'
import json, os, re, shlex, subprocess, sys, tempfile, datetime, platform

db, pattern, report = sys.argv[1:4]
entries = [e for e in json.load(open(db)) if re.search(pattern, e["file"])]
rows = []
for e in sorted(entries, key=lambda e: e["file"]):
    args = shlex.split(e["command"]) if "command" in e else e["arguments"]
    # Compile only, to a throw-away object.
    out = tempfile.NamedTemporaryFile(suffix=".o", delete=False).name
    if "-o" in args:
        args[args.index("-o") + 1] = out
    stats = tempfile.NamedTemporaryFile(delete=False).name
    r = subprocess.run(["/usr/bin/time", "-f", "%e %U %M", "-o", stats] + args, cwd=e["directory"],
                       capture_output=True, text=True)
    wall, user, rss_kb = open(stats).read().split()[-3:]
    os.unlink(stats)
    if os.path.exists(out):
        os.unlink(out)
    name = os.path.relpath(e["file"], os.getcwd())
    rows.append((name, float(wall), float(user), int(rss_kb) / 1024 / 1024, r.returncode))
    print(f"[compile_cost] {name}: {float(wall):.1f} s, {int(rss_kb) / 1024 / 1024:.2f} GB"
          + ("" if r.returncode == 0 else f" (FAILED: exit {r.returncode})"), file=sys.stderr)

compiler = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
md = ["# Compile cost", "",
      "Compile time and peak compiler memory of each translation unit, compiled one at a time",
      "with the flags of the build (`bench/compile_cost.sh`; Release, `-O3`). The aim: every unit",
      "under 60 s and 2 GB. Sorted by time.", "",
      f"Units measured: source paths matching `{pattern}`.", "",
      f"Compiler: {compiler}. Machine: {os.cpu_count()} cores. Date: "
      f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.", "",
      "Units under `tests/compile_fail/` are meant not to compile: they check the library's",
      "compile-time errors, so \"failed\" is their expected result.", "",
      "| translation unit | wall (s) | user (s) | peak memory (GB) |", "|---|---|---|---|"]
for name, wall, user, gb, rc in sorted(rows, key=lambda r: -r[1]):
    md.append(f"| `{name}` | {wall:.1f} | {user:.1f} | {gb:.2f} |" + ("" if rc == 0 else " failed |"))
tot_w = sum(r[1] for r in rows)
md += ["", f"{len(rows)} units, {tot_w:.0f} s in all (one at a time); the largest: "
       f"{max(r[1] for r in rows):.1f} s and {max(r[3] for r in rows):.2f} GB."]
open(report, "w").write("\n".join(md) + "\n")
print(f"[compile_cost] wrote {report}", file=sys.stderr)
EOF
