"""TLS and tokens in the Python eater library against a real TLS nd-hub with --auth:
wss:// end to end (kitchen -> hub -> DumplingEater) with the token from a file and from
ND_HUB_TOKEN, a wrong CA refused, a wrong token refused, and mutual TLS with and without a
client certificate. Certificates are made in the test with the openssl CLI (skipped with
a message when it is missing; scripts/setup.sh installs it)."""

import asyncio
import hashlib
import json
import secrets
import shutil
import subprocess

import pytest
import websockets

from conftest import HubProcess
from netdumplings_eater import TOKEN_ENV, DumplingEater, HubLinkError, Link

TIMEOUT = 15

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None,
    reason="SKIP: the openssl CLI is missing (apt-get install openssl) to make test certificates")


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=30)


def make_ca(d, name):
    """A CA (``name-ca.pem``, ``name-ca-key.pem``)."""
    ca, key = d / (name + "-ca.pem"), d / (name + "-ca-key.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(ca), "-days", "2",
            "-subj", "/CN={} test CA".format(name))
    return ca, key


def issue(d, ca, name, san):
    """A leaf certificate signed by ``ca`` for ``san`` (e.g. ``IP:127.0.0.1``)."""
    cert, key, csr = d / (name + ".pem"), d / (name + "-key.pem"), d / (name + ".csr")
    ext = d / (name + ".ext")
    ext.write_text("subjectAltName={}\nbasicConstraints=CA:FALSE\n".format(san))
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return cert, key


def principal(name, role, extra=""):
    token = secrets.token_urlsafe(32)
    entry = '[[principal]]\nname = "{}"\nrole = "{}"\ntoken_sha256 = "{}"\n{}\n'.format(
        name, role, hashlib.sha256(token.encode()).hexdigest(), extra)
    return token, entry


@pytest.fixture
def pki(tmp_path):
    ca = make_ca(tmp_path, "hub")
    cert, key = issue(tmp_path, ca, "hub", "IP:127.0.0.1,DNS:localhost")
    kitchen_token, k = principal("sensor-a", "kitchen", 'kitchens = ["sensor-a"]')
    eater_token, e = principal("reader", "eater")
    auth = tmp_path / "auth.toml"
    auth.write_text(k + e)
    token_file = tmp_path / "reader.token"
    token_file.write_text(eater_token + "\n")
    return dict(dir=tmp_path, ca=ca, cert=cert, key=key, auth=auth, kitchen=kitchen_token,
                eater=eater_token, token_file=token_file)


def tls_hub(pki, *more):
    return HubProcess(extra=["-f", "60", "--tls-cert", str(pki["cert"]), "--tls-key",
                             str(pki["key"]), "--auth", str(pki["auth"])] + list(more))


def dumpling_text(seq):
    return json.dumps({"metadata": {"chef": "TlsChef", "kitchen": "sensor-a",
                                    "creation_time": 1795739862.5 + seq, "driver": "packet"},
                       "payload": {"seq": seq}})


async def tls_kitchen(hub, pki, messages, client=None):
    """A kitchen over wss:// with its token (through the same Link as the eater)."""
    link = Link(tls_ca=pki["ca"][0], tls_client_cert=client and client[0],
                tls_client_key=client and client[1])
    link.token = pki["kitchen"]
    uri = "wss://127.0.0.1:{}".format(hub.in_port)
    async with link.connect(uri) as ws:
        await ws.send(json.dumps({"kitchen_name": "sensor-a", "interface": "lo"}))
        for m in messages:
            await ws.send(m)
        await asyncio.sleep(0.3)


async def eat(eater, count, *others):
    task = asyncio.ensure_future(eater._run(count))
    await asyncio.sleep(0.5)  # connected and registered before the kitchen sends
    side = [asyncio.ensure_future(o) for o in others]
    try:
        await asyncio.wait_for(task, TIMEOUT)
    finally:
        for s in side:
            s.cancel()


