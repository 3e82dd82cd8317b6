"""Frame headers, message limits and tensor descriptors (transport/frame.h)."""

import struct

import pytest
import torch

from distgrad import _unit

FrameHeader = _unit.FrameHeader
FrameLimits = _unit.FrameLimits
LIMITS = FrameLimits(max_meta_bytes=1 << 20, max_data_bytes=1 << 30)
HEADER = struct.Struct("<IHHQIIQ")  # the layout docs/design.md gives
DESCRIPTOR_HEAD = struct.Struct("<bBB")


def header(**fields):
    h = FrameHeader()
    for name, value in fields.items():
        setattr(h, name, value)
    return h


def fields(h):
    return (h.magic, h.version, h.type, h.id, h.meta_len, h.desc_len, h.data_len)


@pytest.mark.parametrize("values", [
    dict(),
    dict(type=17, id=(3 << 48) + 5, meta_len=100, desc_len=40, data_len=4096),
    dict(type=0xFFFF, id=2**64 - 1, meta_len=2**32 - 1, desc_len=2**32 - 1, data_len=2**64 - 1),
])
def test_header_round_trip(values):
    h = header(**values)
    encoded = h.encode()
    assert len(encoded) == FrameHeader.SIZE == HEADER.size == 32
    assert HEADER.unpack(encoded) == fields(h)
    assert fields(FrameHeader.decode(encoded)) == fields(h)


def test_header_starts_with_magic_and_version():
    encoded = FrameHeader().encode()
    assert encoded[:4] == b"DGRD"
    assert struct.unpack_from("<H", encoded, 4)[0] == FrameHeader.VERSION


@pytest.mark.parametrize("values", [
    dict(),
    dict(meta_len=LIMITS.max_meta_bytes, desc_len=FrameLimits.MAX_DESC_BYTES,
         data_len=LIMITS.max_data_bytes),
    dict(desc_len=4, data_len=0),
])
def test_valid_headers(values):
    _unit.validate_header(header(**values), LIMITS)


@pytest.mark.parametrize("values, error", [
    (dict(magic=0), "bad magic 0"),
    (dict(magic=0x44524745), "bad magic"),
    (dict(version=1), "unsupported protocol version 1"),
    (dict(version=FrameHeader.VERSION + 1), "unsupported protocol version"),
    (dict(meta_len=LIMITS.max_meta_bytes + 1), "metadata length .* over the maximum"),
    (dict(desc_len=FrameLimits.MAX_DESC_BYTES + 1), "tensor descriptor length .* over the maximum"),
    (dict(desc_len=8, data_len=LIMITS.max_data_bytes + 1), "tensor data length .* over the maximum"),
    (dict(desc_len=0, data_len=1), "tensor data without tensor descriptors"),
])
def test_malformed_headers(values, error):
    with pytest.raises(RuntimeError, match=error):
        _unit.validate_header(header(**values), LIMITS)


def test_limits_round_trip():
    limits = FrameLimits(max_meta_bytes=123, max_data_bytes=2**40 + 7)
    encoded = limits.encode()
    assert len(encoded) == FrameLimits.ENCODED_SIZE == 16
    assert struct.unpack("<QQ", encoded) == (123, 2**40 + 7)
    decoded = FrameLimits.decode(encoded)
    assert (decoded.max_meta_bytes, decoded.max_data_bytes) == (123, 2**40 + 7)
    # Limits lead a handshake message; what follows them is someone else's.
    decoded = FrameLimits.decode(encoded + b"more")
    assert decoded.max_data_bytes == 2**40 + 7


@pytest.mark.parametrize("size", [0, 8, 15])
def test_limits_truncated(size):
    with pytest.raises(RuntimeError, match="malformed message limits"):
        FrameLimits.decode(bytes(size))


def test_default_limits():
    limits = FrameLimits()
    assert limits.max_meta_bytes == 64 << 20
    assert limits.max_data_bytes == 16 << 30


def test_check_outgoing_accepts_what_fits():
    tensors = [torch.zeros(4), torch.zeros([1] * FrameLimits.MAX_DIMS)]
    data = sum(t.nbytes for t in tensors)
    _unit.check_outgoing(LIMITS.max_meta_bytes, tensors, LIMITS)
    _unit.check_outgoing(10, tensors, FrameLimits(max_meta_bytes=10, max_data_bytes=data))


def test_check_outgoing_too_many_dims():
    with pytest.raises(ValueError, match=f"tensor of {FrameLimits.MAX_DIMS + 1} dimensions"):
        _unit.check_outgoing(0, [torch.zeros([1] * (FrameLimits.MAX_DIMS + 1))], LIMITS)


def quantized():
    return torch.quantize_per_tensor(torch.zeros(2), 1.0, 0, torch.quint8)


@pytest.mark.parametrize("make", [quantized, lambda: torch.empty(2, dtype=torch.bits8)],
                         ids=["quint8", "bits8"])
def test_check_outgoing_bad_dtype(make):
    with pytest.raises(ValueError, match="cannot send tensors of dtype"):
        _unit.check_outgoing(0, [make()], LIMITS)


def test_check_outgoing_descriptor_cap():
    # A 64-dimensional tensor's descriptor: dtype, ndim, location, offset, 64 sizes.
    per_tensor = 3 + 8 + 8 * FrameLimits.MAX_DIMS
    fit = (FrameLimits.MAX_DESC_BYTES - 4) // per_tensor
    t = torch.zeros([1] * FrameLimits.MAX_DIMS)
    _unit.check_outgoing(0, [t] * fit, LIMITS)
    with pytest.raises(_unit.LengthError, match=f"message of {fit + 1} tensors has more tensor descriptors"):
        _unit.check_outgoing(0, [t] * (fit + 1), LIMITS)


