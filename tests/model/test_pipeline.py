"""The folder pipeline: stages overlap, order and errors are kept, memory stays bounded."""

from __future__ import annotations

import threading

import pytest

from cerber_model.runtime.pipeline import pipelined
from cerber_model.runtime.progress import Cancelled, CancelToken


def test_results_in_input_order_with_every_stage_applied():
    outcomes = list(pipelined(range(7), lambda i: i * 10, lambda i, r: r + 1, lambda i, c: (i, c)))
    assert [o.item for o in outcomes] == list(range(7))
    assert [o.value for o in outcomes] == [(i, i * 10 + 1) for i in range(7)]
    assert all(o.ok for o in outcomes)


def test_the_next_image_is_read_and_the_last_finished_while_the_network_runs():
    read_started = {i: threading.Event() for i in range(3)}
    finish_started = {i: threading.Event() for i in range(3)}
    threads = {}

    def read(i):
        threads.setdefault("read", threading.current_thread().name)
        read_started[i].set()
        return i

    def compute(i, r):
        threads.setdefault("compute", threading.current_thread().name)
        if i == 1:
            # Run one after another, neither of these could happen before compute(1) returns.
            assert read_started[2].wait(5), "image 2 was not read while image 1 was in the network"
            assert finish_started[0].wait(5), "image 0 was not finished while image 1 was in the network"
        return r

    def finish(i, c):
        finish_started[i].set()
        return c

    assert [o.value for o in pipelined(range(3), read, compute, finish)] == [0, 1, 2]
    assert threads["compute"] == threading.current_thread().name
    assert threads["read"] != threads["compute"]


def test_a_failing_stage_fails_only_its_own_item():
    def read(i):
        if i == 1:
            raise OSError("unreadable")
        return i

    def compute(i, r):
        if i == 2:
            raise ValueError("bad shape")
        return r

    def finish(i, c):
        if i == 3:
            raise RuntimeError("disk full")
        return c

    outcomes = list(pipelined(range(5), read, compute, finish))
    assert [o.ok for o in outcomes] == [True, False, False, False, True]
    assert [type(o.error) for o in outcomes[1:4]] == [OSError, ValueError, RuntimeError]
    assert outcomes[4].value == 4


def test_images_waiting_for_the_network_stay_bounded():
    lock = threading.Lock()
    waiting = [0]
    most = [0]

    def read(i):
        with lock:
            waiting[0] += 1
            most[0] = max(most[0], waiting[0])
        return i

    def compute(i, r):
        with lock:
            waiting[0] -= 1
        threading.Event().wait(0.002)  # let the reader run ahead if it could
        return r

    for depth in (0, 1, 2):
        most[0] = 0
        assert len(list(pipelined(range(30), read, compute, lambda i, c: c, depth=depth))) == 30
        # depth + 1 reads queued behind the image in compute, which counts until compute starts.
        assert most[0] <= depth + 2


def test_cancel_stops_before_the_next_image_and_keeps_finished_ones():
    token = CancelToken()
    finished = []

    def compute(i, r):
        if i == 2:
            token.cancel()
        return r

    def finish(i, c):
        finished.append(i)
        return c

    seen = []
    with pytest.raises(Cancelled):
        for outcome in pipelined(range(10), lambda i: i, compute, finish, cancel=token):
            seen.append(outcome.item)
    assert seen == [0, 1]
    assert finished == [0, 1, 2]  # image 2 was computed before the cancel was seen; it was finished, whole
