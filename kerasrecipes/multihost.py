"""Runs a multi-host training script as several processes on this machine (for trying it out).

    python -m kerasrecipes.multihost --processes 2 train.py [script arguments...]

Starts `--processes` copies of the script with `KERAS_BACKEND=jax` and Keras' distribution
variables (`KERAS_DISTRIBUTION_JOB_ADDRESSES=127.0.0.1:PORT`, `..._NUM_PROCESSES`,
`..._PROCESS_ID`), so `kr.initialize_multihost()` in the script joins them into one job. On real
hosts run the script once per host with those variables instead (README, "Multi-host training").
When one process fails, or `--timeout` passes, the others are killed. Exit status: 0 when every
process succeeded, else the first failure's (124 on timeout).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_local(command, processes=2, timeout=None, port=None, env=None):
    """Runs `command` as `processes` cooperating processes of one multi-host job on 127.0.0.1.

    Args:
        command: list of str. The command of every process, e.g. `[sys.executable, "train.py"]`.
        processes: int. Number of processes. Defaults to `2`.
        timeout: optional float. Seconds after which every process still running is killed.
            Defaults to `None` (no limit).
        port: optional int. Coordinator port. Defaults to `None` (a free one).
        env: optional dict. Environment of the processes. Defaults to `os.environ`.

    Returns:
        int. 0 if every process exited with 0; otherwise the first non-zero exit status, or 124
        when the timeout passed.

    Example:
    >>> run_local([sys.executable, "train.py"], processes=2, timeout=600)
    """
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise ValueError(f"processes must be an int >= 1. Received: processes={processes!r}")
    if not command:
        raise ValueError(f"command must name a program to run. Received: command={command!r}")
    port = port or free_port()
    procs = []
    for i in range(processes):
        proc_env = dict(os.environ if env is None else env)
        proc_env.update(
            KERAS_BACKEND="jax",
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
            KERAS_DISTRIBUTION_NUM_PROCESSES=str(processes),
            KERAS_DISTRIBUTION_PROCESS_ID=str(i),
        )
        # Own process group: a kill reaches the workers' children too.
        procs.append(subprocess.Popen(list(command), env=proc_env, start_new_session=True))
    deadline = None if timeout is None else time.monotonic() + timeout
    status = 0
    try:
        while None in [p.poll() for p in procs]:  # poll every process (no short-circuit)
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed:
                status = failed[0]
                break
            if deadline is not None and time.monotonic() > deadline:
                print(f"[kerasrecipes] multihost: timeout after {timeout:g} s, killing the "
                      "processes", file=sys.stderr)
                status = 124
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if status == 0:
        status = next((p.returncode for p in procs if p.returncode != 0), 0)
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m kerasrecipes.multihost",
        description="Run a training script as a multi-host JAX job of local processes.",
    )
    parser.add_argument("--processes", type=int, default=2, help="number of processes (2)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill every process after this many seconds (no limit)")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (a free one)")
    parser.add_argument("script", help="the Python training script")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    args = parser.parse_args(argv)
    return run_local([sys.executable, args.script, *args.args], processes=args.processes,
                     timeout=args.timeout, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
