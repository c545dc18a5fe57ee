"""The trio <-> asyncio bridge of the SSH transport (no SSH): results, errors, cancellation,
and what a cancelled caller leaves behind."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from stackctl.transport.ssh import run_aio


async def test_result_error_and_thread():
    async def where():
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert await run_aio(where) == "stackctl-asyncssh"

    async def fails():
        raise ValueError("from asyncio")

    with pytest.raises(ValueError, match="from asyncio"):
        await run_aio(fails)


async def test_cancelling_the_trio_caller_cancels_the_asyncio_task():
    cancelled = threading.Event()

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with trio.move_on_after(0.1):
        await run_aio(forever)
    assert await trio.to_thread.run_sync(cancelled.wait, 5)


async def test_a_result_nobody_waits_for_any_more_is_abandoned():
    abandoned = []
    done = threading.Event()

    async def opens_anyway():
        # a task that completes although it was cancelled (it was past its last await, as a
        # connect that has just finished): its result has nobody to go to
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "connection"

    def drop(result):
        abandoned.append((result, threading.current_thread().name))
        done.set()

    with trio.move_on_after(0.1):
        await run_aio(opens_anyway, abandon=drop)
    assert await trio.to_thread.run_sync(done.wait, 5)
    assert abandoned == [("connection", "stackctl-asyncssh")]
