"""Tokens from real identity providers: RS256/ES256 with a PEM public key or a JWKS URL, issuer and
audience checks, pinned algorithms, and the algorithm-confusion attacks."""

import base64
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from app.core.config import Settings
from app.main import create_app
from tests.conftest import TEST_SECRET, attach_test_connection
from tests.helpers import assert_problem

PAYMENTS = "/api/v1/payments/"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "7", "exp": int(time.time()) + 300, **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_signed_with(secret: bytes, payload: dict[str, Any]) -> str:
    """An HS256 token whose HMAC key is `secret`, built by hand (PyJWT refuses to do this with a
    public key, which is the point: an attacker does not use PyJWT)."""
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.fixture
def make_client(driver_connection: Any, database_url: str) -> Any:
    """make_client(**settings) -> an httpx client for an app configured with those settings."""

    def make(**overrides: Any) -> httpx.AsyncClient:
        settings = Settings(environment="test", database_url=database_url, _env_file=None, **overrides)
        app = create_app(settings)
        attach_test_connection(app, driver_connection, settings)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    return make


@pytest.fixture
async def rsa_client(make_client: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(algorithm="RS256", jwt_public_key=SecretStr(public_pem(RSA_KEY))) as client:
        yield client


async def status_with(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get(PAYMENTS, headers={"Authorization": f"Bearer {token}"})).status_code


async def test_rs256_token_signed_by_the_provider_key_is_accepted(rsa_client: httpx.AsyncClient) -> None:
    assert await status_with(rsa_client, jwt.encode(claims(), RSA_KEY, algorithm="RS256")) == 200


async def test_rs256_token_signed_by_another_key_is_401(rsa_client: httpx.AsyncClient) -> None:
    assert await status_with(rsa_client, jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256")) == 401


async def test_es256_with_a_pem_key(make_client: Any) -> None:
    async with make_client(algorithm="ES256", jwt_public_key=SecretStr(public_pem(EC_KEY))) as client:
        assert await status_with(client, jwt.encode(claims(), EC_KEY, algorithm="ES256")) == 200
        # An algorithm that is not configured is refused even with a valid signature.
        assert await status_with(client, jwt.encode(claims(), RSA_KEY, algorithm="RS256")) == 401


@pytest.mark.parametrize("encoding", ["pem", "der"])
async def test_hs256_signed_with_the_public_key_is_refused(rsa_client: httpx.AsyncClient, encoding: str) -> None:
    """Algorithm confusion (CVE-2024-33663 and the reported incomplete fix in python-jose 3.5.0):
    the attacker signs HS256 with the server's public key, in PEM or DER, as the HMAC secret."""
    public_key = RSA_KEY.public_key()
    secret = (
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        if encoding == "pem"
        else public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for variant in (secret, secret.strip(), public_pem(RSA_KEY).encode()):
        response = await rsa_client.get(
            PAYMENTS, headers={"Authorization": f"Bearer {hs256_signed_with(variant, claims())}"}
        )
        assert_problem(response, 401)


async def test_alg_none_is_refused_in_public_key_mode(rsa_client: httpx.AsyncClient) -> None:
    unsigned = f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims()).encode())}."
    assert await status_with(rsa_client, unsigned) == 401


