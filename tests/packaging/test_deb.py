"""The .deb (issue 13): built with cargo-deb from the debug binary (no release build: CI has
only the debug build), unpacked with `dpkg -x` and checked file by file, its binary run, its
unit verified by `systemd-analyze verify`, and, where the machine allows (root, dpkg, no
cairn package already installed), installed on this host with `dpkg -i`, removed and purged.

The package is made as packaging/README.md says, except for the binary: a copy of the debug
binary stands in `<scratch>/target/release/cairn` and cargo-deb runs with CARGO_TARGET_DIR
pointing there and `--strip --fast` (the debug binary is 350 MB before stripping).

Run: `python -m pytest -q tests/packaging` (`.ci/run` does, with the binary in $CAIRN_BIN).
"""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from cairn_agent import CAIRN_BIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CARGO_DEB_TIMEOUT_S = 600

# Every file the package must hold: path -> mode.
EXPECTED = {
    "usr/bin/cairn": 0o755,
    "etc/cairn/agent.toml": 0o640,
    "usr/lib/systemd/system/cairn.service": 0o644,
    "usr/share/bash-completion/completions/cairn": 0o644,
    "usr/share/zsh/vendor-completions/_cairn": 0o644,
    "usr/share/fish/vendor_completions.d/cairn.fish": 0o644,
    "usr/share/man/man1/cairn.1.gz": 0o644,
    "usr/share/man/man1/cairn-validate.1.gz": 0o644,
    "usr/share/man/man1/cairn-kv-get.1.gz": 0o644,
    "usr/share/doc/cairn/README.md": 0o644,
    "usr/share/doc/cairn/agent.toml.example": 0o644,
    "usr/share/doc/cairn/copyright": 0o644,
}


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=CARGO_DEB_TIMEOUT_S, **kwargs)


@pytest.fixture(scope="module")
def deb():
    """(path of the .deb, its contents unpacked with `dpkg -x`)."""
    scratch = tempfile.mkdtemp(prefix="cairn-deb-")
    release = os.path.join(scratch, "target", "release")
    os.makedirs(release)
    shutil.copy2(CAIRN_BIN, os.path.join(release, "cairn"))
    generated = run([os.path.join(release, "cairn"), "generate-assets", os.path.join(release, "assets")])
    assert generated.returncode == 0, generated.stderr
    path = os.path.join(scratch, "cairn.deb")
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(scratch, "target"))
    built = run(["cargo", "deb", "--no-build", "--strip", "--fast", "-o", path], cwd=REPO, env=env)
    assert built.returncode == 0, f"cargo deb failed:\n{built.stdout}\n{built.stderr}"
    root = os.path.join(scratch, "root")
    unpacked = run(["dpkg-deb", "-x", path, root])
    assert unpacked.returncode == 0, unpacked.stderr
    yield path, root
    shutil.rmtree(scratch, ignore_errors=True)


def field(deb_path, name):
    shown = run(["dpkg-deb", "-f", deb_path, name])
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def test_every_file_is_there_with_its_mode(deb):
    path, root = deb
    for relative, mode in EXPECTED.items():
        found = os.stat(os.path.join(root, relative))
        assert stat.S_ISREG(found.st_mode), relative
        assert stat.S_IMODE(found.st_mode) == mode, f"{relative}: {oct(stat.S_IMODE(found.st_mode))}"
        assert found.st_size > 0, f"{relative} is empty"
    listing = run(["dpkg-deb", "-c", path]).stdout
    assert "root/root" in listing or " 0/0 " in listing, "files must belong to root in the archive"
    control = run(["dpkg-deb", "-e", path, os.path.join(root, "..", "control")])
    assert control.returncode == 0, control.stderr
    with open(os.path.join(root, "..", "control", "conffiles")) as f:
        assert f.read().split() == ["/etc/cairn/agent.toml"]
    depends = field(path, "Depends")
    assert "adduser" in depends and "libc6" in depends, depends
    # The completions know the verbs, the new ones included.
    with open(os.path.join(root, "usr/share/bash-completion/completions/cairn")) as f:
        bash = f.read()
    for verb in ("validate", "info", "debug", "kv", "agent"):
        assert verb in bash, verb


