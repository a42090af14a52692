"""One retrain at a time: a second holder of the flows' lock waits until the first lets go."""

from __future__ import annotations

import threading

from flows.lock import exclusive


def test_a_second_run_waits_for_the_first(tmp_path):
    path = tmp_path / "flows" / "retrain.lock"
    order, second_in = [], threading.Event()

    def second() -> None:
        with exclusive(path):
            order.append("second")
            second_in.set()

    with exclusive(path):
        waiting = threading.Thread(target=second)
        waiting.start()
        assert not second_in.wait(0.5)  # blocked while the first holds the lock
        order.append("first done")
    waiting.join(10)
    assert order == ["first done", "second"]
