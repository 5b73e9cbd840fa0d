"""The server's identity hook fed by signed JWTs, end to end through uvicorn on loopback.

The hook (``ServerSettings(identify=...)``) is how a site that verifies OIDC/JWT tokens itself
plugs into the server, as docs/user-guide.md section 12 describes: the function below is such a
site's code (RS256, verified with ``cryptography``), and the tokens are signed here with the
provider's private key -- or with a stranger's, or carrying the wrong audience or a past expiry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import httpx
import pytest

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.errors import AuthenticationError, PermissionDeniedError

pytest.importorskip("fastapi")
rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

AUDIENCE = "skybutler-test"
NOW = 1_800_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key, claims: dict) -> str:
    """An RS256 JWT of ``claims`` signed with the private ``key``."""
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(key.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256()))


def jwt_identity(public_key, audience: str, clock):
    """A site's identity function: the ``sub`` of a valid RS256 bearer JWT; None for a bearer
    that is no JWT (a repository token, checked by the server as usual); AuthenticationError
    (HTTP 401) for a JWT that is forged, expired or meant for another audience."""

    def identify(headers: Mapping[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            return None
        head, body, signature = token.split(".")
        try:
            if json.loads(_unb64(head)).get("alg") != "RS256":
                raise AuthenticationError("the token is not signed with RS256")
            public_key.verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(_unb64(body))
        except (InvalidSignature, ValueError) as err:
            raise AuthenticationError("the token's signature is not valid") from err
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= clock():
            raise AuthenticationError("the token has expired")
        if claims.get("aud") != audience:
            raise AuthenticationError("the token is meant for another audience")
        return claims.get("sub")

    return identify


def test_jwt_identity_hook(butler):
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's own logic, the same on every stack; run on SQLite")
    provider = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    butler.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    access = Access(butler.registry.access)
    access.add_user("ann")
    access.grant("user", "ann", "run/*", "read")
    repository_token = access.create_token("ann")
    good = {"sub": "ann", "aud": AUDIENCE, "exp": NOW + 600}
    valid = sign(provider, good)
    bad = {"expired": sign(provider, {**good, "exp": NOW - 1}),
           "signature": sign(stranger, good),
           "audience": sign(provider, {**good, "aud": "another-service"}),
           "tampered": valid.rsplit(".", 2)[0] + "." + _b64(json.dumps({**good, "sub": "admin"}).encode())
           + "." + valid.rsplit(".", 1)[1]}
    count = {"spec": {"kind": "datasets", "dataset_types": ["metrics"], "collections": ["run/a"]}}
    identify = jwt_identity(provider.public_key(), AUDIENCE, lambda: NOW)
    with running_server(butler.root, identify=identify, clock=lambda: NOW) as url:
        # a valid token: ann, with ann's rights -- she reads run/a, writes u/ann/*, and not run/a
        seen = httpx.post(f"{url}/api/v1/query/count", headers={"Authorization": f"Bearer {valid}"}, json=count)
        assert seen.status_code == 200 and seen.json() == 1
        with Butler(url, token=valid) as ann:
            [ref] = ann.query_datasets("metrics", collections="run/a")
            assert ann.get(ref) == {"x": 1}
            with pytest.raises(PermissionDeniedError):
                ann.put({"x": 2}, "metrics", instrument="Cam", visit=2, detector=0, run="run/a")
            mine = ann.put({"x": 3}, "metrics", instrument="Cam", visit=3, detector=0, run="u/ann/jwt")
        assert butler.get(mine) == {"x": 3}
        made = httpx.post(f"{url}/api/v1/collections", headers={"Authorization": f"Bearer {valid}"},
                          json={"name": "u/ann/made"})
        assert made.status_code == 200 and butler.collections.info("u/ann/made").type.name == "RUN"
        # the repository's own tokens still work beside the hook
        with Butler(url, token=repository_token) as same:
            assert list(same.query_datasets("metrics", collections="run/a")) == [ref]
        # a valid signature for a name the repository does not know is no user either
        nobody = sign(provider, {**good, "sub": "nobody"})
        assert httpx.get(f"{url}/api/v1/info", headers={"Authorization": f"Bearer {nobody}"}).status_code == 401
        collections = sorted(c.name for c in butler.collections.query("*"))
        stored = sorted(str(r.id) for r in butler.query_datasets("metrics", collections=collections))
        reasons = {"expired": "expired", "signature": "signature", "audience": "audience", "tampered": "signature"}
        for case, token in bad.items():
            answer = httpx.post(f"{url}/api/v1/query/count", headers={"Authorization": f"Bearer {token}"},
                                json=count)
            assert answer.status_code == 401, case
            assert answer.json()["error"] == "AuthenticationError" and reasons[case] in answer.json()["message"]
            made = httpx.post(f"{url}/api/v1/collections", headers={"Authorization": f"Bearer {token}"},
                              json={"name": f"u/ann/{case}"})
            assert made.status_code == 401 and made.json()["error"] == "AuthenticationError", case
            with pytest.raises(AuthenticationError, match=reasons[case]):
                Butler(url, token=token)
        assert sorted(c.name for c in butler.collections.query("*")) == collections
        assert sorted(str(r.id) for r in butler.query_datasets("metrics", collections=collections)) == stored
