"""The ``edgeconv`` console script and ``python -m edgeconv``.

Signals are taken over before anything heavy is imported. SIGTERM (a service manager, ``kill``, a CI timeout) unwinds
like Ctrl-C, so that staging folders and temp files are removed by their ``finally`` blocks instead of being left by an
instant exit. The commands import torch, which takes seconds: an interrupt then, or one that lands inside a lazy import
and leaves a library half-imported (numpy then fails with an error of its own), ends the process with one line saying
it was interrupted, not with a traceback from deep inside torch. Once the command has returned, a signal just ends the
process.
"""

from __future__ import annotations

import signal
import sys

from edgeconv.errors import Interrupted, interruption, received_signals


def main() -> None:
    def interrupt(signum: int, frame: object) -> None:
        received_signals.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)

    signal.signal(signal.SIGTERM, interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the parent made us ignore it
        signal.signal(signal.SIGINT, interrupt)
    try:
        from edgeconv.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt as exc:  # before the commands could handle it: during the imports
        _exit_interrupted(getattr(exc, "signum", signal.SIGINT))
    except Exception:
        if not received_signals:
            raise  # a bug: its traceback is what to report
        _exit_interrupted(received_signals[0])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)


def _exit_interrupted(signum: int) -> None:
    line, status = interruption(signum)
    sys.stderr.write(line + "\n")
    raise SystemExit(status) from None


if __name__ == "__main__":
    main()
