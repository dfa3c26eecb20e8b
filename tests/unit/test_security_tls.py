"""`gymctl up --tls` and the stack's record, without Docker: the proxy in the rendered stack, certificates made and checked
(a key of another certificate, an expired certificate: clear errors), the token and CA found by status/collect, bad tokens."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from gymctl.cli.errors import run_app
from gymctl.cli.main import app
from gymctl.compose.model import RenderSettings
from gymctl.compose.render import render
from gymctl.config import load_config
from gymctl.errors import UsageError
from tests.conftest import EXAMPLE_CONFIG, REPO, SCRIPTED_CONFIG

CFG = ["-c", EXAMPLE_CONFIG, "-c", SCRIPTED_CONFIG]


def example(topology: str = "separated", **settings: object) -> dict:
    cfg = load_config([EXAMPLE_CONFIG, SCRIPTED_CONFIG], cwd=REPO)
    return yaml.safe_load(render(cfg, topology, RenderSettings(**settings)).compose_yaml)  # type: ignore[arg-type]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        run_app(app, list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(exit_.value.code or 0), out.out + out.err


def test_tls_moves_every_published_port_to_the_proxy_and_every_container_is_read_only():
    plain, tls = example(), example(tls=True)
    published = {p for s in plain["services"].values() for p in s.get("ports", [])}
    proxy = tls["services"]["tls-proxy"]
    assert {p.rsplit(":", 1)[0] for p in proxy["ports"]} == {p.rsplit(":", 1)[0] for p in published}  # same host ip:port
    assert all("ports" not in s for name, s in tls["services"].items() if name != "tls-proxy")
    assert proxy["image"] == "gymctl/nginx:latest" and "GYMCTL_TLS_KEY" in proxy["environment"]  # by name: no value in the file
    agent = tls["services"]["example_single_tool_call_simple_agent"]
    assert any(e.startswith("GYMCTL_HOST_URL=https://127.0.0.1:") for e in agent["environment"])
    for name, s in tls["services"].items():
        assert s["read_only"] is True and s["cap_drop"] == ["ALL"] and "no-new-privileges:true" in s["security_opt"], name
        assert any(t.startswith("/tmp:") for t in s["tmpfs"]), name
    conf = next(e for e in proxy["environment"] if e.startswith("GYMCTL_NGINX_CONF="))
    assert "listen 8443 ssl;" in conf and "set $$upstream head:11000;" in conf  # `$` escaped for compose
    # An upstream it cannot reach (a container restarting) closes the client's connection with no answer, as without the
    # proxy, so gymctl's clients send again; the servers' own 502s pass through (no proxy_intercept_errors).
    assert "error_page 502 504 = @unreachable;" in conf and "location @unreachable {\n      return 444;" in conf
    assert "proxy_intercept_errors" not in conf


def test_config_reaches_containers_in_their_environment_not_a_copied_file():
    doc = example()
    assert "configs" not in doc  # compose copies configs into containers: a read-only root refuses that
    for name, s in doc["services"].items():
        handed = next(e for e in s["environment"] if e.startswith("GYMCTL_CONFIG_YAML="))
        assert yaml.safe_load(handed.partition("=")[2])["head_server"]["port"] == 11000, name


def test_tls_is_for_separated_stacks_without_monitoring():
    with pytest.raises(UsageError, match="use --topology separated"):
        example("all-in-one", tls=True)
    with pytest.raises(UsageError, match="--tls with --monitoring"):
        example(tls=True, monitoring=True)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def self_signed(d: Path, name: str) -> tuple[Path, Path]:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "30", "-subj", "/CN=127.0.0.1", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def expired(d: Path) -> tuple[Path, Path]:
    """A certificate valid in January 2020 only (`openssl ca` sets the dates)."""
    (d / "index.txt").touch()
    (d / "serial").write_text("01\n")
    (d / "ca.cnf").write_text("[ca]\ndefault_ca=x\n[x]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\n"
                              "policy=p\n[p]\ncommonName=supplied\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "old.key", "-out", "old.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "old.key", "-in", "old.csr", "-out", "old.pem",
            "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", cwd=d)
    return d / "old.pem", d / "old.key"


def test_given_certificates_are_checked(tmp_path):
    from gymctl.docker.tls_certs import check_given

    cert, key = self_signed(tmp_path, "a")
    _, other_key = self_signed(tmp_path, "b")
    assert check_given(cert, key).ca is None
    with pytest.raises(UsageError, match=r"--tls-key .*b\.key does not match --tls-cert .*a\.pem"):
        check_given(cert, other_key)
    old, old_key = expired(tmp_path)
    with pytest.raises(UsageError, match=r"--tls-cert .*old\.pem has expired \(Feb  1 00:00:00 2020 GMT\); renew it"):
        check_given(old, old_key)
    with pytest.raises(UsageError, match=r"--tls-cert .*: not a PEM certificate"):
        check_given(key, key)
    with pytest.raises(UsageError, match=r"--tls-key .*nope\.key: no such file"):
        check_given(cert, tmp_path / "nope.key")


def test_bad_tls_input_on_the_command_line_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GYMCTL_AUTH_TOKEN", raising=False)
    cert, key = self_signed(tmp_path, "a")
    _, other = self_signed(tmp_path, "b")
    code, text = cli(capsys, "up", "--tls", "--tls-cert", str(cert), "--tls-key", str(other), *CFG)
    assert code == 2 and "does not match --tls-cert" in text
    old, old_key = expired(tmp_path)
    code, text = cli(capsys, "up", "--tls", "--tls-cert", str(old), "--tls-key", str(old_key), *CFG)
    assert code == 2 and "has expired (Feb  1 00:00:00 2020 GMT); renew it" in text and len(text.strip().splitlines()) == 1, text
    code, text = cli(capsys, "up", "--tls", "--tls-cert", str(cert), *CFG)
    assert code == 2 and "give both --tls-cert and --tls-key, or neither" in text
    code, text = cli(capsys, "up", "--tls-cert", str(cert), "--tls-key", str(key), *CFG)
    assert code == 2 and "--tls-cert and --tls-key go with --tls" in text


def test_a_generated_ca_signs_a_certificate_python_trusts_and_is_kept(tmp_path):
    import ssl

    from gymctl.docker.tls_certs import local_certificate

    files = local_certificate(tmp_path / "tls", ["127.0.0.1", "localhost"], "p")
    assert files.ca is not None
    ssl.create_default_context(cafile=str(files.ca)).load_cert_chain(files.cert, files.key)  # a valid pair under that CA
    out = subprocess.run(["openssl", "verify", "-CAfile", str(files.ca), str(files.cert)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "tls").st_mode) == 0o700 and stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert not list((tmp_path / "tls").glob("*.key")) and sorted(p.name for p in (tmp_path / "tls").iterdir()) == [
        "ca.pem", "cert.pem", "hosts", "key.pem"]  # the CA's key is gone
    again = local_certificate(tmp_path / "tls", ["127.0.0.1", "localhost"], "p")
    assert again.cert.read_text() == files.cert.read_text()  # kept: clients keep trusting it


def test_the_stack_record_hands_status_and_collect_the_token_and_ca(tmp_path, monkeypatch):
    from gymctl.cli.stack_access import remember, stack_token, use_stack
    from gymctl.docker.stack_state import forget, stack_dir

    monkeypatch.chdir(tmp_path)
    for name in ("GYMCTL_AUTH_TOKEN", "GYMCTL_TLS_CA_FILE"):  # use_stack sets them: undone after the test (setenv records them unset)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    token, path = stack_token("s1", no_auth=False)
    assert len(token) >= 40 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(stack_dir("s1")).st_mode) == 0o700
    assert stack_token("s1", no_auth=False)[0] == token  # the next `up` keeps it
    remember("s1", "separated", "https://127.0.0.1:11000", path, tmp_path / "ca.pem")
    assert use_stack(None) == "https://127.0.0.1:11000"  # the only stack here
    assert os.environ["GYMCTL_AUTH_TOKEN"] == token and os.environ["GYMCTL_TLS_CA_FILE"] == str(tmp_path / "ca.pem")
    monkeypatch.delenv("GYMCTL_AUTH_TOKEN")
    assert use_stack("http://127.0.0.1:9999") == "http://127.0.0.1:9999" and "GYMCTL_AUTH_TOKEN" not in os.environ  # another head
    assert use_stack("https://127.0.0.1:11000/") == "https://127.0.0.1:11000/" and os.environ["GYMCTL_AUTH_TOKEN"] == token
    forget("s1")
    assert use_stack(None) is None and not path.exists()


def test_a_token_with_a_newline_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", "abc\ndef")
    for verb in (["up", *CFG], ["status"]):
        code, text = cli(capsys, *verb)
        assert code != 0 and "GYMCTL_AUTH_TOKEN: the token holds a newline, a space or a control character" in text, verb
        assert "abc" not in text  # the value is never echoed
    assert not (tmp_path / ".gymctl").exists()  # nothing kept


def test_no_auth_and_a_token_together_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GYMCTL_AUTH_TOKEN", "tok-123")
    code, text = cli(capsys, "up", "--no-auth", *CFG)
    assert code == 2 and "--no-auth with GYMCTL_AUTH_TOKEN set" in text
