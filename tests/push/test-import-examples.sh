#!/bin/bash
# test-import-examples.sh -- examples/import-parallel.sh parses (bash -n)
# and splits the hosts into shards 1..N of N; examples/import-k8s-job.yaml
# is a well-formed Indexed Job whose shard expression covers 1..N.
. "$(dirname "$0")/../helpers/functions.sh"
requires python3
ex=$top/examples
check "import-parallel.sh: bash -n" bash -n "$ex/import-parallel.sh"
# A stand-in for GNU parallel and ssh: run each job with its slot number.
mkdir "$TMP/bin"
cat >"$TMP/bin/parallel" <<'P'
#!/bin/bash
while [ "${1#-}" != "$1" ]; do case $1 in -j|--halt) shift 2;; *) shift;; esac; done
slot=0
while read -r host; do
  slot=$((slot + 1))
  args=(); for a in "$@"; do a=${a//\{\}/$host}; args+=("${a//\{%\}/$slot}"); done
  "${args[@]}"
done
P
cat >"$TMP/bin/ssh" <<'P'
#!/bin/bash
host=$1; shift
echo "$host: $*"
P
chmod +x "$TMP/bin/parallel" "$TMP/bin/ssh"
PATH=$TMP/bin:$PATH PBS_REPOSITORY=u@pbs@h:s "$ex/import-parallel.sh" "a b c" "/backups/old set" --ns x >"$TMP/p.out" 2>&1
check "import-parallel.sh: one shard per host, 1/3..3/3 ($(tr '\n' ' ' <"$TMP/p.out"))" python3 -c '
import sys
lines = open(sys.argv[1]).read().split("\n")[:-1]
assert [l.split(":")[0] for l in lines] == ["a", "b", "c"], lines
assert all("--shard %d/3" % (i + 1) in l and "/backups/old\\ set" in l and "--ns x" in l for i, l in enumerate(lines)), lines' "$TMP/p.out"
check "import-k8s-job.yaml: an Indexed Job, completions = SHARDS, shard K = index+1" python3 -c '
import sys
try:
    import yaml
    doc = yaml.safe_load(open(sys.argv[1]))
except ImportError:
    sys.exit(77)
spec = doc["spec"]
assert doc["kind"] == "Job" and spec["completionMode"] == "Indexed", doc
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
assert int(env["SHARDS"]) == spec["completions"], (env, spec)
assert "--shard \"$((JOB_COMPLETION_INDEX+1))/$SHARDS\"" in c["args"][0], c["args"]
assert "PBS_PASSWORD" not in env and env["PBS_PASSWORD_FILE"].startswith("/secrets"), env' "$ex/import-k8s-job.yaml"
done_testing