def test_the_unpacked_binary_runs_and_accepts_the_packaged_config(deb):
    _path, root = deb
    cairn = os.path.join(root, "usr/bin/cairn")
    version = run([cairn, "version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("Cairn v"), version.stdout
    # Stripped, unlike the debug binary it came from.
    assert os.path.getsize(cairn) < os.path.getsize(CAIRN_BIN) / 2
    valid = run([cairn, "validate", os.path.join(root, "etc/cairn")])
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.strip() == "Configuration is valid!"


def test_the_unit_passes_systemd_analyze_verify(deb, tmp):
    _path, root = deb
    with open(os.path.join(root, "usr/lib/systemd/system/cairn.service")) as f:
        unit = f.read()
    for line in ("Type=notify", "User=cairn", "ExecStart=/usr/bin/cairn agent -config-dir=/etc/cairn",
                 "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict", "ProtectHome=yes",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "LimitNOFILE=65536",
                 "StateDirectory=cairn", "Restart=on-failure"):
        assert line in unit, line
    # `--root` would look for sysinit.target and /bin/kill in the unpacked tree too, so the unit
    # is verified against this host with ExecStart pointing into the unpacked tree, and man
    # looking there for man:cairn(1).
    os.makedirs(os.path.join(tmp, "units"))
    copy = os.path.join(tmp, "units", "cairn.service")
    with open(copy, "w") as f:
        f.write(unit.replace("/usr/bin/cairn", os.path.join(root, "usr/bin/cairn")))
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/share/man"))
    verified = run(["systemd-analyze", "verify", copy], env=env)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr


def installable():
    if os.geteuid() != 0 or shutil.which("dpkg") is None:
        return False
    # Never touch a cairn package someone installed on this machine.
    return run(["dpkg-query", "-W", "-f=${Status}", "cairn"]).stdout.find("installed") < 0


def mode_owner(path):
    found = os.stat(path)
    return oct(stat.S_IMODE(found.st_mode)), pwd.getpwuid(found.st_uid).pw_name, grp.getgrgid(found.st_gid).gr_name


@pytest.mark.skipif(not installable(), reason="needs root, dpkg, and no cairn package installed")
def test_install_reinstall_remove_and_purge_on_this_host(deb):
    path, _root = deb
    user_existed = run(["getent", "passwd", "cairn"]).returncode == 0
    try:
        installed = run(["dpkg", "-i", path])
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert run(["/usr/bin/cairn", "version"]).returncode == 0
        account = pwd.getpwnam("cairn")
        assert account.pw_uid < 1000 and account.pw_dir == "/var/lib/cairn", account
        assert mode_owner("/var/lib/cairn") == ("0o700", "cairn", "cairn")
        assert mode_owner("/etc/cairn/agent.toml") == ("0o640", "root", "cairn")
        assert os.path.isfile("/lib/systemd/system/cairn.service")
        # configure runs again on an upgrade: every step must be idempotent.
        again = run(["dpkg", "-i", path])
        assert again.returncode == 0, again.stdout + again.stderr
        assert mode_owner("/etc/cairn/agent.toml") == ("0o640", "root", "cairn")
        removed = run(["dpkg", "-r", "cairn"])
        assert removed.returncode == 0, removed.stderr
        assert not os.path.exists("/usr/bin/cairn")
        assert os.path.isfile("/etc/cairn/agent.toml"), "remove keeps conffiles"
        assert os.path.isdir("/var/lib/cairn"), "remove keeps the data"
        purged = run(["dpkg", "--purge", "cairn"])
        assert purged.returncode == 0, purged.stderr
        assert not os.path.exists("/etc/cairn") and not os.path.exists("/var/lib/cairn")
        assert "/etc/cairn/agent.toml" not in run(["dpkg-statoverride", "--list"]).stdout
    finally:
        run(["dpkg", "--purge", "cairn"])
        if not user_existed and run(["getent", "passwd", "cairn"]).returncode == 0:
            run(["deluser", "--system", "cairn"])
