"""The --tls certificate of a stack: a given one checked (its key matches, it is in date), or a local CA and a
certificate it signs generated with the openssl CLI. The CA's key is deleted once the certificate is signed."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gymctl.errors import GymctlError, UsageError

CA_DAYS = 825
CERT_DAYS = 397  # what browsers accept for a leaf certificate
RENEW_S = 30 * 86400  # a kept certificate that expires sooner is made anew


@dataclass
class TlsFiles:
    cert: Path  # PEM: the server certificate (and any chain)
    key: Path  # PEM: its private key
    ca: Path | None  # the CA clients trust (generated), None for a given certificate (the system's CAs, or GYMCTL_TLS_CA_FILE)

    def pem(self) -> tuple[str, str]:
        return self.cert.read_text(), self.key.read_text()


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("openssl") is None:
        raise GymctlError("openssl is not installed; --tls needs it to make or check certificates: apt-get install openssl")
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no detail")


def check_given(cert: Path, key: Path) -> TlsFiles:
    """--tls-cert / --tls-key: readable PEM, the key belongs to the certificate, the certificate has not expired."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UsageError(f"{flag} {path}: no such file; give the PEM file")
    pub = _openssl("x509", "-in", str(cert), "-noout", "-pubkey")
    if pub.returncode != 0:
        raise UsageError(f"--tls-cert {cert}: not a PEM certificate ({_first_line(pub.stderr)})")
    key_pub = _openssl("pkey", "-in", str(key), "-pubout")
    if key_pub.returncode != 0:
        raise UsageError(f"--tls-key {key}: not an unencrypted PEM private key ({_first_line(key_pub.stderr)}); "
                         "give the key without a passphrase (openssl pkey -in KEY -out key.pem)")
    if pub.stdout.strip() != key_pub.stdout.strip():
        raise UsageError(f"--tls-key {key} does not match --tls-cert {cert} (another certificate's key); give the key it was issued for")
    if _openssl("x509", "-in", str(cert), "-noout", "-checkend", "0").returncode != 0:
        end = _openssl("x509", "-in", str(cert), "-noout", "-enddate").stdout.strip().partition("=")[2]
        raise UsageError(f"--tls-cert {cert} has expired ({end}); renew it, or leave out --tls-cert/--tls-key for a generated one")
    return TlsFiles(cert, key, None)


def _in_date(cert: Path, seconds: int) -> bool:
    return cert.is_file() and _openssl("x509", "-in", str(cert), "-noout", "-checkend", str(seconds)).returncode == 0


def _san(hosts: list[str]) -> str:
    import ipaddress

    entries = []
    for h in dict.fromkeys(hosts):
        try:
            ipaddress.ip_address(h.strip("[]"))
            entries.append(f"IP:{h.strip('[]')}")
        except ValueError:
            entries.append(f"DNS:{h}")
    return ",".join(entries)


def local_certificate(folder: Path, hosts: list[str], project: str) -> TlsFiles:
    """A certificate for `hosts` signed by a local CA, in `folder` (0700; keys 0600); kept while in date and for the same hosts."""
    from gymctl.docker.stack_state import private_dir

    private_dir(folder)
    ca = folder / "ca.pem"
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", ca)
    hosts_file = folder / "hosts"
    san = _san(hosts)
    if _in_date(files.cert, RENEW_S) and files.key.is_file() and ca.is_file() \
            and hosts_file.is_file() and hosts_file.read_text() == san:
        return files
    with tempfile.TemporaryDirectory(prefix="gymctl-ca-") as tmp:
        ca_key, csr, ext = Path(tmp) / "ca.key", Path(tmp) / "cert.csr", Path(tmp) / "ext.cnf"
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        steps = [
            ("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", str(CA_DAYS),
             "-subj", f"/CN=gymctl local CA ({project})", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
            ("req", "-new", *ec, "-keyout", str(files.key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"),
        ]
        ext.write_text(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                       f"subjectAltName={san}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        steps.append(("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-set_serial", "0x" + secrets.token_hex(15),
                      "-days", str(CERT_DAYS), "-out", str(files.cert), "-extfile", str(ext)))
        for argv in steps:
            done = _openssl(*argv)
            if done.returncode != 0:
                raise GymctlError(f"openssl {argv[0]} failed making the stack's certificate: {_first_line(done.stderr)}")
    for path in (files.key, files.cert, ca):
        path.chmod(0o600)
    hosts_file.write_text(san)
    return files
