"""Start the ranks of one node without torch: `python -m collectives.spawn --nproc-per-node N -m module ...`.

Why: torchrun imports torch in its own process before starting any rank, which costs every short run on
a small machine about 2.5 s of CPU (the local system's runs and `make demo`). This launcher is the
standard library alone. It sets what torchrun's `--standalone` sets for a rank (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT; collectives.launch reads them as
torchrun's), starts the N ranks with the same Python, and waits for them. If a rank fails, the others are
stopped (SIGTERM, then SIGKILL after a grace period) and the launcher exits with that rank's code; a
SIGTERM or SIGINT to the launcher (a scheduler's cancel) is passed on to every rank. One node only:
several nodes need a scheduler's launcher (srun, mpiexec) or torchrun's rendezvous.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

GRACE_S = 5.0


def free_port() -> int:
    """A TCP port free on this host now (the rendezvous of torch.distributed binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_env(base: dict[str, str], rank: int, nproc: int, port: int) -> dict[str, str]:
    """The environment of rank `rank` of `nproc` on this node, as torchrun --standalone gives it."""
    env = dict(base)
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(nproc),
        GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    return env


def _stop(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(nproc: int, command: list[str]) -> int:
    """Start `nproc` ranks of `python command...`; their exit code (the first failure's, else 0)."""
    port = int(os.environ.get("MASTER_PORT") or free_port())
    procs = [
        subprocess.Popen([sys.executable, *command], env=rank_env(dict(os.environ), r, nproc, port))
        for r in range(nproc)
    ]

    def forward(signum: int, _frame: object) -> None:
        _stop(procs, signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        codes = [p.poll() for p in procs]
        failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            rank, code = failed[0]
            print(f"collectives.spawn: rank {rank} exited with {code}; stopping the others", file=sys.stderr)
            _stop(procs, signal.SIGTERM)
            return code if code > 0 else 128 - code
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.05)


USAGE = "usage: python -m collectives.spawn --nproc-per-node N (-m module | script.py | -c code) [args...]"


def main(argv: list[str] | None = None) -> int:
    """Parsed by hand: everything after the rank count is the ranks' command line, options included."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE + "\n\n" + (__doc__ or ""))
        return 0
    count: str | None = None
    if args and args[0].startswith("--nproc-per-node="):
        count, rest = args[0].split("=", 1)[1], args[1:]
    elif len(args) >= 2 and args[0] == "--nproc-per-node":
        count, rest = args[1], args[2:]
    if count is None:
        print(f"{USAGE}\nerror: --nproc-per-node is required first", file=sys.stderr)
        return 2
    if not count.isdigit() or int(count) < 1:
        print(
            f"{USAGE}\nerror: --nproc-per-node: expected a whole number >= 1, got {count!r}", file=sys.stderr
        )
        return 2
    if not rest:
        print(f"{USAGE}\nerror: no command given (e.g. -m engine.run ...)", file=sys.stderr)
        return 2
    return run(int(count), rest)


if __name__ == "__main__":
    sys.exit(main())
