#!/usr/bin/env python3
"""getopt-tables.py TOPDIR -- every command's options, read from the C
source (not from the tool): one line per command, "COMMAND<TAB>OPTIONS",
OPTIONS being "--long" names and "-x" short options, space separated.

The getopt_long tables in tools/cmd-*.c are expanded with the option macros
of tools/cli.h (CLI_IMAGE_OPTIONS, ...).  A file's tables belong to its
command (cmd-push.c: push), and so do those of its COMMAND-options.c if
there is one (push-options.c); cmd-key.c has one per subcommand, told apart by
the function that holds them (key_create: "key create").  Short options
come from the getopt_long call's option string (cli_parse_image_args' for
info/map/export/bitmap)."""
import re, sys, os

top = sys.argv[1]
tools = os.path.join(top, "tools")

def strip_comments(s):
    return re.sub(r"/\*.*?\*/", "", s, flags=re.S)

cli_h = strip_comments(open(os.path.join(tools, "cli.h")).read())
macros = {}
for m in re.finditer(r"#define\s+(CLI_\w+)\s*((?:.*\\\n)*.*)", cli_h):
    macros[m.group(1)] = m.group(2).replace("\\\n", " ")

def expand(body):
    for _ in range(5):
        body = re.sub(r"\b(CLI_\w+_OPTIONS?)\b(?!_)",
                      lambda m: macros.get(m.group(1), m.group(1)), body)
    return body

def longs(body):
    return re.findall(r'\{\s*"([a-z][a-z0-9-]*)"\s*,', expand(body))

def shorts(text):
    out = set()
    for m in re.finditer(r'getopt_long\s*\([^,]+,[^,]+,\s*"([^"]*)"', text):
        out |= {c for c in m.group(1) if c.isalpha()}
    return out

chain_c = strip_comments(open(os.path.join(tools, "cli-chain.c")).read())
image_shorts = shorts(chain_c)

for f in sorted(os.listdir(tools)):
    m = re.match(r"cmd-(\w+)\.c$", f)
    if not m:
        continue
    cmd = m.group(1)
    text = strip_comments(open(os.path.join(tools, f)).read())
    opts_c = os.path.join(tools, cmd + "-options.c")
    if os.path.exists(opts_c):
        text += strip_comments(open(opts_c).read())
    tables = list(re.finditer(r"struct option\s+\w+\s*\[\]\s*=\s*\{(.*?)\};",
                              text, re.S))
    uses_image_args = "cli_parse_image_args" in text
    if cmd == "key":
        funcs = [(mm.start(), mm.group(1))
                 for mm in re.finditer(r"^key_(\w+)\s*\(", text, re.M)]
        for t in tables:
            sub = [n for pos, n in funcs if pos < t.start()][-1]
            body_end = text.find("\n}\n", t.end())
            sh = shorts(text[t.end():body_end])
            opts = ["--" + o for o in longs(t.group(1))] + ["-" + c for c in sorted(sh)]
            print("key %s\t%s" % (sub, " ".join(opts)))
        continue
    sh = image_shorts if uses_image_args else shorts(text)
    names = []
    for t in tables:
        names += longs(t.group(1))
    opts = ["--" + o for o in names] + ["-" + c for c in sorted(sh)]
    print("%s\t%s" % (cmd, " ".join(opts)))
