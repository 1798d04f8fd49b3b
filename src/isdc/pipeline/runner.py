"""Running a build of tasks with luigi, and telling the truth about the outcome.

`luigi.build()` returns True when an input is missing, and the `luigi` command exits 0
on failed tasks (DESIGN §4). `run_build` checks the detailed summary *and* re-checks every
requested task's completeness afterwards (with luigid and several workers, a worker
reports NOT_RUN for work another worker did: completeness is the truth), and lists
quarantined data IDs. `BuildReport.ok` is True only if everything requested was produced.

With several workers luigi forks a new process for every task. A task process then
starts cold (its copy-on-write pages, the caches of the science code, BLAS) and its
results are lost with it: on this 2-core machine two workers made a revolution only 1.2x
faster than one. `run_build` uses `IsdcWorker` instead: luigi's worker and scheduler as
they are, but its tasks run in K long-lived processes forked once per build.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import luigi
import luigi.configuration
import luigi.interface
import luigi.scheduler
import luigi.worker
from luigi.execution_summary import LuigiStatusCode
from luigi.task_register import load_task

from isdc.dal import quarantine
from isdc.dal.templates import all_templates
from isdc.pipeline.base import build_memo

log = logging.getLogger(__name__)

__all__ = ["BuildReport", "run_build", "all_tasks", "limit_blas_threads", "blas_threads", "WORKER_CONFIG",
           "SHARED_WORKER_CONFIG", "IsdcWorker"]


@dataclass
class BuildReport:
    requested: int
    complete: int
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # (task id, why)
    quarantined: list[dict] = field(default_factory=list)
    luigi_status: str = ""
    scheduling_ok: bool = True

    @property
    def ok(self) -> bool:
        return self.complete == self.requested and not self.incomplete and self.scheduling_ok

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        lines = [f"{self.complete}/{self.requested} requested tasks complete (luigi: {self.luigi_status})"]
        for tid, why in self.incomplete[:50]:
            lines.append(f"  INCOMPLETE {tid}: {why}")
        if len(self.incomplete) > 50:
            lines.append(f"  ... and {len(self.incomplete) - 50} more")
        for q in self.quarantined:
            lines.append(f"  QUARANTINED {q.get('data_id')} at {q.get('task')}: {q.get('reason')}")
        return "\n".join(lines)


def all_tasks(roots: Iterable[luigi.Task]) -> list[luigi.Task]:
    """Every task in the graphs below `roots` (each once)."""
    seen: dict[str, luigi.Task] = {}
    stack = list(roots)
    while stack:
        t = stack.pop()
        if t.task_id in seen:
            continue
        seen[t.task_id] = t
        stack.extend(luigi.task.flatten(t.requires()))
    return list(seen.values())


def _why(task: luigi.Task) -> str:
    outs = luigi.task.flatten(task.output())
    reasons = [o.why_incomplete() for o in outs if hasattr(o, "why_incomplete") and not o.exists()]
    return "; ".join(r for r in reasons if r) or "not produced"


# luigi worker settings of every build. wait_interval: after a task process ends, luigi's
# worker waits up to this long for a second one to end before it starts the next task
# (worker._handle_next_task); its default of 1 s left a slot of `--workers 2` idle for most
# of each 0.1-0.5 s task (a revolution took longer with two workers than with one).
WORKER_CONFIG = {"wait_interval": "0.02"}
# ... and when the build is shared through luigid. keep_alive: a worker whose remaining
# tasks wait on tasks another worker is running stays and takes them up when they become
# runnable, instead of leaving (and reporting its build incomplete); it leaves when no task
# of its build is pending. It then asks luigid for work every wait_interval + up to
# wait_jitter seconds (luigi's defaults, 1 s + up to 5 s, would leave it idle for seconds).
SHARED_WORKER_CONFIG = {"keep_alive": "true", "wait_interval": "0.1", "wait_jitter": "0.2"}

# (set, get) symbol names of OpenBLAS builds: plain, and numpy's/scipy's renamed copies.
_BLAS_SYMBOLS = (("openblas_set_num_threads", "openblas_get_num_threads"),
                 ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                 ("openblas_set_num_threads64_", "openblas_get_num_threads64_"))
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _blas_libraries() -> list[tuple[str, object, object]]:
    """(path, setter, getter) of every OpenBLAS library loaded in this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:  # not Linux: the environment variables must do
        return []
    out = []
    for path in paths:
        try:
            handle = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _BLAS_SYMBOLS:
            setter, getter = getattr(handle, set_name, None), getattr(handle, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                out.append((path, setter, getter))
                break
    return out


def limit_blas_threads(n: int = 1) -> list[str]:
    """Set every loaded OpenBLAS library to `n` threads; returns the libraries changed.

    A build's parallelism is worker processes, one task each. OpenBLAS's own threads only
    cost on the small vectors our tasks hand it: a dot product of 16384 doubles takes 2.7 us
    on one thread and 173 us on two on this 2-core machine (its threads wake and spin per
    call), and with two worker processes they fight for the same cores. The environment
    variables are set too, for processes started from this one (and libraries loaded later).
    """
    for var in _BLAS_ENV:
        os.environ[var] = str(n)
    changed = []
    for path, setter, _ in _blas_libraries():
        setter(int(n))
        changed.append(path)
    return changed


@contextlib.contextmanager
def blas_threads(n: int | None):
    """`limit_blas_threads(n)` for the duration of a block, then the threads and environment
    as they were (a notebook that runs a build keeps its BLAS threads); None does nothing."""
    if n is None:
        yield
        return
    env = {var: os.environ.get(var) for var in _BLAS_ENV}
    before = [(setter, int(getter())) for _, setter, getter in _blas_libraries()]
    limit_blas_threads(n)
    try:
        yield
    finally:
        for setter, threads in before:
            setter(threads)
        for var, value in env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@contextlib.contextmanager
def _luigi_config(section: str, values: dict[str, str]):
    """Set luigi configuration values for the duration of a build, then restore them."""
    cfg = luigi.configuration.get_config()
    if not cfg.has_section(section):
        cfg.add_section(section)
    saved = {k: cfg.get(section, k, None) for k in values}
    for k, v in values.items():
        cfg.set(section, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                cfg.remove_option(section, k)
            else:
                cfg.set(section, k, v)


# --------------------------------------------------------------------------- a pool of task processes

class _Reporter:
    """What a task sees of luigi's status reporter in a pool process: the scheduler lives in
    the parent (as with luigi's own forked task processes, status messages stay local)."""

    scheduler_messages = None

    def update_tracking_url(self, *_):
        pass

    update_status_message = update_progress_percentage = decrease_running_resources = update_tracking_url


def _pool_main(conn, result_queue, worker_id: str, check_unfulfilled_deps: bool, check_complete_on_run: bool):
    """A pool process: run the tasks sent on `conn` one after the other, each as luigi's
    TaskProcess.run() does it (dependencies checked, events, result on `result_queue`)."""
    gc.unfreeze()
    parent = os.getppid()
    while True:
        try:
            # Later pool processes hold copies of this pipe's sending end, so EOF may never
            # come: the parent sends None to stop, and a parent that died is noticed here.
            if not conn.poll(1.0):
                if os.getppid() != parent:
                    return
                continue
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        module, family, params, task_id = message
        try:
            task = load_task(module, family, params)
        except Exception as exc:  # the parent made this task from the same code: should not happen
            result_queue.put((task_id, luigi.worker.FAILED, f"pool process cannot load {task_id}: {exc}", [], []))
            continue
        luigi.worker.TaskProcess(task, worker_id, result_queue, _Reporter(), use_multiprocessing=False,
                                 check_unfulfilled_deps=check_unfulfilled_deps,
                                 check_complete_on_run=check_complete_on_run).run()


class _Slot:
    """One pool process and the pipe its tasks are sent on."""

    def __init__(self, worker: "IsdcWorker"):
        ctx = multiprocessing.get_context("fork")
        recv, self.conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_pool_main, daemon=True, name="isdc-task-process",
                                   args=(recv, worker._task_result_queue, worker._id,
                                         worker._config.check_unfulfilled_deps, worker._config.check_complete_on_run))
        self.process.start()
        recv.close()
        self.task_id: str | None = None

    def stop(self, timeout: float = 10.0) -> None:
        """Let the process finish its task and leave; terminate it after `timeout` seconds."""
        try:
            self.conn.send(None)
        except OSError:  # it is gone already
            pass
        self.conn.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)


