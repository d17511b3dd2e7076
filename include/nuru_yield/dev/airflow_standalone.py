"""Drive a real Airflow from the outside, through its REST API v2: ``airflow standalone``
(scheduler, DAG processor, API server, triggerer; LocalExecutor), or a distributed one on
this machine (:func:`celery_cluster`: scheduler, DAG processor, API server and several
``airflow celery worker`` processes behind a Redis broker, CeleryExecutor).

Used by ``make demo`` and the end-to-end tests: both run the project's DAGs through Airflow
itself rather than calling the library directly. This module does not import Airflow; it
starts the ``airflow`` command of the current environment as subprocesses, each carrying a
per-run mark in its environment so that everything they start is stopped at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nuru_yield.dev.local_services import free_port
from nuru_yield.errors import NuruError
from nuru_yield.names import NIGHT_DAGS

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise

REPO = Path(__file__).resolve().parents[3]
INGESTION = NIGHT_DAGS[0]  # the night's first DAG: its raw_inputs event starts CHAIN
CHAIN = NIGHT_DAGS[1:]
FINISHED = {"success", "failed"}
TASK_DONE = {"success", "failed", "skipped", "upstream_failed", "removed"}
# Waiting for a run: how often to look, how often to say what runs, and how long a run may
# make no progress at all before the wait gives up (see AirflowStandalone.wait_for_run).
POLL_SECONDS = 1.0
REPORT_SECONDS = 30.0
DEFAULT_STALL_SECONDS = 600.0
# Set, with a value unique to each standalone(), in the environment of everything it starts.
STANDALONE_MARK = "NURU_AIRFLOW_STANDALONE"
# The name a Celery worker of celery_cluster() reports as its host (see worker_hostname).
WORKER_NAME = "NURU_AIRFLOW_WORKER"


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for the workers of :func:`celery_cluster`.

    Airflow records the host of each task instance (``ti.hostname``) from this callable.
    Workers on different machines differ by their host names; the workers started here
    share one machine, so each reports its own name instead, as a separate host would.
    """
    return os.environ.get(WORKER_NAME) or socket.getfqdn()


# How a task talks to the API server (Airflow's ``[workers]`` options, read by the task
# SDK's client) on a small, busy machine. Airflow's defaults (5 s per request, 5 attempts 1 to
# 90 s apart) fail a task before it runs any code when the one API server worker is slow to
# answer its start call (``httpcore.ReadTimeout`` in ``task_instances.start``) while other
# tasks import pandas and sklearn on the same two cores; a longer wait and more, shorter-spaced
# retries make a busy machine slow the night down instead. The Makefile (`make airflow`) and
# docker-compose.yml set the same values (a test checks all three).
EXECUTION_API_SETTINGS = {
    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "2",
    "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "30",
}


class AirflowError(NuruError):
    """Airflow did not start or stopped, or a DAG run failed or made no progress."""


def airflow_environment(
    home: Path, port: int, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for a standalone Airflow on loopback with the project's DAGs."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        # The log servers' fixed ports (8793, 8794) may be taken by another Airflow (`make
        # airflow`); logs are read from local files here anyway.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        **EXECUTION_API_SETTINGS,
        # The cron schedules would start runs for last night / last Monday as soon as the
        # DAGs are unpaused; here runs are triggered for a chosen date instead.
        "NURU_SCHEDULES": "manual",
        **(extra or {}),
    }


