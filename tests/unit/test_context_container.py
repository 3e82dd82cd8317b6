"""The autograd context container (autograd/context_container.h): ids, and
the memory of released ids that keeps a late message from bringing a context
back."""

import pytest

from distgrad import _unit
from distgrad.errors import DistError

REMEMBERED = 65536  # released ids remembered, as docs/design.md says


@pytest.fixture
def container():
    container = _unit.ContextContainer()
    container.set_rank(2)
    return container


def test_ids_carry_the_rank(container):
    first = container.create()
    assert first == (2 << 48) + 1
    assert container.new_id() == first + 1
    assert container.create() == first + 2
    assert first >> 48 == 2
    assert container.size() == 2


def test_retrieve(container):
    context_id = container.create()
    assert container.retrieve(context_id) == context_id
    with pytest.raises(ValueError, match=f"context {context_id + 100} is not known on this worker"):
        container.retrieve(context_id + 100)


def test_release(container):
    context_id = container.create()
    assert container.release(context_id)
    assert not container.release(context_id)
    assert container.size() == 0
    with pytest.raises(ValueError, match="not known"):
        container.retrieve(context_id)


def test_a_callee_creates_on_first_use(container):
    other = (5 << 48) + 7
    assert container.retrieve_or_create(other) == other
    assert container.retrieve_or_create(other) == other
    assert container.size() == 1
    assert container.created_by(5) == [other]
    assert container.created_by(2) == []


def test_a_released_id_cannot_come_back(container):
    other = (5 << 48) + 7
    container.retrieve_or_create(other)
    container.release(other)
    with pytest.raises(DistError, match=f"context {other} has already been released"):
        container.retrieve_or_create(other)
    # Dropping every context (RPC shut down) does not forget released ids.
    container.clear()
    with pytest.raises(DistError, match="already been released"):
        container.retrieve_or_create(other)


def test_only_ids_released_here_are_remembered(container):
    never_held = (5 << 48) + 8
    assert not container.release(never_held)
    assert container.retrieve_or_create(never_held) == never_held


def test_how_many_released_ids_are_remembered(container):
    base = 6 << 48
    for i in range(REMEMBERED):
        container.retrieve_or_create(base + i)
        container.release(base + i)
    # All remembered; one more release forgets the oldest.
    with pytest.raises(DistError):
        container.retrieve_or_create(base)
    container.retrieve_or_create(base + REMEMBERED)
    container.release(base + REMEMBERED)
    assert container.retrieve_or_create(base) == base
    with pytest.raises(DistError):
        container.retrieve_or_create(base + 1)
    with pytest.raises(DistError):
        container.retrieve_or_create(base + REMEMBERED)


def test_created_by(container):
    mine = [container.create() for _ in range(3)]
    container.retrieve_or_create((4 << 48) + 1)
    assert sorted(container.created_by(2)) == mine
    assert container.created_by(4) == [(4 << 48) + 1]
