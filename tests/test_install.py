"""tools/install.py: uv with pip's configuration, else pip with the same arguments."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import install  # noqa: E402

LISTED = [
    ":env:.find-links='/opt/wheels'",
    ":env:.default-timeout='180'",
    "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'",
    "global.find-links='/srv/other'",
    "global.constraint='/etc/pip/constraints.txt'",
    "global.index-url='https://mirror.example/simple'",
    "global.cert='/etc/ssl/certs/ca.crt'",
    "site.no-index='false'",           # another file's section that uv has no use for is ignored
    "not a configuration line",
]


def test_pip_config_environment_wins_and_quotes_go():
    config = install.pip_config(LISTED)
    assert config["find-links"] == "/opt/wheels"           # PIP_FIND_LINKS over the file's value
    assert config["extra-index-url"] == "file:///opt/a/simple file:///opt/b/simple"
    assert config["constraint"] == "/etc/pip/constraints.txt"
    assert "no-index" not in config


def test_uv_options_carry_pip_configuration():
    args, env = install.uv_options(install.pip_config(LISTED))
    pairs = list(zip(args, args[1:]))
    assert ("--index-strategy", "unsafe-best-match") in pairs  # every index searched, as pip does
    assert "--compile-bytecode" in args                         # pip compiles bytecode too
    assert ("--index-url", "https://mirror.example/simple") in pairs
    assert ("--extra-index-url", "file:///opt/a/simple") in pairs
    assert ("--extra-index-url", "file:///opt/b/simple") in pairs
    assert ("--find-links", "/opt/wheels") in pairs and ("--find-links", "/srv/other") not in pairs
    assert ("--constraint", "/etc/pip/constraints.txt") in pairs
    assert "--default-timeout" not in " ".join(args)
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca.crt"}
    assert "--no-index" in install.uv_options({"no-index": "true"})[0]


def test_an_index_url_on_the_command_line_replaces_the_configured_one():
    args, _ = install.uv_options({"index-url": "https://mirror.example/simple"},
                                 given=["torch", "--index-url", "https://download.pytorch.org/whl/cpu"])
    assert "--index-url" not in args


@pytest.mark.parametrize("uv, uv_status, forced, expected", [
    ("/bin/uv", 0, None, ["uv"]),
    ("/bin/uv", 1, None, ["uv", "pip"]),     # uv failed: pip with the same arguments
    (None, 0, None, ["pip"]),                # uv could not be installed
    ("/bin/uv", 0, "pip", ["pip"]),          # NORMBOOK_INSTALLER=pip
])
def test_falls_back_to_pip(monkeypatch, uv, uv_status, forced, expected):
    ran = []

    def fake_run(cmd, env=None):
        ran.append(cmd)
        return uv_status if cmd[0] == "/bin/uv" else 0

    monkeypatch.setattr(install, "run", fake_run)
    monkeypatch.setattr(install, "uv_binary", lambda: uv)
    if forced:
        monkeypatch.setenv("NORMBOOK_INSTALLER", forced)
    else:
        monkeypatch.delenv("NORMBOOK_INSTALLER", raising=False)
    assert install.main(["-q", "-r", "requirements.txt"]) == 0
    assert ["uv" if cmd[0] == "/bin/uv" else "pip" for cmd in ran] == expected
    assert all(cmd[-3:] == ["-q", "-r", "requirements.txt"] for cmd in ran)
    if "pip" in expected:
        assert ran[-1][:4] == [sys.executable, "-m", "pip", "install"]