async def test_a_jwe_is_refused(rsa_client: httpx.AsyncClient) -> None:
    header = b64(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM"}).encode())
    assert await status_with(rsa_client, f"{header}.{b64(b'k')}.{b64(b'iv')}.{b64(b'ct')}.{b64(b'tag')}") == 401


async def test_a_token_of_another_key_family_is_401_not_500(make_client: Any) -> None:
    async with make_client(algorithm="RS256,ES256", jwt_public_key=SecretStr(public_pem(RSA_KEY))) as client:
        forged = jwt.encode(claims(), EC_KEY, algorithm="ES256")  # ES256 checked against an RSA key
        assert_problem(await client.get(PAYMENTS, headers={"Authorization": f"Bearer {forged}"}), 401)


async def test_issuer_and_audience_are_checked_when_configured(make_client: Any) -> None:
    async with make_client(
        algorithm="RS256",
        jwt_public_key=SecretStr(public_pem(RSA_KEY)),
        jwt_issuer="https://idp.example/",
        jwt_audience="payment-service",
    ) as client:
        good = claims(iss="https://idp.example/", aud="payment-service")
        assert await status_with(client, jwt.encode(good, RSA_KEY, algorithm="RS256")) == 200
        for bad in (
            claims(iss="https://evil.example/", aud="payment-service"),
            claims(iss="https://idp.example/", aud="another-service"),
            claims(aud="payment-service"),
            claims(iss="https://idp.example/"),
        ):
            assert await status_with(client, jwt.encode(bad, RSA_KEY, algorithm="RS256")) == 401, bad


class JwksServer:
    """A tiny local JWKS endpoint that counts its fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                outer.fetches += 1
                time.sleep(outer.delay)
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, key: rsa.RSAPrivateKey, kid: str) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.server.shutdown()


async def test_jwks_keys_are_fetched_once_and_cached(make_client: Any, jwks: JwksServer) -> None:
    jwks.publish(RSA_KEY, "key-1")
    async with make_client(algorithm="RS256", jwks_url=jwks.url) as client:
        assert jwks.fetches == 0  # nothing is fetched before a token needs a key
        for n in range(5):
            token = jwt.encode(claims(sub=str(n)), RSA_KEY, algorithm="RS256", headers={"kid": "key-1"})
            assert await status_with(client, token) == 200
        assert jwks.fetches == 1


async def test_an_unknown_kid_refetches_once_so_rotated_keys_work(make_client: Any, jwks: JwksServer) -> None:
    jwks.publish(RSA_KEY, "old")
    async with make_client(algorithm="RS256", jwks_url=jwks.url, jwks_min_refetch_seconds=0) as client:
        old = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "old"})
        assert await status_with(client, old) == 200
        jwks.publish(OTHER_RSA_KEY, "new")  # the provider rotates
        new = jwt.encode(claims(sub="8"), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "new"})
        assert await status_with(client, new) == 200
        assert jwks.fetches == 2
        unknown = jwt.encode(claims(sub="9"), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "nobody"})
        assert await status_with(client, unknown) == 401
        assert jwks.fetches == 3  # exactly one refetch for the unknown kid


async def test_unknown_kids_cannot_make_the_service_hammer_the_provider(make_client: Any, jwks: JwksServer) -> None:
    jwks.publish(RSA_KEY, "key-1")
    async with make_client(algorithm="RS256", jwks_url=jwks.url, jwks_min_refetch_seconds=60) as client:
        assert (
            await status_with(client, jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "key-1"})) == 200
        )
        for n in range(10):
            forged = jwt.encode(claims(sub=str(n)), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": f"random-{n}"})
            assert await status_with(client, forged) == 401
        assert jwks.fetches == 1


async def test_a_slow_jwks_endpoint_fails_fast(make_client: Any, jwks: JwksServer) -> None:
    jwks.publish(RSA_KEY, "key-1")
    jwks.delay = 3.0
    async with make_client(algorithm="RS256", jwks_url=jwks.url, jwks_timeout_seconds=0.3) as client:
        started = time.monotonic()
        token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "key-1"})
        assert await status_with(client, token) == 503  # no keys could be had: retry later
        assert time.monotonic() - started < 2.0


async def test_an_unreachable_identity_provider_is_503_not_401(make_client: Any, jwks: JwksServer) -> None:
    jwks.server.shutdown()
    jwks.server.server_close()
    async with make_client(algorithm="RS256", jwks_url=jwks.url, jwks_min_refetch_seconds=0) as client:
        token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "key-1"})
        response = await client.get(PAYMENTS, headers={"Authorization": f"Bearer {token}"})
        assert_problem(response, 503, "/identity-provider-unavailable")
        assert response.headers["retry-after"] == "5"


async def test_hs256_with_the_jwks_public_key_is_refused(make_client: Any, jwks: JwksServer) -> None:
    jwks.publish(RSA_KEY, "key-1")
    async with make_client(algorithm="RS256", jwks_url=jwks.url) as client:
        assert await status_with(client, hs256_signed_with(public_pem(RSA_KEY).encode(), claims())) == 401


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithm": "HS256,RS256", "jwt_public_key": SecretStr(public_pem(RSA_KEY))},
        {"algorithm": "HS256", "jwt_public_key": SecretStr(public_pem(RSA_KEY))},
        {"algorithm": "HS256", "jwks_url": "http://127.0.0.1:9/jwks"},
        {"algorithm": "RS256"},
        {"algorithm": "RS256", "jwt_public_key": SecretStr(public_pem(RSA_KEY)), "jwks_url": "http://x/"},
        {"algorithm": "none"},
        {"algorithm": ""},
    ],
)
def test_incoherent_or_unsafe_jwt_settings_refuse_to_start(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, secret_key=SecretStr(TEST_SECRET), **overrides)