def test_wss_end_to_end_with_token_file_and_env(pki, monkeypatch):
    hub = tls_hub(pki)
    try:
        sent = [dumpling_text(i) for i in range(20)]
        got = []

        async def on_dumpling(d):
            got.append(d.raw)

        eater = DumplingEater(name="tls-eater", hub="wss://127.0.0.1:{}".format(hub.out_port),
                              chef_filter=["TlsChef"], on_dumpling=on_dumpling,
                              tls_ca=pki["ca"][0], token_file=pki["token_file"],
                              reconnect=False)
        assert "<redacted>" in repr(eater.link) and pki["eater"] not in repr(eater.link)
        asyncio.run(eat(eater, 20, tls_kitchen(hub, pki, sent)))
        assert got == sent, "byte for byte over wss://"

        # The same token from ND_HUB_TOKEN (no token_file): the welcome status arrives.
        monkeypatch.setenv(TOKEN_ENV, pki["eater"])
        statuses = []

        async def on_status(d):
            statuses.append(d.payload)

        env_eater = DumplingEater(name="env-eater", hub="wss://127.0.0.1:{}".format(
            hub.out_port), chef_filter=["SystemStatusChef"], on_dumpling=on_status,
            tls_ca=pki["ca"][0], reconnect=False)
        asyncio.run(asyncio.wait_for(env_eater._run(1), TIMEOUT))
        assert statuses and "dumpling_eater_count" in statuses[0]
    finally:
        hub.stop()


def test_wrong_ca_and_wrong_token_are_refused_clearly(pki):
    hub = tls_hub(pki)
    try:
        other = make_ca(pki["dir"], "other")
        uri = "wss://127.0.0.1:{}".format(hub.out_port)
        eater = DumplingEater(name="e", hub=uri, tls_ca=other[0],
                              token_file=pki["token_file"], on_dumpling=None)
        with pytest.raises(HubLinkError) as err:
            asyncio.run(asyncio.wait_for(eater._run(1), TIMEOUT))
        message = str(err.value)
        assert "does not trust" in message and "tls_ca" in message, message
        assert err.value.fatal

        wrong = pki["dir"] / "wrong.token"
        wrong.write_text(secrets.token_urlsafe(32))
        eater = DumplingEater(name="e", hub=uri, tls_ca=pki["ca"][0], token_file=wrong)
        with pytest.raises(HubLinkError) as err:
            asyncio.run(asyncio.wait_for(eater._run(1), TIMEOUT))
        assert "HTTP 401" in str(err.value) and "token_file" in str(err.value), str(err.value)

        # No token at all: refused the same way, before any hello.
        eater = DumplingEater(name="e", hub=uri, tls_ca=pki["ca"][0])
        with pytest.raises(HubLinkError, match="HTTP 401"):
            asyncio.run(asyncio.wait_for(eater._run(1), TIMEOUT))

        # Bad files are named at construction, as the Rust client does.
        with pytest.raises(HubLinkError, match="missing-ca.pem"):
            DumplingEater(hub=uri, tls_ca=pki["dir"] / "missing-ca.pem")
        blank = pki["dir"] / "blank.token"
        blank.write_text("\n")
        with pytest.raises(HubLinkError, match="empty"):
            DumplingEater(hub=uri, token_file=blank)
    finally:
        hub.stop()


def test_mutual_tls_with_and_without_a_client_certificate(pki):
    clients = make_ca(pki["dir"], "clients")
    client = issue(pki["dir"], clients, "reader", "DNS:reader")
    hub = tls_hub(pki, "--tls-client-ca", str(clients[0]))
    try:
        uri = "wss://127.0.0.1:{}".format(hub.out_port)
        statuses = []

        async def on_status(d):
            statuses.append(d.payload)

        eater = DumplingEater(name="mtls", hub=uri, chef_filter=["SystemStatusChef"],
                              on_dumpling=on_status, tls_ca=pki["ca"][0],
                              tls_client_cert=client[0], tls_client_key=client[1],
                              token_file=pki["token_file"], reconnect=False)
        asyncio.run(asyncio.wait_for(eater._run(1), TIMEOUT))
        assert statuses, "the welcome status over mutual TLS"

        bare = DumplingEater(name="bare", hub=uri, tls_ca=pki["ca"][0],
                             token_file=pki["token_file"], reconnect=False)
        with pytest.raises(HubLinkError) as err:
            asyncio.run(asyncio.wait_for(bare._run(1), TIMEOUT))
        assert "TLS" in str(err.value) and "tls_client_cert" in str(err.value), str(err.value)
    finally:
        hub.stop()
