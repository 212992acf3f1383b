#!/usr/bin/env python3
"""hidden_root.py UPPER: overlayfs whiteouts that hide every Debian package a bare image lacks.

Used by tests/gpu/rehearse.sh to make, on a CPU machine, a root shaped like the GPU device image:
the base system, Python and the CUDA/torch files stay; the libraries, tools and headers pft needs
from Debian (Open MPI, HDF5, yaml-cpp, Boost, spdlog, fmt, Slurm, munge, compilers, ...) vanish.

The base is the Depends/Pre-Depends closure, over the installed packages, of every package of
priority `required` (what any Debian/Ubuntu image has) plus Python 3 and the few tools the device
image also has and the check uses (binutils for `ar`, util-linux, procps, findutils, tar, xz,
zstd). Every other installed package is hidden: for each of its files under /usr or /etc (dpkg's
lists, /lib and /bin mapped to /usr as merged-/usr has them), a whiteout (a 0/0 character device)
is made at the same path under UPPER/usr or UPPER/etc, skipping files a base package also lists.
A directory whose entries are all hidden gets one whiteout. Links in /usr/bin, /usr/sbin and /etc/alternatives that resolve to a hidden file are hidden too
(update-alternatives makes those outside dpkg's lists). Mount UPPER/usr over /usr (and UPPER/etc
over /etc) as an overlay's upper directory, in a private mount namespace.

Prints the hidden package count, the file count, and a few hidden packages to stdout.
"""
import os
import stat
import sys

EXTRA_BASE = ["python3", "python3-minimal", "python3-venv", "binutils", "util-linux", "procps",
              "findutils", "tar", "xz-utils", "zstd", "gzip", "coreutils", "dpkg", "hostname"]
STATUS = "/var/lib/dpkg/status"
INFO = "/var/lib/dpkg/info"


def installed_packages():
    pkgs, cur = {}, {}
    with open(STATUS, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for block in text.split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name = fields.get("Package")
        if name and fields.get("Status", "").endswith(" installed"):
            pkgs[name] = fields
    del cur
    return pkgs


def names(field):
    out = []
    for alt in field.split(","):
        for choice in alt.split("|"):
            n = choice.strip().split(" ")[0].split(":")[0]
            if n:
                out.append(n)
    return out


def closure(pkgs, roots):
    provides = {}
    for name, f in pkgs.items():
        for p in names(f.get("Provides", "")):
            provides.setdefault(p, []).append(name)
    seen, queue = set(), [r for r in roots if r in pkgs]
    while queue:
        n = queue.pop()
        if n in seen:
            continue
        seen.add(n)
        f = pkgs[n]
        for dep in names(f.get("Depends", "")) + names(f.get("Pre-Depends", "")):
            for m in ([dep] if dep in pkgs else provides.get(dep, [])):
                if m not in seen:
                    queue.append(m)
    return seen


def files_of(pkg):
    for cand in (f"{INFO}/{pkg}.list", f"{INFO}/{pkg}:amd64.list"):
        if os.path.exists(cand):
            with open(cand, encoding="utf-8", errors="replace") as f:
                return [l.rstrip("\n") for l in f if l.strip()]
    return []


def canonical(path):
    for top in ("/lib/", "/lib64/", "/bin/", "/sbin/", "/lib32/", "/libx32/"):
        if path.startswith(top) and os.path.islink(top.rstrip("/")):
            return "/usr" + path
    return path


def main():
    upper = sys.argv[1]
    pkgs = installed_packages()
    python = [n for n in pkgs if n.startswith(("python3", "libpython3"))
              and not n.startswith(("python3-h5py", "python3-mpi"))]
    roots = [n for n, f in pkgs.items() if f.get("Priority") == "required"] + EXTRA_BASE + python
    base = closure(pkgs, roots)
    hidden = sorted(set(pkgs) - base)
    keep = set()
    for p in base:
        keep.update(canonical(x) for x in files_of(p))
    targets = set()
    for p in hidden:
        for x in files_of(p):
            c = canonical(x)
            if c in keep or not c.startswith(("/usr/", "/etc/")):
                continue
            if os.path.islink(c) or os.path.isfile(c):
                targets.add(c)
    for d in ("/usr/bin", "/usr/sbin", "/etc/alternatives"):
        for e in os.listdir(d):
            p = os.path.join(d, e)
            if os.path.islink(p) and os.path.realpath(p) in targets:
                targets.add(p)
    # A directory all of whose entries are hidden gets one whiteout instead of one per entry.
    dirs = set()
    for t in targets:
        d = os.path.dirname(t)
        while d not in ("/usr", "/etc", "/") and d not in dirs:
            dirs.add(d)
            d = os.path.dirname(d)
    hidden_dirs = set()
    for d in sorted(dirs, key=lambda x: -x.count("/")):
        if os.path.islink(d):
            continue
        try:
            entries = [os.path.join(d, e) for e in os.listdir(d)]
        except OSError:
            continue
        if all(e in targets or e in hidden_dirs for e in entries):
            hidden_dirs.add(d)
    whiteouts = {t for t in targets | hidden_dirs if os.path.dirname(t) not in hidden_dirs}
    for t in whiteouts:
        w = os.path.join(upper, t.lstrip("/"))
        os.makedirs(os.path.dirname(w), exist_ok=True)
        os.mknod(w, stat.S_IFCHR | 0o600, os.makedev(0, 0))
    print(f"hidden {len(hidden)} of {len(pkgs)} packages, {len(targets)} files "
          f"({len(whiteouts)} whiteouts) "
          f"(e.g. {', '.join(h for h in hidden if h.startswith(('libopenmpi', 'libhdf5', 'slurm', 'libyaml')))})")


if __name__ == "__main__":
    main()
