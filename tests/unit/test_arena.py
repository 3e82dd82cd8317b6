"""The shared memory arena's free list (transport/shared_arena.h), in one
process: regions are page aligned, handed out first fit from the lowest
offset, merged with free neighbours when freed."""

import os

import pytest

from distgrad import _unit

PAGE = 4096
PEER, OTHER_PEER = 1, 2


def test_create(arena):
    info = arena.info
    assert info.size == 1 << 20 and info.pid == os.getpid() and info.present()
    assert arena.bytes_in_use() == 0
    rounded = _unit.LocalArena.create(3 * PAGE + 1)
    assert rounded.info.size == 4 * PAGE
    assert _unit.LocalArena.create(0) is None


def test_first_page_holds_the_token(arena):
    assert arena.allocate(1, PEER) == PAGE
    peer_view = _unit.PeerArena.open(arena.info)
    assert peer_view is not None and peer_view.size == arena.info.size
    assert peer_view.read(0, 16) == arena.info.token


def test_regions_are_page_aligned(arena):
    offsets = [arena.allocate(n, PEER) for n in (1, PAGE, PAGE + 1, 3 * PAGE - 1)]
    assert offsets == [PAGE, 2 * PAGE, 3 * PAGE, 5 * PAGE]
    assert arena.bytes_in_use() == 7 * PAGE


def test_first_fit_from_the_lowest_offset(arena):
    a, b, c, d = (arena.allocate(PAGE, PEER) for _ in range(4))
    arena.release(a, PEER)
    arena.release(c, PEER)
    # Neither one-page hole fits two pages: they go after d.
    assert arena.allocate(2 * PAGE, PEER) == d + PAGE
    assert arena.allocate(PAGE, PEER) == a
    assert arena.allocate(PAGE, PEER) == c


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)])
def test_freed_neighbours_merge(arena, order):
    regions = [arena.allocate(PAGE, PEER) for _ in range(3)]
    fence = arena.allocate(PAGE, PEER)  # keeps the three apart from the tail
    for i in order:
        arena.release(regions[i], PEER)
    assert arena.allocate(3 * PAGE, PEER) == regions[0]
    assert arena.bytes_in_use() == 4 * PAGE
    assert fence == regions[2] + PAGE


def test_merges_with_the_tail(arena):
    size = arena.info.size - PAGE
    a = arena.allocate(PAGE, PEER)
    b = arena.allocate(PAGE, PEER)
    arena.release(b, PEER)
    arena.release(a, PEER)
    assert arena.bytes_in_use() == 0
    assert arena.allocate(size, PEER) == PAGE


def test_exhaustion(arena):
    size = arena.info.size - PAGE
    assert arena.allocate(size + 1, PEER) is None
    whole = arena.allocate(size, PEER)
    assert whole == PAGE
    assert arena.allocate(1, PEER) is None
    arena.release(whole, PEER)
    assert arena.allocate(1, PEER) == PAGE


def test_fragmented_arena_refuses_what_no_hole_fits(arena):
    regions = []
    while (offset := arena.allocate(PAGE, PEER)) is not None:
        regions.append(offset)
    assert len(regions) == arena.info.size // PAGE - 1
    for offset in regions[::2]:
        arena.release(offset, PEER)
    assert arena.allocate(2 * PAGE, PEER) is None
    assert arena.allocate(PAGE, PEER) == regions[0]


def test_release_checks_the_holder(arena):
    a = arena.allocate(PAGE, PEER)
    arena.release(a, OTHER_PEER)  # not its region: ignored
    arena.release(a + 1, PEER)  # not a region: ignored
    arena.release(12345 * PAGE, PEER)
    assert arena.bytes_in_use() == PAGE
    arena.release(a, PEER)
    arena.release(a, PEER)  # twice: ignored
    assert arena.bytes_in_use() == 0


def test_release_all_of_a_peer(arena):
    mine = [arena.allocate(PAGE, PEER) for _ in range(3)]
    theirs = arena.allocate(PAGE, OTHER_PEER)
    more = arena.allocate(2 * PAGE, PEER)
    arena.release_all(PEER)
    assert arena.bytes_in_use() == PAGE
    # The freed regions merged around the other peer's.
    assert arena.allocate(3 * PAGE, OTHER_PEER) == mine[0]
    assert arena.allocate(2 * PAGE, OTHER_PEER) == more
    arena.release_all(PEER)  # nothing left: no effect
    arena.release(theirs, OTHER_PEER)
    assert arena.bytes_in_use() == 5 * PAGE


def test_view_sent_back_holds_its_region(arena):
    region = arena.allocate(2 * PAGE, PEER)
    assert arena.retain_returned(region + 100, 50, PEER) == region
    assert arena.retain_returned(region, 2 * PAGE, PEER) == region
    arena.release(region, PEER)
    assert arena.bytes_in_use() == 2 * PAGE  # two local holds left
    arena.release_local(region)
    assert arena.bytes_in_use() == 2 * PAGE
    arena.release_local(region)
    assert arena.bytes_in_use() == 0
    arena.release_local(region)  # no hold left: ignored