class _PooledTask:
    """What luigi's worker holds for a running task (the interface of its TaskProcess)."""

    use_multiprocessing = True  # the worker "starts" it and waits for its result
    timeout_time = None
    worker_timeout = 0

    def __init__(self, slot: _Slot, task: luigi.Task):
        self.slot, self.task = slot, task

    def start(self) -> None:
        t = self.task
        self.slot.task_id = t.task_id
        self.slot.conn.send((t.task_module, t.task_family, t.to_str_params(), t.task_id))

    def is_alive(self) -> bool:
        return self.slot.process.is_alive()

    @property
    def exitcode(self):
        return self.slot.process.exitcode

    def terminate(self) -> None:
        self.slot.process.terminate()


class IsdcWorker(luigi.worker.Worker):
    """luigi's worker with two changes.

    Tasks run in `worker_processes` processes forked once, on the first task, each running
    one task after another (luigi forks one process per task); with one worker process they
    run in this process, as luigi runs them. The processes are forked after luigi has
    scheduled the build, so they inherit the fingerprints computed for it; a process that
    dies is replaced (its task is reported failed, as luigi reports a task process that
    died). Tasks with a worker timeout or that accept scheduler messages run as luigi runs
    them.

    In a build shared through luigid, a worker with nothing to run stays only while a task
    of its build is running on another worker. luigi's rule (stay while any task is pending
    *or failed*) held every worker of a revolution with one quarantined ScW until luigid's
    retry delay (15 min), then again after the retry failed, forever.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._slots: list[_Slot] = []

    def _keep_alive(self, get_work_response):
        return super()._keep_alive(get_work_response) and bool(get_work_response.running_tasks)

    def _create_task_process(self, task):
        if self.worker_processes <= 1 or task.worker_timeout or task.accepts_messages or self._config.timeout:
            return super()._create_task_process(task)
        if not self._slots:
            gc.freeze()  # the pool shares this process's objects: keep its GC from writing to them
            try:
                self._slots = [_Slot(self) for _ in range(self.worker_processes)]
            finally:
                gc.unfreeze()
        for i, slot in enumerate(self._slots):
            if slot.task_id not in self._running_tasks:
                if not slot.process.is_alive():
                    slot.stop()
                    slot = self._slots[i] = _Slot(self)
                return _PooledTask(slot, task)
        raise RuntimeError(f"no free task process for {task.task_id}: {len(self._running_tasks)} running")

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for slot in self._slots:
                slot.stop()
            self._slots = []


class _IsdcFactory(luigi.interface._WorkerSchedulerFactory):
    def create_local_scheduler(self):
        # luigi's local scheduler prunes (walks every task) at every get_work: it forgets
        # finished tasks of long-lived schedulers, nothing a one-build scheduler needs.
        return luigi.scheduler.Scheduler(prune_on_get_work=False, record_task_history=False)

    def create_worker(self, scheduler, worker_processes, assistant=False):
        return IsdcWorker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)


def run_build(
    tasks: Sequence[luigi.Task],
    *,
    workers: int = 1,
    scheduler_host: str | None = None,
    scheduler_port: int = 8082,
    log_level: str = "WARNING",
    quarantine_dirs: Iterable[Path] = (),
    blas_thread_count: int | None = 1,
) -> BuildReport:
    """Build `tasks` with a local scheduler (default) or luigid at scheduler_host:port.

    `blas_thread_count` limits the BLAS threads of this process and of its task processes
    during the build (None: leave them as they are); see `limit_blas_threads`.
    """
    # Loaded before the task processes are forked, so that they inherit it.
    all_templates()
    kwargs = dict(detailed_summary=True, workers=workers, log_level=log_level)
    if scheduler_host:
        kwargs.update(scheduler_host=scheduler_host, scheduler_port=scheduler_port)
        worker_config = SHARED_WORKER_CONFIG
    else:
        kwargs.update(local_scheduler=True)
        worker_config = WORKER_CONFIG
    with build_memo(), _luigi_config("worker", worker_config), blas_threads(blas_thread_count):
        result = luigi.build(list(tasks), worker_scheduler_factory=_IsdcFactory(), **kwargs)
    status = result.status
    # SCHEDULING_FAILED: a requires()/complete() raised; MISSING_EXT: an input is absent.
    scheduling_ok = status not in (LuigiStatusCode.SCHEDULING_FAILED, LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED)
    incomplete = []
    done = 0
    for t in tasks:
        try:
            with build_memo():
                ok = t.complete()
        except Exception as exc:  # a broken input makes complete() raise: report it, do not crash
            ok, why = False, f"completeness check failed: {exc}"
        else:
            why = "" if ok else _why(t)
        if ok:
            done += 1
        else:
            incomplete.append((t.task_id, why))
    quarantined = []
    for q in quarantine_dirs:
        quarantined += quarantine.list_records(q)
    return BuildReport(len(tasks), done, incomplete, quarantined, status.name, scheduling_ok)


class Progress:
    """A progress line while a build runs: ScWs done/failed and time left.

    Polls the completeness of each ScW's top task from a thread (completeness checks are
    cached by file stat, so polling is cheap); failed = quarantined.
    """

    def __init__(self, scw_tasks: Sequence[luigi.Task], quarantine_dir: Path | None, stream=None,
                 interval_s: float = 1.0):
        import sys
        import threading

        self.tasks = list(scw_tasks)
        self.qdir = quarantine_dir
        self.stream = stream or sys.stderr
        self.interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = ""

    def __enter__(self):
        import time

        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._show(final=True)

    def counts(self) -> tuple[int, int]:
        done = 0
        for t in self.tasks:
            try:
                done += bool(t.complete())
            except Exception:  # an input being written right now: not done yet
                pass
        failed = len({q.get("data_id") for q in quarantine.list_records(self.qdir)}) if self.qdir else 0
        return done, failed

    def line(self) -> str:
        import time

        done, failed = self.counts()
        n = len(self.tasks)
        elapsed = time.monotonic() - self.t0
        finished = done + failed
        left = (elapsed / finished * (n - finished)) if 0 < finished < n else 0.0
        width = 30
        bar = "#" * int(width * finished / max(n, 1))
        return (f"[{bar:<{width}}] {done}/{n} ScWs done, {failed} failed, "
                f"{elapsed:5.0f} s elapsed, ~{left:4.0f} s left")

    def _show(self, final=False):
        text = self.line()
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        elif final or text != self._last:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last = text

    def _run(self):
        while not self._stop.wait(self.interval if self._tty else max(self.interval, 10.0)):
            self._show()
