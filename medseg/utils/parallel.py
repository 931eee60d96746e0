"""Run one function per case in worker processes, with a progress bar and no silent hangs.

The one worker pool of medseg: preparation and folder evaluation both run their cases here.

A case that raises is returned as a failure (the message names the case), and the others go on.
A worker process that dies (killed for memory, a crash in a C library) breaks the whole pool:
that is raised at once as a `WorkerDiedError` instead of waiting for results that never come.
A worker whose parent was killed ends itself within a second (or when the C call it is in
returns), instead of working on as an orphan.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm import tqdm

logger = logging.getLogger(__name__)

PARENT_POLL_SECONDS = 0.5  # how often a worker checks that its parent still lives


class WorkerDiedError(RuntimeError):
    """A worker process ended without returning (out of memory, a crash)."""


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker once the process that started it is gone.

    A killed parent (kill -9) cannot shut its pool down; without this its workers would run
    on through their cases, writing into an output folder nobody watches.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="medseg-parent-watch", daemon=True).start()


def _call(func: Callable[..., Any], case: str, args: tuple) -> tuple[str, Any, str | None]:
    try:
        return case, func(case, *args), None
    except (ValueError, OSError) as err:  # bad input: the message says what is wrong
        return case, None, str(err)
    except Exception as err:  # reported per case too, with its type; the batch goes on
        return case, None, f"{type(err).__name__}: {err}"


def run_cases(
    func: Callable[..., Any],
    jobs: Sequence[tuple[str, tuple]],
    num_workers: int,
    desc: str,
    start_method: str | None = None,
    progress: bool = True,
) -> Iterator[tuple[str, Any, str | None]]:
    """Yield `(case, result, None)` or `(case, None, error message)` for each `(case, args)` job.

    `func(case, *args)` runs in this process when `num_workers` is 0, else in that many worker
    processes (results then arrive in completion order). `func` and its arguments must pickle.
    `start_method` picks how workers start ("spawn" where the parent has touched CUDA, which a
    forked child cannot use); None keeps the platform's default. `progress` shows a bar over
    cases. If the caller stops early
    (Ctrl-C, an error), queued cases are cancelled and only the ones running are finished.

    Raises:
        WorkerDiedError: when a worker process dies; finished results were already yielded.
    """
    bar = tqdm(total=len(jobs), desc=desc, unit="case", disable=not progress)
    try:
        if num_workers <= 0:
            for case, args in jobs:
                yield _call(func, case, args)
                bar.update()
            return
        context = multiprocessing.get_context(start_method) if start_method else None
        pool = ProcessPoolExecutor(
            num_workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
        )
        futures = {pool.submit(_call, func, case, args): case for case, args in jobs}
        pending = set(futures.values())
        try:
            for future in as_completed(futures):
                result = future.result()
                pending.discard(result[0])
                yield result
                bar.update()
        except BrokenProcessPool as err:
            raise WorkerDiedError(
                f"a worker process died while {desc} (killed for memory? try fewer "
                f"--num_workers); {len(pending)} case(s) unfinished, e.g. "
                f"{sorted(pending)[:5]}; finished cases are kept, rerun to resume"
            ) from err
        except BaseException:
            logger.warning(
                "stopping: %d queued case(s) cancelled, the ones running finish first; rerun "
                "to resume",
                len(pending),
            )
            # Cancelled here, not only through shutdown(): that cancels from the pool's manager
            # thread, which finds nothing to cancel if this generator's pool is collected first.
            for future in futures:
                future.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    finally:
        bar.close()
