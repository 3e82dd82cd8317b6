"""The handshake's control frames (transport/handshake.h): encode and verify,
with the job key's MAC computed by Python's hmac."""

import hashlib
import hmac
import struct

import pytest
import torch

from distgrad import _unit

from .conftest import make_auth

CONNECTOR, ACCEPTOR, WORLD_SIZE = 1, 0, 3


def arena_info(pid=1234, fd=7, size=1 << 30, token=bytes(range(16))):
    info = _unit.ArenaInfo()
    info.pid, info.fd, info.size, info.token = pid, fd, size, token
    return info


def limits(meta=1 << 20, data=1 << 30):
    return _unit.FrameLimits(max_meta_bytes=meta, max_data_bytes=data)


def same_arena(a, b):
    return (a.pid, a.fd, a.size, a.token) == (b.pid, b.fd, b.size, b.token)


def test_nonces_are_fresh():
    nonces = {_unit.make_nonce() for _ in range(8)}
    assert len(nonces) == 8
    assert all(len(n) == _unit.NONCE_BYTES == 32 for n in nonces)


def test_full_handshake(auth):
    nonce_c = _unit.make_nonce()
    hello = _unit.encode_hello(CONNECTOR, nonce_c)
    assert (hello.type, hello.id, hello.meta) == (_unit.HELLO, CONNECTOR, nonce_c)
    assert _unit.decode_hello(hello, WORLD_SIZE) == (CONNECTOR, nonce_c)

    nonce_a = _unit.make_nonce()
    challenge = _unit.encode_challenge(ACCEPTOR, nonce_a, auth, CONNECTOR, nonce_c)
    assert challenge.type == _unit.CHALLENGE
    assert _unit.decode_challenge(challenge, auth, ACCEPTOR, CONNECTOR, nonce_c) == nonce_a

    proof = _unit.encode_proof(CONNECTOR, auth, ACCEPTOR, nonce_c, nonce_a, limits(), arena_info())
    got_limits, got_arena = _unit.decode_proof(proof, auth, CONNECTOR, ACCEPTOR, nonce_c, nonce_a)
    assert (got_limits.max_meta_bytes, got_limits.max_data_bytes) == (1 << 20, 1 << 30)
    assert same_arena(got_arena, arena_info())

    for mapped in (True, False):
        accept = _unit.encode_accept(ACCEPTOR, limits(5, 6), arena_info(pid=99), mapped)
        rank, got_limits, got_arena, got_mapped = _unit.decode_accept(accept)
        assert (rank, got_limits.max_meta_bytes, got_limits.max_data_bytes) == (ACCEPTOR, 5, 6)
        assert same_arena(got_arena, arena_info(pid=99)) and got_mapped is mapped


def test_macs_cover_role_ranks_and_nonces(auth):
    """The MACs are HMAC-SHA256 over the role, both ranks (the signer's
    first) and both nonces, as handshake.h says."""
    key = b"the job key"
    nonce_c, nonce_a = b"c" * 32, b"a" * 32

    def mac(role, signer, other):
        message = role + b"\0" + b"%d\0%d\0" % (signer, other) + nonce_c + nonce_a
        return hmac.new(key, message, hashlib.sha256).digest()

    challenge = _unit.encode_challenge(ACCEPTOR, nonce_a, auth, CONNECTOR, nonce_c)
    assert challenge.meta == nonce_a + mac(b"distgrad challenge", ACCEPTOR, CONNECTOR)
    proof = _unit.encode_proof(CONNECTOR, auth, ACCEPTOR, nonce_c, nonce_a, limits(), arena_info())
    expected = mac(b"distgrad proof", CONNECTOR, ACCEPTOR)
    assert proof.meta == (struct.pack("<I", len(expected)) + expected + limits().encode()
                          + arena_info().encode())


