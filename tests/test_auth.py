import base64
import json
import time
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import httpx
import jwt
import pytest
from pydantic import SecretStr

from app.core.config import Settings
from app.core.security import InvalidToken, TokenVerifier
from tests.conftest import TEST_SECRET, TokenFactory
from tests.helpers import assert_problem

PAYMENTS = "/api/v1/payments/"


def _token(claims: dict[str, object], secret: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    return str(jwt.encode(claims, secret, algorithm=algorithm))


def _exp(minutes: int = 5) -> int:
    return int((datetime.now(UTC) + timedelta(minutes=minutes)).timestamp())


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _assert_unauthorized(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(PAYMENTS, headers=headers)
    assert_problem(response, 401, "/not-authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_no_token_is_401(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(client, {})


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-jwt", "Token abc"],
)
async def test_malformed_authorization_header_is_401(client: httpx.AsyncClient, header: str) -> None:
    await _assert_unauthorized(client, {"Authorization": header})


async def test_bad_signature_is_401(client: httpx.AsyncClient) -> None:
    token = _token({"sub": "1", "exp": _exp()}, secret="another-secret-that-is-long-enough-xx")
    await _assert_unauthorized(client, _bearer(token))


async def test_expired_token_is_401(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(client, _bearer(_token({"sub": "1", "exp": _exp(-1)})))


async def test_a_token_just_past_exp_is_accepted_within_the_clock_skew(client: httpx.AsyncClient) -> None:
    token = _token({"sub": "1", "exp": int(time.time()) - 10})
    assert (await client.get(PAYMENTS, headers=_bearer(token))).status_code == 200


async def test_a_token_not_yet_valid_is_401_beyond_the_clock_skew(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(client, _bearer(_token({"sub": "1", "exp": _exp(), "nbf": int(time.time()) + 120})))
    soon = _token({"sub": "1", "exp": _exp(), "nbf": int(time.time()) + 10})
    assert (await client.get(PAYMENTS, headers=_bearer(soon))).status_code == 200


async def test_token_without_exp_is_401(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(client, _bearer(_token({"sub": "1"})))


async def test_alg_none_is_401(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(client, _bearer(_unsigned({"sub": "1", "exp": _exp()})))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_other_hmac_algorithm_than_configured_is_401(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(client, _bearer(_token({"sub": "1", "exp": _exp()}, algorithm="HS512")))


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"sub": "alice"},
        {"sub": "1.5"},
        {"user_id": True},
        {"user_id": "12a"},
        {"user_id": 2**63},
        {"sub": ""},
        {"user_id": None},
        {"sub": "--5"},
        {"sub": "5-"},
        {"sub": "1" * 25},
    ],
)
async def test_token_without_usable_user_id_is_401(client: httpx.AsyncClient, claims: dict[str, object]) -> None:
    await _assert_unauthorized(client, _bearer(_token({**claims, "exp": _exp()})))


async def _create_with(client: httpx.AsyncClient, token: str, gateway_id: str) -> httpx.Response:
    body = {"payment_id": gateway_id, "provider": "stripe", "currency": "USD", "amount_total": "1"}
    return await client.post(PAYMENTS, headers=_bearer(token), json=body)


async def test_user_id_claim_wins_over_sub(client: httpx.AsyncClient) -> None:
    response = await _create_with(client, _token({"sub": "5", "user_id": 42, "exp": _exp()}), "pi_claims")
    assert response.status_code == 201
    assert response.json()["user_id"] == 42


async def test_numeric_sub_is_the_user_id(client: httpx.AsyncClient) -> None:
    token = _token({"sub": "77", "exp": _exp()})
    response = await _create_with(client, token, "pi_sub")
    assert response.status_code == 201
    assert response.json()["user_id"] == 77
    listed = await client.get(PAYMENTS, headers=_bearer(token))
    assert [payment["user_id"] for payment in listed.json()["items"]] == [77]


async def test_admin_route_refuses_a_valid_non_admin_token_with_403(
    client: httpx.AsyncClient, auth: TokenFactory
) -> None:
    assert_problem(await client.get(PAYMENTS + "admin/all", headers=auth(1)), 403, "/forbidden")


async def test_roles_must_be_a_list_to_grant_admin(client: httpx.AsyncClient) -> None:
    token = _token({"sub": "1", "roles": "admin", "exp": _exp()})
    assert_problem(await client.get(PAYMENTS + "admin/all", headers=_bearer(token)), 403)


async def test_admin_route_without_token_is_401_not_403(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(PAYMENTS + "admin/all"), 401)


async def test_minted_admin_token_reaches_admin_route(
    client: httpx.AsyncClient, auth: TokenFactory, settings: Settings
) -> None:
    response = await client.get(PAYMENTS + "admin/all", headers=auth(1, admin=True))
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0, "page": 1, "size": 20, "pages": 0, "next_cursor": None}


async def test_verified_tokens_are_remembered_until_they_expire(settings: Settings) -> None:
    verifier = TokenVerifier(settings, max_entries=2)
    short = _token({"sub": "1", "exp": int(time.time()) + 2})
    assert (await verifier.verify(short)).user_id == 1
    # A cached token is not decoded again...
    verifier.settings = settings.model_copy(update={"secret_key": SecretStr("another-secret-entirely-0123456789")})
    assert (await verifier.verify(short)).user_id == 1
    # ...but it is refused once its exp (plus the allowed clock skew) has passed, cached or not.
    with patch("app.core.security.time.time", return_value=time.time() + 2 + settings.jwt_leeway_seconds + 1):
        with pytest.raises(InvalidToken):
            await verifier.verify(short)
    with pytest.raises(InvalidToken):
        await verifier.verify(short)  # evicted, and no longer verifiable with the changed key


async def test_the_token_cache_is_bounded(settings: Settings) -> None:
    verifier = TokenVerifier(settings, max_entries=2)
    tokens = [_token({"sub": str(n), "exp": _exp()}) for n in range(3)]
    for token in tokens:
        await verifier.verify(token)
    assert list(verifier._verified) == tokens[1:]
