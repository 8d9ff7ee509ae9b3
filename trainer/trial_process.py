"""One tuning trial's process: `python -m trainer.trial_process <tuner pid> <trainer flags>`.

`trainer.tune` starts every trial this way. Before training it asks Linux to SIGKILL this
process when the tuner dies (`PR_SET_PDEATHSIG`), so a killed search leaves no orphan trainer.
That is done here, in the child, and not in a `preexec_fn`: a `preexec_fn` makes Python fork
the tuner for real, and in a distributed search the tuner runs keras-tuner's gRPC client, whose
fork handlers restart its poller threads in the child, which then abort the child at random
("epoll_wait error: Bad file descriptor", exit -6) before it reaches exec. Without a
`preexec_fn` Python starts the child with vfork+exec and no fork handler runs.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with(parent_pid: int) -> None:
    """SIGKILL this process when `parent_pid` (our parent) dies; exits now if it already has.
    Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the tuner died before prctl took effect
        sys.exit(f"the tuner (pid {parent_pid}) is gone; not starting the trial")


def main(argv) -> int:
    die_with(int(argv[0]))
    from trainer import task

    return task.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