def test_arena_info_round_trip():
    info = arena_info(pid=-1, fd=-1, size=0)
    assert not info.present()
    assert arena_info().present()
    assert len(arena_info().encode()) == 32
    assert same_arena(_unit.ArenaInfo.decode(arena_info().encode()), arena_info())
    for size in (0, 31, 33):
        with pytest.raises(RuntimeError, match="malformed shared memory announcement"):
            _unit.ArenaInfo.decode(bytes(size))


@pytest.mark.parametrize("hello, error", [
    (_unit.Message(type=_unit.CHALLENGE, id=1, meta=bytes(32)), "expected a hello, got frame type 6"),
    (_unit.Message(type=_unit.HELLO, id=1, meta=bytes(32), tensors=[torch.zeros(1)]),
     "expected a hello"),
    (_unit.Message(type=_unit.HELLO, id=1, meta=bytes(31)), "malformed hello"),
    (_unit.Message(type=_unit.HELLO, id=1, meta=bytes(33)), "malformed hello"),
    (_unit.Message(type=_unit.HELLO, id=3, meta=bytes(32)), "rank 3 out of range for world size 3"),
    (_unit.Message(type=_unit.HELLO, id=2**64 - 1, meta=bytes(32)), "out of range"),
])
def test_bad_hello(hello, error):
    with pytest.raises(RuntimeError, match=error):
        _unit.decode_hello(hello, WORLD_SIZE)


@pytest.fixture
def nonces():
    return _unit.make_nonce(), _unit.make_nonce()


def test_challenge_with_another_key(auth, nonces):
    nonce_c, nonce_a = nonces
    challenge = _unit.encode_challenge(ACCEPTOR, nonce_a, make_auth(b"another key"), CONNECTOR, nonce_c)
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_challenge(challenge, auth, ACCEPTOR, CONNECTOR, nonce_c)


def test_challenge_from_the_wrong_rank(auth, nonces):
    nonce_c, nonce_a = nonces
    challenge = _unit.encode_challenge(2, nonce_a, auth, CONNECTOR, nonce_c)
    with pytest.raises(RuntimeError, match="it answered as rank 2"):
        _unit.decode_challenge(challenge, auth, ACCEPTOR, CONNECTOR, nonce_c)


def test_challenge_replayed_to_another_connection(auth, nonces):
    nonce_c, nonce_a = nonces
    challenge = _unit.encode_challenge(ACCEPTOR, nonce_a, auth, CONNECTOR, nonce_c)
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_challenge(challenge, auth, ACCEPTOR, CONNECTOR, _unit.make_nonce())
    # Signed for a connector of another rank.
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_challenge(challenge, auth, ACCEPTOR, 2, nonce_c)


def test_challenge_tampered(auth, nonces):
    nonce_c, nonce_a = nonces
    challenge = _unit.encode_challenge(ACCEPTOR, nonce_a, auth, CONNECTOR, nonce_c)
    meta = bytearray(challenge.meta)
    meta[0] ^= 1  # the acceptor's nonce
    challenge.meta = bytes(meta)
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_challenge(challenge, auth, ACCEPTOR, CONNECTOR, nonce_c)


@pytest.mark.parametrize("message, error", [
    (_unit.Message(type=_unit.CHALLENGE, id=0, meta=bytes(32)), "malformed challenge"),
    (_unit.Message(type=_unit.CHALLENGE, id=0, meta=b""), "malformed challenge"),
    (_unit.Message(type=_unit.PROOF, id=0, meta=bytes(64)), "expected a challenge, got frame type 7"),
])
def test_malformed_challenge(auth, nonces, message, error):
    with pytest.raises(RuntimeError, match=error):
        _unit.decode_challenge(message, auth, ACCEPTOR, CONNECTOR, nonces[0])


def proof_for(auth, nonces, rank=CONNECTOR):
    return _unit.encode_proof(rank, auth, ACCEPTOR, *nonces, limits(), arena_info())


def test_proof_with_another_key(auth, nonces):
    proof = proof_for(make_auth(b"another key"), nonces)
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_proof(proof, auth, CONNECTOR, ACCEPTOR, *nonces)


