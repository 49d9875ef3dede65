"""``RingHandles``: the rings a worker is given, typed, picklable, checked when made."""

from __future__ import annotations

import pickle

import pytest

from reactor.ipc import RingError, RingHandles, ShmRing
from reactor.ipc.cuda_ring import CudaRingHandle


def test_the_supervisors_rings_become_handles_by_role(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(2, 2)) as ring, \
            ShmRing.create(name + "-out", slots=3, shape=(2, 2), policy="block") as out:
        handles = RingHandles.of({"input": ring, "output": out})
        assert (handles.input, handles.output) == (ring.handle, out.handle)
        assert (handles.audio_in, handles.audio_out) == (None, None)
        assert pickle.loads(pickle.dumps(handles)) == handles  # crosses the spawn boundary
        assert handles.shm_output() == out.handle
        assert ShmRing.attach(handles.input).stats().slots == 2


def test_a_pipeline_without_an_output_ring_is_refused_naming_what_it_has(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(2, 2)) as ring, \
            pytest.raises(RingError, match="needs an input and an output ring; found input"):
        RingHandles.of({"input": ring})


def test_a_shared_memory_reader_refuses_a_cuda_output(name: str) -> None:
    with ShmRing.create(name, slots=2, shape=(2, 2)) as ring:
        cuda = CudaRingHandle(meta=ring.handle, shape=(2, 2, 3), dtype="uint8", device=0)
        handles = RingHandles(input=ring.handle, output=cuda)
        with pytest.raises(RingError, match=f"ring '{name}' is a CudaRing"):
            handles.shm_output()
