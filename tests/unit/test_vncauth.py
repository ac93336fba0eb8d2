"""xetool's own DES (devices/vncauth.py, VNC Authentication's cipher) against published
known answers, and the VNC challenge-response built on it."""

from __future__ import annotations

import pytest

from xetool.devices import vncauth


@pytest.mark.parametrize("key,plain,cipher", [
    ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),  # the worked example of FIPS 46's literature
    ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),  # "Now is t", FIPS 81's test
])
def test_des_known_answers(key: str, plain: str, cipher: str) -> None:
    assert vncauth.des_encrypt(bytes.fromhex(key), bytes.fromhex(plain)).hex().upper() == cipher


def test_challenge_response() -> None:
    challenge = vncauth.challenge()
    assert len(challenge) == 16
    answer = vncauth.response("s3cret", challenge)
    assert vncauth.check("s3cret", challenge, answer)
    assert not vncauth.check("other", challenge, answer)
    assert vncauth.response("s3cret", challenge) == answer  # deterministic per challenge