@dataclass
class AirflowStandalone:
    """A running Airflow (``airflow standalone`` or the components of a cluster) and a
    REST API v2 client for it."""

    home: Path
    port: int
    components: dict[str, subprocess.Popen[bytes]]  # name -> process; logs in {name}.log
    client: httpx.Client = field(repr=False)
    mark: str  # the value of STANDALONE_MARK in the environment of its processes
    # What waits read the time from and sleep with (tests give a clock of their own).
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @property
    def log_path(self) -> Path:
        return self.home / "standalone.log"

    def processes(self) -> list[Any]:
        """Every process of this Airflow now (``psutil.Process``; see :func:`_started_by`)."""
        return _started_by([p.pid for p in self.components.values()], self.mark)

    # --- REST helpers -------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise AirflowError(
                f"Airflow API {method} {path}: {response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float = 300) -> None:
        """Wait until the DAG processor has parsed every DAG (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {
                dag["dag_id"] for dag in self._call("GET", "/dags", params={"limit": 100})["dags"]
            }
            if set(dag_ids) <= found:
                return
            errors = self._call("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise AirflowError(f"DAG import errors: {errors[0].get('stack_trace', '')[-500:]}")
            self._check_alive()
            if time.monotonic() > deadline:
                raise AirflowError(
                    f"DAGs not parsed after {timeout:.0f}s: missing {set(dag_ids) - found}"
                )
            time.sleep(1)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    @contextlib.contextmanager
    def unpaused(self, dag_ids: tuple[str, ...]) -> Iterator[None]:
        """The DAGs unpaused for the block and paused again after it (also when it fails), so
        the Airflow home is left as it was found: a later `make airflow` on it, with the cron
        schedules on, starts no run nobody asked for."""
        try:
            for dag_id in dag_ids:
                self.unpause(dag_id)
            yield
        finally:
            for dag_id in dag_ids:
                with contextlib.suppress(AirflowError, httpx.HTTPError):
                    self.pause(dag_id)

    def trigger(
        self, dag_id: str, conf: Mapping[str, Any], partition_key: str | None = None
    ) -> str:
        """Start a manual run; returns its run id. A run of a night — a ``partition_key``
        (a partitioned DAG: the UI shows it on the run) or a ``run_date`` in ``conf`` —
        is named after it (run id and note)."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if partition_key:
            body["partition_key"] = partition_key
        if night := partition_key or conf.get("run_date"):
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            body["dag_run_id"] = f"manual__night_{night}__{stamp}"
            body["note"] = night_note(dt.date.fromisoformat(night))
        return self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self._call(
            "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50}
        )["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._call(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500}
        )["task_instances"]

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str | None = None,
        stall: float = DEFAULT_STALL_SECONDS,
        earlier: Collection[str] = (),
        rerun: str | None = None,
    ) -> dict[str, Any]:
        """Wait for a run of ``dag_id`` to finish: ``run_id``, or the newest run that is not
        one of the ``earlier`` run ids (an Airflow home used before holds runs of its own).

        It waits as long as the run makes progress (:meth:`_activity`: a state of the run or
        of one of its tasks changes, a running task's log grows or its processes use CPU),
        however long the work takes on a busy machine, and gives up only after ``stall``
        seconds without any, or when Airflow itself stops. Each task's state changes are
        logged, and every ``REPORT_SECONDS`` which tasks run and for how long. A failed or
        stalled run raises :class:`AirflowError` naming the task, its log and ``rerun``
        (what to run again)."""
        started = last_progress = last_report = self.clock()
        last_state: str | None = None
        seen: dict[tuple[str, int], str] = {}
        running_since: dict[tuple[str, int], float] = {}
        activity: Any = None
        while True:
            run = self._find_run(dag_id, run_id, earlier)
            state = run["state"] if run else "not started"
            if state != last_state:
                log.info("airflow: %s %s", dag_id, state)
                last_state = state
            instances = self._instances(dag_id, run["dag_run_id"]) if run else []
            self._log_task_changes(dag_id, instances, seen)
            if run and state in FINISHED:
                if state == "failed":
                    raise AirflowError(self._failed(dag_id, run["dag_run_id"], rerun))
                return run
            now = self.clock()
            running = [ti for ti in instances if ti["state"] == "running"]
            for ti in running:
                running_since.setdefault(_key(ti), now)
            current = (state, self._activity(dag_id, instances))
            if current != activity:
                activity, last_progress = current, now
            idle = now - last_progress
            if now - last_report >= REPORT_SECONDS:
                since = {key: now - first for key, first in running_since.items()}
                status = self._status(dag_id, state, running, since, now - started, idle, stall)
                log.info("airflow: %s", status)
                last_report = now
            if idle >= stall:
                raise AirflowError(
                    self._stalled(dag_id, run, state, running, running_since, now, stall, rerun)
                )
            self._check_alive()
            self.sleep(POLL_SECONDS)

    def _find_run(
        self, dag_id: str, run_id: str | None, earlier: Collection[str]
    ) -> dict[str, Any] | None:
        try:
            runs = self.runs(dag_id)
        except httpx.TimeoutException:  # a busy API server answers late: ask again
            return None
        return next(
            (
                r
                for r in runs
                if r["dag_run_id"] == run_id or (run_id is None and r["dag_run_id"] not in earlier)
            ),
            None,
        )

    def _instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        try:
            return self.task_instances(dag_id, run_id)
        except httpx.TimeoutException:
            return []

    def _log_task_changes(
        self, dag_id: str, instances: list[dict[str, Any]], seen: dict[tuple[str, int], str]
    ) -> None:
        """Log the tasks of a run whose state changed since ``seen`` (updated in place)."""
        done = sum(ti["state"] in TASK_DONE for ti in instances)
        # Finished tasks first, so a poll's lines read in the order things happened.
        for ti in sorted(instances, key=lambda ti: ti["state"] not in TASK_DONE):
            key = _key(ti)
            if ti["state"] and ti["state"] != seen.get(key):
                seen[key] = ti["state"]
                log.info(
                    "airflow: %s › %s %s (%d/%d tasks done)",
                    dag_id, _label(ti), ti["state"], done, len(instances),
                )  # fmt: skip

    def task_log(self, dag_id: str, ti: Mapping[str, Any]) -> Path:
        """Where a task instance's log is (Airflow's default ``log_filename_template``)."""
        folder = (
            self.home / "logs" / f"dag_id={dag_id}" / f"run_id={ti['dag_run_id']}"
        ) / f"task_id={ti['task_id']}"
        if ti.get("map_index", -1) >= 0:
            folder = folder / f"map_index={ti['map_index']}"
        return folder / f"attempt={max(ti.get('try_number') or 1, 1)}.log"

    def _activity(self, dag_id: str, instances: list[dict[str, Any]]) -> tuple[Any, ...]:
        """What changes while a run works: each task's state and try and, for a running
        task, the size of its log and the CPU time of its processes."""
        observed = []
        for ti in sorted(instances, key=_key):
            work: tuple[Any, ...] = ()
            if ti["state"] == "running":
                path = self.task_log(dag_id, ti)
                size = path.stat().st_size if path.exists() else 0
                work = (size, _cpu_seconds(ti.get("pid")))
            observed.append((*_key(ti), ti["state"], ti.get("try_number"), *work))
        return tuple(observed)

    def _status(
        self,
        dag_id: str,
        state: str,
        running: list[dict[str, Any]],
        running_for: Mapping[tuple[str, int], float],
        elapsed: float,
        idle: float,
        stall: float,
    ) -> str:
        """One line for the terminal: the run, each running task and how long it runs, and
        how long ago the last sign of progress was (once it is not the last poll's)."""
        tasks = ", ".join(
            f"{_label(ti)} running for {_minutes(running_for[_key(ti)])} "
            f"(log {_size(self.task_log(dag_id, ti))}){_latest_progress(self.task_log(dag_id, ti))}"
            for ti in running
        )
        line = f"waiting for {dag_id} ({state}, {_minutes(elapsed)})"
        line += f": {tasks}" if tasks else ": no task running"
        if idle >= REPORT_SECONDS:
            line += f"; last sign of progress {_minutes(idle)} ago (gives up at {_minutes(stall)})"
        return line

    def _failed(self, dag_id: str, run_id: str, rerun: str | None) -> str:
        failed = [
            ti
            for ti in self._instances(dag_id, run_id)
            if ti["state"] in ("failed", "upstream_failed")
        ]
        first = [ti for ti in failed if ti["state"] == "failed"] or failed
        tasks = "; ".join(
            f"task {_label(ti)} failed (try {ti.get('try_number')}), its log: "
            f"{self.task_log(dag_id, ti)}"
            for ti in first
        )
        return (
            f"{dag_id} run {run_id} failed: {tasks or 'no task failed (see the scheduler log)'}"
            f" (Airflow's logs: {self.home})" + (f"; to run it again: {rerun}" if rerun else "")
        )

    def _stalled(
        self,
        dag_id: str,
        run: Mapping[str, Any] | None,
        state: str,
        running: list[dict[str, Any]],
        running_since: Mapping[tuple[str, int], float],
        now: float,
        stall: float,
        rerun: str | None,
    ) -> str:
        name = f"{dag_id} run {run['dag_run_id']}" if run else f"{dag_id} (no run started)"
        tasks = "; ".join(
            f"task {_label(ti)} running for {_minutes(now - running_since[_key(ti)])}, "
            f"its log: {self.task_log(dag_id, ti)}"
            for ti in running
        )
        return (
            f"{name} made no progress for {_minutes(stall)} (no state changed, no task log "
            f"grew, no task process used CPU; run {state}): {tasks or 'no task running'} "
            f"(Airflow's logs: {self.home})" + (f"; to run it again: {rerun}" if rerun else "")
        )

    def overhead(self, dag_id: str, run: Mapping[str, Any]) -> dict[str, float]:
        """DAG-run wall time versus the sum of its tasks' run times."""
        from datetime import datetime

        def seconds(start: str, end: str) -> float:
            return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

        tasks = self.task_instances(dag_id, run["dag_run_id"])
        task_seconds = sum(ti["duration"] or 0.0 for ti in tasks)
        wall = seconds(run["start_date"], run["end_date"])
        return {
            "wall_s": wall,
            "tasks_s": task_seconds,
            "ratio": wall / task_seconds if task_seconds else float("nan"),
        }

    def _check_alive(self) -> None:
        for name, process in self.components.items():
            if process.poll() is not None:
                log_path = self.home / f"{name}.log"
                tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                raise AirflowError(f"airflow {name} exited ({process.returncode}):\n{tail}")


