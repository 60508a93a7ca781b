#!/usr/bin/env python3
"""run_unit.py -- run the ExecStart= of a systemd service file as systemd
would, without systemd: for tests of examples/systemd/ (stdlib only).

  run_unit.py UNIT_FILE INSTANCE CREDENTIALS_DIR [--argv FILE]

Does what the unit's [Service] section says, for the keys the examples
use: %i / %d / %% specifiers; EnvironmentFile= and Environment= (a clean
environment otherwise, PATH only); LoadCredential=NAME:PATH copied to
CREDENTIALS_DIR/NAME (mode 0400), which %d names; ExecStart= split as
systemd does (quotes, "${VAR}" one word, "$VAR" split on whitespace).
ProtectSystem=strict is imitated when run as root with unshare(1): in a
private mount namespace every mount is made read-only, then each existing
ReadWritePaths= directory is bound writable again.  --argv FILE writes the
final command line there, one word a line.  Exit status: the command's.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys


def service_lines(path):
    section, out = None, []
    for raw in open(path):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            k, _, v = line.partition("=")
            out.append((k.strip(), v.strip()))
    return out


def specifiers(s, instance, creds):
    return re.sub(r"%[%id]", lambda m: {"%%": "%", "%i": instance,
                                         "%d": creds}[m.group(0)], s)


def env_file(path):
    env = {}
    for raw in open(path):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        k, _, v = line.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        env[k.strip()] = v
    return env


def expand(cmdline, env):
    words = []
    for w in shlex.split(cmdline):
        m = re.fullmatch(r"\$(\w+)", w)
        if m:  # $VAR: split into words, none if empty
            words += env.get(m.group(1), "").split()
            continue
        words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), w))
    return words


def main(argv):
    unit, instance, creds = argv[:3]
    argv_out = argv[4] if len(argv) > 4 and argv[3] == "--argv" else None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    execs, rw, strict = [], [], False
    for k, v in service_lines(unit):
        v = specifiers(v, instance, creds)
        if k == "EnvironmentFile":
            optional = v.startswith("-")
            p = v.lstrip("-")
            if os.path.exists(p) or not optional:
                env.update(env_file(p))
        elif k == "Environment":
            for item in shlex.split(v):
                a, _, b = item.partition("=")
                env[a] = b
        elif k == "LoadCredential":
            name, _, src = v.partition(":")
            os.makedirs(creds, exist_ok=True)
            dst = os.path.join(creds, name)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o400)
        elif k == "ExecStart":
            execs.append(v.lstrip("-+!@"))
        elif k == "ReadWritePaths":
            rw += [p.lstrip("-") for p in v.split()]
        elif k == "ProtectSystem":
            strict = v == "strict"
    if len(execs) != 1:
        sys.exit("run_unit.py: %s: want exactly one ExecStart=" % unit)
    cmd = expand(execs[0], env)
    if argv_out:
        with open(argv_out, "w") as f:
            f.write("\n".join(cmd) + "\n")
    if strict and os.geteuid() == 0 and shutil.which("unshare"):
        mounts = [l.split()[4] for l in open("/proc/self/mountinfo")]
        script = "".join("mount -o remount,bind,ro %s 2>/dev/null; "
                         % shlex.quote(m) for m in mounts if "\\" not in m)
        for p in rw:
            if os.path.isdir(p):
                q = shlex.quote(p)
                script += ("mount --bind %s %s && "
                           "mount -o remount,bind,rw %s || exit 99; " % (q, q, q))
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               script + 'exec "$@"', "sh"] + cmd
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