@pytest.mark.parametrize("meta, data", [(11, 0), (0, 65), (11, 65)])
def test_check_outgoing_over_limits(meta, data):
    limits = FrameLimits(max_meta_bytes=10, max_data_bytes=64)
    with pytest.raises(_unit.LengthError, match="larger than the maximum it accepts, 64"):
        _unit.check_outgoing(meta, [torch.zeros(data, dtype=torch.uint8)], limits)


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
          torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128]
SHAPES = [(), (0,), (5,), (2, 3), (1, 0, 4), (2, 1, 3, 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_descriptors_round_trip(dtype, shape):
    tensors = [torch.zeros(shape, dtype=dtype), torch.ones(3, dtype=dtype)]
    block, data_len = _unit.encode_descriptors(tensors)
    assert data_len == sum(t.nbytes for t in tensors)
    assert struct.unpack_from("<I", block)[0] == 2
    decoded, inline = _unit.allocate_from_descriptors(block, data_len)
    assert inline == [True, True]
    assert [(t.dtype, t.shape) for t in decoded] == [(t.dtype, t.shape) for t in tensors]


def test_descriptor_layout():
    t = torch.zeros(2, 3, dtype=torch.float64)
    block, data_len = _unit.encode_descriptors([t], [(1, 8192)])
    assert data_len == 0
    count, = struct.unpack_from("<I", block)
    dtype, ndim, location = DESCRIPTOR_HEAD.unpack_from(block, 4)
    offset, size0, size1 = struct.unpack_from("<Qqq", block, 7)
    assert (count, ndim, location, offset, size0, size1) == (1, 2, 1, 8192, 2, 3)
    assert dtype == 7  # c10::ScalarType::Double
    assert len(block) == 4 + 3 + 8 + 16


def test_descriptors_in_arenas():
    tensors = [torch.zeros(1024), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 2)]
    placements = [(1, 4096), (0, 0), (2, 12288)]
    block, data_len = _unit.encode_descriptors(tensors, placements)
    assert data_len == tensors[1].nbytes
    calls = []
    decoded, inline = _unit.allocate_from_descriptors(
        block, data_len, lambda *call: calls.append(call))
    assert inline == [False, True, False]
    assert calls == [(1, 4096, 4096, [1024]), (2, 12288, 16, [2, 2])]
    assert [t.shape for t in decoded] == [t.shape for t in tensors]


def test_arena_tensor_refused():
    block, _ = _unit.encode_descriptors([torch.zeros(4)], [(1, 2**63)])

    def refuse(location, offset, nbytes, sizes):
        raise RuntimeError("region out of the arena")

    with pytest.raises(RuntimeError, match="region out of the arena"):
        _unit.allocate_from_descriptors(block, 0, refuse)


def test_no_tensors():
    assert _unit.encode_descriptors([]) == (b"", 0)
    assert _unit.allocate_from_descriptors(b"", 0) == ([], [])


def test_encode_refuses_non_contiguous():
    with pytest.raises(RuntimeError, match="contiguous CPU tensors only"):
        _unit.encode_descriptors([torch.zeros(3, 4).t()])


def descriptor(dtype=6, ndim=None, location=0, offset=None, sizes=(4,)):
    ndim = len(sizes) if ndim is None else ndim
    out = DESCRIPTOR_HEAD.pack(dtype, ndim, location)
    if offset is not None:
        out += struct.pack("<Q", offset)
    return out + struct.pack(f"<{len(sizes)}q", *sizes)


def block(*descriptors, count=None):
    return struct.pack("<I", len(descriptors) if count is None else count) + b"".join(descriptors)


def ignore_arena(*call):
    return None


@pytest.mark.parametrize("raw, data_len, error", [
    (b"\x01\x00", 0, "truncated tensor descriptors"),
    (block(count=1), 0, "truncated tensor descriptors"),
    (block(descriptor())[:-1], 16, "truncated tensor descriptors"),
    (block(descriptor(location=1)), 0, "truncated tensor descriptors"),  # offset missing
    (block(descriptor(dtype=-1)), 16, "unsupported dtype code -1"),
    (block(descriptor(dtype=12)), 4, "unsupported dtype code 12"),  # QInt8
    (block(descriptor(dtype=127)), 16, "unsupported dtype code 127"),
    (block(descriptor(ndim=65, sizes=[1] * 65)), 4, "tensor with 65 dimensions"),
    (block(descriptor(location=3, offset=0)), 0, "unknown tensor location 3"),
    (block(descriptor(sizes=(-1,))), 0, "invalid tensor sizes"),
    (block(descriptor(sizes=(2**62, 2**62))), 0, "invalid tensor sizes"),
    (block(descriptor(sizes=(4,))), 15, "tensor sizes do not match the data length"),
    (block(descriptor(sizes=(4,))), 17, "tensor descriptors do not match the data length"),
    (block(descriptor(sizes=(4,))) + b"\x00", 16, "tensor descriptors do not match"),
    (block(descriptor(), descriptor(), count=1), 16, "tensor descriptors do not match"),
])
def test_malformed_descriptors(raw, data_len, error):
    with pytest.raises(RuntimeError, match=error):
        _unit.allocate_from_descriptors(raw, data_len, ignore_arena)


def test_arena_tensor_without_arena():
    raw = block(descriptor(location=1, offset=4096))
    with pytest.raises(RuntimeError, match="tensor in shared memory on a connection without it"):
        _unit.allocate_from_descriptors(raw, 0)