@contextlib.contextmanager
def standalone(
    home: Path,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 300,
    login: tuple[str, str] | None = None,
) -> Iterator[AirflowStandalone]:
    """Start ``airflow standalone`` in ``home`` on a free loopback port; stop it on exit.
    Every user is an admin without a password, unless ``extra_env`` turns that off
    (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False``, with its users): then the
    REST client logs in as ``login`` (user name, password)."""
    with _airflow(home, extra_env, timeout, login) as start:
        start("standalone", ["standalone"])
        yield start.ready()


@contextlib.contextmanager
def celery_cluster(
    home: Path,
    *,
    broker_url: str,
    metadata_url: str,
    workers: Sequence[str] = ("worker-a", "worker-b"),
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Iterator[AirflowStandalone]:
    """Start Airflow with the CeleryExecutor on this machine: a scheduler, a DAG processor,
    an API server and one ``airflow celery worker`` per name in ``workers`` (one task at
    a time each, each reporting its name as its host), on the Redis ``broker_url`` and the
    PostgreSQL ``metadata_url``. Waits until every worker is ready; stops all on exit."""
    env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
        **(extra_env or {}),
    }
    with _airflow(home, env, timeout) as start:
        start.run("db-migrate", ["db", "migrate"])
        for component in ("scheduler", "dag-processor", "api-server"):
            start(component, [component])
        for name in workers:
            worker = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
            start(name, worker, {WORKER_NAME: name})
        airflow = start.ready()
        for name in workers:
            _wait_for_line(airflow, name, f"{name}@", "ready", timeout=timeout)
        yield airflow


