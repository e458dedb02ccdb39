"""The tests' one way of waiting (tests/waiting.py): what it returns, and how it fails."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.waiting import wait_until, wait_until_blocking


async def test_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert await wait_until(lambda: next(counter) >= 3 and "done", timeout=5, what="x") == "done"


async def test_awaits_an_async_condition_and_returns_a_falsy_value_that_ok_accepts() -> None:
    values = iter([3, 2, 1, 0])

    async def read() -> int:
        return next(values)

    assert await wait_until(read, ok=lambda n: n == 0, timeout=5, what="zero", interval=0) == 0


async def test_fails_naming_what_it_waited_for_with_the_last_value_and_the_detail() -> None:
    with pytest.raises(AssertionError) as failure:
        await wait_until(
            lambda: [1, 2],
            ok=lambda got: len(got) >= 3,
            timeout=0.05,
            what="three items",
            detail=lambda: "the log's tail",
        )
    assert str(failure.value) == (
        "timed out after 0.05s waiting for three items; last seen: [1, 2]\nthe log's tail"
    )


async def test_a_check_that_never_finishes_is_cut_at_the_timeout() -> None:
    async def hang() -> bool:
        await asyncio.Event().wait()
        return True

    with pytest.raises(AssertionError, match="waiting for an answer; no check finished"):
        await wait_until(hang, timeout=0.05, what="an answer")


async def test_what_the_condition_raises_goes_through() -> None:
    def broken() -> bool:
        raise ValueError("the process exited")

    async def times_out() -> bool:
        raise TimeoutError("its own")

    with pytest.raises(ValueError, match="the process exited"):
        await wait_until(broken, timeout=5, what="x")
    with pytest.raises(TimeoutError, match="its own"):
        await wait_until(times_out, timeout=5, what="x")


def test_the_blocking_twin_returns_and_fails_the_same_way() -> None:
    counter = itertools.count()
    assert wait_until_blocking(lambda: next(counter), ok=lambda n: n == 2, timeout=5, what="x") == 2
    with pytest.raises(AssertionError, match=r"waiting for never; last seen: False\nlog"):
        wait_until_blocking(lambda: False, timeout=0.05, what="never", detail=lambda: "log")
