"""The CLI in a child process with one fault injected, chosen by UNETPP_FAULT (tests only).

* ``kill-step:N`` / ``term-step:N`` / ``int-step:N``: SIGKILL / SIGTERM / SIGINT this process after training step N.
* ``kill-replace:NAME:K``: SIGKILL this process at the K-th rename of a temporary file onto NAME, i.e. after
  the temporary file is fully written and before it replaces the real one (the moment a crash is most harmful).
* ``fsize:BYTES``: no file may grow past BYTES (the kernel's RLIMIT_FSIZE: writes fail as on a full disk).
* ``memory:BYTES``: the process may map at most BYTES (RLIMIT_AS): an allocation past it fails instead of
  growing until the OOM killer ends the process (or the machine).
"""

from __future__ import annotations

import os
import signal
import sys


def as_from_a_terminal() -> None:
    """Ctrl-C raises KeyboardInterrupt, as in a terminal's foreground, however the test suite was started.

    A suite started in the background (``nohup pytest ... &``) hands its children SIGINT ignored, and Python
    then leaves it ignored instead of installing the handler that raises KeyboardInterrupt.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def install(fault: str) -> None:
    kind, _, arg = fault.partition(":")
    if kind in ("kill-step", "term-step", "int-step"):
        from unetpp.engine.module import SegmentationModule

        sig = {"kill-step": signal.SIGKILL, "term-step": signal.SIGTERM, "int-step": signal.SIGINT}[kind]
        original = SegmentationModule.on_train_batch_end

        def hook(self, *args, **kwargs):
            original(self, *args, **kwargs)
            if self.trainer.global_step == int(arg):
                os.kill(os.getpid(), sig)

        SegmentationModule.on_train_batch_end = hook
    elif kind == "kill-replace":
        name, _, nth = arg.partition(":")
        real, seen = os.replace, [0]

        def replace(src, dst, *args, **kwargs):
            if os.path.basename(os.fspath(dst)) == name:
                seen[0] += 1
                if seen[0] == int(nth):
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *args, **kwargs)

        os.replace = replace
    elif kind == "fsize":
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), resource.RLIM_INFINITY))
    elif kind == "memory":
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(arg), resource.RLIM_INFINITY))
    elif kind:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    as_from_a_terminal()
    install(os.environ.get("UNETPP_FAULT", ""))
    from unetpp.cli import main

    sys.exit(main(sys.argv[1:]))