def test_view_sent_back_that_does_not_match(arena):
    region = arena.allocate(PAGE, PEER)
    assert arena.retain_returned(region, PAGE, OTHER_PEER) is None  # another peer's
    assert arena.retain_returned(region, PAGE + 1, PEER) is None  # past the region
    assert arena.retain_returned(region + PAGE - 1, 2, PEER) is None
    assert arena.retain_returned(region - 1, 1, PEER) is None  # before any region
    assert arena.retain_returned(region + 10 * PAGE, 1, PEER) is None  # in free space
    arena.release(region, PEER)
    assert arena.retain_returned(region, 1, PEER) is None  # released already


def test_lost_peer_with_views_sent_back(arena):
    region = arena.allocate(PAGE, PEER)
    assert arena.retain_returned(region, 8, PEER) == region
    arena.release_all(PEER)
    assert arena.bytes_in_use() == PAGE  # the local view still holds it
    arena.release_local(region)
    assert arena.bytes_in_use() == 0


def test_lendable_region_is_held_here_until_lent(arena):
    region = arena.allocate_lendable(PAGE + 1)
    assert region == PAGE and arena.bytes_in_use() == 2 * PAGE
    # Not held by any peer yet: a peer's release does not free it.
    arena.release(region, PEER)
    arena.release_all(PEER)
    assert arena.bytes_in_use() == 2 * PAGE
    arena.release_local(region)
    assert arena.bytes_in_use() == 0 and arena.num_lends() == 0


@pytest.mark.parametrize("local_first", [True, False])
def test_lent_region_is_free_once_both_sides_let_go(arena, local_first):
    region = arena.allocate_lendable(2 * PAGE)
    assert arena.lend(region, 2 * PAGE, PEER)
    assert arena.num_lends() == 1
    # The peer holds it as a region sent to it: views of it come back.
    assert arena.retain_returned(region, 8, PEER) == region
    arena.release_local(region)
    if local_first:
        arena.release_local(region)
        assert arena.bytes_in_use() == 2 * PAGE
        arena.release(region, PEER)
    else:
        arena.release(region, PEER)
        assert arena.bytes_in_use() == 2 * PAGE
        arena.release_local(region)
    assert arena.bytes_in_use() == 0
    assert arena.allocate(PAGE, PEER) == region


def test_a_region_is_lent_once_and_whole(arena):
    lendable = arena.allocate_lendable(PAGE)
    sent = arena.allocate(PAGE, PEER)
    assert not arena.lend(lendable, PAGE + 1, PEER)  # larger than the region
    assert not arena.lend(lendable + 8, 8, PEER)  # not where it starts
    assert not arena.lend(sent, PAGE, OTHER_PEER)  # allocated for a message
    assert not arena.lend(5 * PAGE, PAGE, PEER)  # free space
    assert arena.lend(lendable, 100, PEER)
    assert not arena.lend(lendable, 100, OTHER_PEER)  # lent already
    assert arena.num_lends() == 1
    arena.release(lendable, OTHER_PEER)  # not its holder: ignored
    arena.release_local(lendable)
    assert arena.bytes_in_use() == 2 * PAGE
    arena.release_all(PEER)  # the peer is lost
    assert arena.bytes_in_use() == 0


def test_local_copy_is_held_here_and_never_lent(arena):
    region = arena.allocate_local(PAGE + 1)
    assert region == PAGE and arena.bytes_in_use() == 2 * PAGE
    assert not arena.lend(region, PAGE, PEER)
    arena.release(region, PEER)
    arena.release_all(PEER)
    assert arena.retain_returned(region, 8, PEER) is None  # no peer holds it
    assert arena.bytes_in_use() == 2 * PAGE
    arena.release_local(region)
    assert arena.bytes_in_use() == 0 and arena.num_lends() == 0


def test_local_copies_take_half_of_the_arena_at_most(arena):
    half = arena.info.size // 2
    first = arena.allocate_local(half - PAGE)
    assert arena.allocate_local(2 * PAGE) is None
    second = arena.allocate_local(PAGE)
    assert second is not None and arena.allocate_local(1) is None
    # The other half stays for messages.
    assert arena.allocate(half - PAGE, PEER) is not None
    arena.release_local(first)
    assert arena.allocate_local(2 * PAGE) is not None


def test_peer_mapping_shares_the_bytes(arena):
    region = arena.allocate(PAGE, PEER)
    arena.write(region, b"distgrad")
    peer_view = _unit.PeerArena.open(arena.info)
    assert peer_view.read(region, 8) == b"distgrad"


def test_peer_mapping_checks_what_was_announced(arena):
    def announced(**changes):
        info = _unit.ArenaInfo.decode(arena.info.encode())
        for name, value in changes.items():
            setattr(info, name, value)
        return info

    assert _unit.PeerArena.open(announced(token=bytes(16))) is None
    assert _unit.PeerArena.open(announced(size=arena.info.size + PAGE)) is None
    assert _unit.PeerArena.open(announced(fd=-1)) is None
    assert _unit.PeerArena.open(announced(size=0)) is None
    assert _unit.PeerArena.open(announced(fd=100000)) is None