class _Starter:
    """Starts marked Airflow processes in ``home``; :meth:`ready` waits for the API."""

    def __init__(
        self,
        home: Path,
        env: dict[str, str],
        port: int,
        timeout: float,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.home, self.env, self.port, self.timeout = home, env, port, timeout
        self.login = login
        self.components: dict[str, subprocess.Popen[bytes]] = {}
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self.airflow = AirflowStandalone(
            home, port, self.components, self.client, env[STANDALONE_MARK]
        )
        self._logs: list[Any] = []

    def _command(self, args: list[str]) -> list[str]:
        return [str(Path(sys.executable).parent / "airflow"), *args]

    def __call__(
        self, name: str, args: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log_file = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log_file)
        process = subprocess.Popen(
            self._command(args),
            env={**self.env, **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.components[name] = process
        return process

    def run(self, name: str, args: list[str]) -> None:
        """Run one ``airflow`` command to completion (e.g. ``db migrate``)."""
        with open(self.home / f"{name}.log", "ab") as log_file:
            done = subprocess.run(
                self._command(args), env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        if done.returncode:
            tail = (self.home / f"{name}.log").read_text(errors="replace")[-1500:]
            raise AirflowError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{tail}")

    def ready(self) -> AirflowStandalone:
        _wait_healthy(self.airflow, self.timeout)
        if self.login:  # a user of the simple auth manager, with its password
            username, password = self.login
            answer = self.client.post(
                "/auth/token", json={"username": username, "password": password}
            )
        else:  # every user an admin: a token for the asking
            answer = self.client.get("/auth/token")
        if answer.status_code >= 400:
            raise AirflowError(f"Airflow refused a token: {answer.status_code} {answer.text[:300]}")
        token = answer.json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"
        return self.airflow

    def close(self) -> None:
        self.client.close()
        _stop_tree(list(self.components.values()), self.env[STANDALONE_MARK])
        for log_file in self._logs:
            log_file.close()


@contextlib.contextmanager
def _airflow(
    home: Path,
    extra_env: Mapping[str, str] | None,
    timeout: float,
    login: tuple[str, str] | None = None,
) -> Iterator[_Starter]:
    """The environment, marking and teardown every way of running Airflow here shares."""
    if shutil.which("airflow", path=str(Path(sys.executable).parent)) is None:
        raise AirflowError(
            "the airflow command is not installed next to this Python (run `make setup`)"
        )
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**airflow_environment(home, port, extra_env), STANDALONE_MARK: uuid.uuid4().hex}
    starter = _Starter(home, env, port, timeout, login)
    # A plain SIGTERM would end this process without running `finally` and orphan Airflow.
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield starter
    finally:
        starter.close()
        signal.signal(signal.SIGTERM, previous_handler)


def _wait_for_line(
    airflow: AirflowStandalone, name: str, *needles: str, timeout: float = 120
) -> None:
    """Wait (bounded) until a line of component ``name``'s log holds every needle."""
    log_path = airflow.home / f"{name}.log"
    deadline = time.monotonic() + timeout
    while True:
        if log_path.exists():
            lines = log_path.read_text(errors="replace").splitlines()
            if any(all(needle in line for needle in needles) for line in lines):
                return
        airflow._check_alive()
        if time.monotonic() > deadline:
            raise AirflowError(f"airflow {name} not ready after {timeout:.0f}s; see {log_path}")
        time.sleep(0.5)


def _stop_tree(
    processes: subprocess.Popen[bytes] | Sequence[subprocess.Popen[bytes]],
    mark: str,
    grace: float = 30,
) -> None:
    """Stop Airflow's processes and every process they started (see :func:`_started_by`).
    SIGTERM first; whatever still runs after ``grace`` seconds, including anything started
    meanwhile, is killed, named in the log, and waited for, so nothing outlives the
    caller's ``with``."""
    import psutil

    roots = [processes] if isinstance(processes, subprocess.Popen) else list(processes)
    pids = [root.pid for root in roots]
    members = _started_by(pids, mark)
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.terminate()
    if still_running := _wait_gone(members, grace):
        stubborn = _wait_gone(list({*still_running, *_started_by(pids, mark)}), 0)
        log.warning(
            "airflow: %d process(es) still running %.0fs after SIGTERM; killing %s",
            len(stubborn),
            grace,
            ", ".join(_describe(member) for member in stubborn),
        )
        for member in stubborn:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        survivors = _wait_gone(stubborn, grace)
        if survivors:
            log.error(
                "airflow: still running after SIGKILL: %s",
                ", ".join(_describe(member) for member in survivors),
            )
    for root in roots:
        root.wait()


def _started_by(roots: int | Sequence[int], mark: str) -> list[Any]:
    """Processes ``roots``, their descendants, and every process whose environment carries
    ``mark`` in :data:`STANDALONE_MARK`. Airflow's scheduler, DAG processor, API server and
    task workers run in sessions of their own, so the process group does not reach them,
    and one whose parent has died is re-parented out of the tree; the environment they all
    inherit still names them."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for root in [roots] if isinstance(roots, int) else roots:
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(root)
            found |= {member.pid: member for member in (parent, *parent.children(recursive=True))}
    for candidate in psutil.process_iter():
        if candidate.pid not in found:
            with contextlib.suppress(psutil.Error):
                if candidate.environ().get(STANDALONE_MARK) == mark:
                    found[candidate.pid] = candidate
    return list(found.values())


def _wait_gone(processes: list[Any], timeout: float) -> list[Any]:
    """The members of ``processes`` still running after up to ``timeout`` seconds.

    Not ``psutil.wait_procs``: for a process that is not our child it waits until the PID
    disappears, and an orphaned zombie (re-parented to an init that does not reap, as in
    some containers) never does, although it is no longer running."""
    import psutil

    def running(member: psutil.Process) -> bool:
        try:
            if not member.is_running():
                return False
            if member.ppid() == os.getpid():
                with contextlib.suppress(psutil.TimeoutExpired, ChildProcessError):
                    member.wait(timeout=0)  # reap our own child so it leaves the table
                    return False
            return member.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    alive = [member for member in processes if running(member)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [member for member in alive if running(member)]
    return alive


def _describe(member: Any) -> str:
    import psutil

    try:
        return f"{member.pid} ({' '.join(member.cmdline())[:80]})"
    except psutil.Error:
        return str(member.pid)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _wait_healthy(airflow: AirflowStandalone, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            health = airflow.client.get("/api/v2/monitor/health").json()
            if (
                health["metadatabase"]["status"] == "healthy"
                and health["scheduler"]["status"] == "healthy"
            ):
                return
        airflow._check_alive()
        if time.monotonic() > deadline:
            raise AirflowError(
                f"Airflow not healthy after {timeout:.0f}s; see the logs in {airflow.home}"
            )
        time.sleep(1)


def _key(ti: Mapping[str, Any]) -> tuple[str, int]:
    return ti["task_id"], ti.get("map_index", -1)


def _label(ti: Mapping[str, Any]) -> str:
    """``task`` or ``task[2]`` for shard 2 of a mapped task."""
    index = ti.get("map_index", -1)
    return f"{ti['task_id']}[{index}]" if index >= 0 else ti["task_id"]


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _latest_progress(path: Path, tail_bytes: int = 16_384) -> str:
    """The task's latest progress line (``nuru_yield.progress``: rounds, elapsed, time left),
    as `` — …`` for the status line; empty when its log has none yet."""
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(path.stat().st_size - tail_bytes, 0))
        lines = handle.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        if "nuru_yield.progress" not in line:
            continue
        try:  # Airflow 3 writes task logs as JSON lines
            message = str(json.loads(line).get("event", ""))
        except (ValueError, AttributeError):
            message = line.split("nuru_yield.progress", 1)[1].lstrip(":] -")
        return f" — {message.strip()}" if message.strip() else ""
    return ""


def _size(path: Path) -> str:
    size = path.stat().st_size if path.exists() else 0
    return f"{size / 1024:.1f} KB" if size >= 1024 else f"{size} B"


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of a task's process and its children (None when it is not a process
    of this machine, or gone)."""
    import psutil

    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for member in members:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system
    return round(total, 2)


def night_note(run_date: dt.date) -> str:
    """The note on a run of the night ``run_date``."""
    return f"night {run_date.isoformat()}"


def run_chain(
    airflow: AirflowStandalone,
    run_date: dt.date,
    stall: float = DEFAULT_STALL_SECONDS,
    rerun: Mapping[str, str] | None = None,
    *,
    from_ingestion: bool = False,
) -> dict[str, dict[str, Any]]:
    """Trigger ``feature_materialization`` for the night ``run_date`` (its partition key)
    — or, ``from_ingestion``, ``raw_ingestion`` with the night as its ``run_date``, whose
    ``raw_inputs`` event (keyed by the night) starts ``feature_materialization`` — and wait
    for the Asset chain (``batch_scoring`` → ``drift_monitoring``, whose runs Airflow keys
    by the same night) to finish; the DAGs are paused again afterwards. Returns the finished
    runs. ``stall`` and ``rerun`` (per DAG) as for :meth:`AirflowStandalone.wait_for_run`."""
    rerun = rerun or {}
    dags = (INGESTION, *CHAIN) if from_ingestion else CHAIN
    airflow.wait_for_dags(dags)
    earlier = {dag_id: {run["dag_run_id"] for run in airflow.runs(dag_id)} for dag_id in dags}
    with airflow.unpaused(dags):
        if from_ingestion:
            run_id = airflow.trigger(INGESTION, {"run_date": run_date.isoformat()})
        else:
            run_id = airflow.trigger(CHAIN[0], {}, partition_key=run_date.isoformat())
        first = dags[0]
        finished = {first: airflow.wait_for_run(first, run_id, stall, rerun=rerun.get(first))}
        for dag_id in dags[1:]:
            finished[dag_id] = airflow.wait_for_run(
                dag_id, None, stall, earlier[dag_id], rerun=rerun.get(dag_id)
            )
    return finished