def test_proof_from_the_wrong_rank(auth, nonces):
    with pytest.raises(RuntimeError, match="malformed proof"):
        _unit.decode_proof(proof_for(auth, nonces, rank=2), auth, CONNECTOR, ACCEPTOR, *nonces)


def test_proof_for_other_nonces(auth, nonces):
    proof = proof_for(auth, nonces)
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_proof(proof, auth, CONNECTOR, ACCEPTOR, nonces[0], _unit.make_nonce())


def test_challenge_mac_reflected_as_proof(auth, nonces):
    """The acceptor's own MAC, sent back to it, does not prove anything."""
    nonce_c, nonce_a = nonces
    challenge = _unit.encode_challenge(ACCEPTOR, nonce_a, auth, CONNECTOR, nonce_c)
    mac = challenge.meta[32:]
    meta = struct.pack("<I", len(mac)) + mac + limits().encode() + arena_info().encode()
    proof = _unit.Message(type=_unit.PROOF, id=CONNECTOR, meta=meta)
    with pytest.raises(RuntimeError, match="does not hold the job key"):
        _unit.decode_proof(proof, auth, CONNECTOR, ACCEPTOR, nonce_c, nonce_a)


def test_malformed_proofs(auth, nonces):
    good = proof_for(auth, nonces).meta
    mac_len = struct.unpack_from("<I", good)[0]
    cases = [
        (b"\x01\x00", "malformed proof"),
        (struct.pack("<I", len(good)) + good[4:], "malformed proof"),  # MAC longer than the rest
        (struct.pack("<I", 2**32 - 1) + good[4:], "malformed proof"),
        (good[:4 + mac_len], "malformed message limits"),
        (good[:4 + mac_len + 16], "malformed shared memory announcement"),
        (good + b"\x00", "malformed shared memory announcement"),
    ]
    for meta, error in cases:
        proof = _unit.Message(type=_unit.PROOF, id=CONNECTOR, meta=meta)
        with pytest.raises(RuntimeError, match=error):
            _unit.decode_proof(proof, auth, CONNECTOR, ACCEPTOR, *nonces)
    hello = _unit.Message(type=_unit.HELLO, id=CONNECTOR, meta=good)
    with pytest.raises(RuntimeError, match="expected a proof, got frame type 1"):
        _unit.decode_proof(hello, auth, CONNECTOR, ACCEPTOR, *nonces)


@pytest.mark.parametrize("meta, error", [
    (b"", "malformed accept"),
    (bytes(16), "malformed accept"),
    (bytes(17), "malformed shared memory announcement"),
    (bytes(16 + 32 + 2), "malformed shared memory announcement"),
])
def test_malformed_accept(meta, error):
    with pytest.raises(RuntimeError, match=error):
        _unit.decode_accept(_unit.Message(type=_unit.ACCEPT, id=0, meta=meta))


def test_accept_of_the_wrong_type():
    accept = _unit.encode_accept(ACCEPTOR, limits(), arena_info(), True)
    accept.type = _unit.PROOF
    with pytest.raises(RuntimeError, match="expected an accept"):
        _unit.decode_accept(accept)


def test_arena_ready():
    assert _unit.encode_arena_ready(True).id == 1
    ready = _unit.encode_arena_ready(False)
    assert (ready.type, ready.id) == (_unit.ARENA_READY, 0)


@pytest.mark.parametrize("offsets", [[], [4096], [4096, 2**63, 0]])
def test_arena_release_round_trip(offsets):
    release = _unit.encode_arena_release(offsets)
    assert release.type == _unit.ARENA_RELEASE
    assert len(release.meta) == 8 * len(offsets)
    assert _unit.decode_arena_release(release) == offsets


@pytest.mark.parametrize("size", [1, 7, 9])
def test_malformed_arena_release(size):
    with pytest.raises(RuntimeError, match="malformed arena release"):
        _unit.decode_arena_release(_unit.Message(type=_unit.ARENA_RELEASE, meta=bytes(size)))
