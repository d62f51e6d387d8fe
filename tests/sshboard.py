"""A board for the ``--on`` tests: a real SSH server (asyncssh, in-process, on 127.0.0.1) that runs commands with
``/bin/sh -c`` as sshd does, serves SFTP, and can play a Jetson.

- :class:`SshBoard` runs the server in a thread with its own event loop; it stops when the test's fixture closes it
  and, failing that, by itself after ``lifetime`` seconds. Commands run in the board's home folder with a plain PATH
  (``extra_path`` first, then this venv's bin folder, then the system's), as a login would.
- Faults the tests ask for: ``drop_after_bytes`` aborts the connection once that many SFTP bytes were written (a
  dropped link mid-copy); ``full_after_bytes`` makes SFTP writes fail with ENOSPC (a full disk).
- :func:`make_jetson_root` lays out a fake system root (``/etc/nv_tegra_release``, the device tree, thermal zones)
  and installs STAND-IN programs for ``nvpmodel``, ``jetson_clocks``, ``tegrastats``, ``dpkg-query`` and ``trtexec``
  where JetPack puts them. They are not NVIDIA's tools: they print the real tools' output formats, from the samples
  in ``tests/data/jetson/`` (sources in its SOURCES.md), so that edgeconv's parsing and orchestration run for real.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import asyncssh

DATA = Path(__file__).parent / "data" / "jetson"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SshBoard:
    """An SSH + SFTP server on 127.0.0.1 playing a board whose home folder is ``home``."""

    def __init__(
        self,
        home: Path,
        client_public_key: str,
        *,
        extra_path: list[Path] | None = None,
        venv_on_path: bool = True,
        lifetime: float = 300.0,
    ) -> None:
        self.home = home
        self.client_public_key = client_public_key
        self.extra_path = [str(p) for p in extra_path or []]
        self.venv_on_path = venv_on_path  # False: a board without edgeconv
        self.lifetime = lifetime
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.port = 0
        self.commands: list[str] = []
        self.drop_after_bytes: int | None = None
        self.full_after_bytes: int | None = None
        self.written = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._children: set[_Forward] = set()
        self._thread = threading.Thread(target=self._run, name="ssh-board", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> SshBoard:
        if self._ready.is_set():
            return self
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the test SSH server did not start")
        return self

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def __enter__(self) -> SshBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        gc.collect()  # subprocess transports close while their loop still runs
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        board = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True  # offered, and never used by edgeconv: validate_password always refuses

            def validate_password(self, username: str, password: str) -> bool:
                return False

        class Sftp(asyncssh.SFTPServer):
            def map_path(self, path: bytes) -> bytes:
                if not path.startswith(b"/"):
                    path = os.fsencode(board.home) + b"/" + path
                return super().map_path(path)

            def write(self, file_obj: object, offset: int, data: bytes) -> Any:
                board.written += len(data)
                if board.drop_after_bytes is not None and board.written > board.drop_after_bytes:
                    self.connection.abort()
                    raise asyncssh.SFTPConnectionLost("dropped by the test")
                if board.full_after_bytes is not None and board.written > board.full_after_bytes:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return super().write(file_obj, offset, data)

        server = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(self.client_public_key),
            process_factory=self._process,
            sftp_factory=Sftp,
            encoding=None,
            allow_scp=False,
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), self.lifetime)
        except asyncio.TimeoutError:
            pass  # stops by itself
        server.close()
        for child in list(self._children):
            child.hang_up()
        await server.wait_closed()

    # -- exec ------------------------------------------------------------------------------------------------
    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if command is None:
            process.stderr.write(b"this board has no interactive shell\n")
            process.exit(1)
            return
        text = command.decode() if isinstance(command, bytes) else command
        self.commands.append(text)
        path = [*self.extra_path, *([str(Path(sys.executable).parent)] if self.venv_on_path else []), SYSTEM_PATH]
        env = {"HOME": str(self.home), "PATH": os.pathsep.join(path), "LANG": "C.UTF-8", "USER": "edge",
               "LOGNAME": "edge", "SHELL": "/bin/sh"}  # fmt: skip
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        transport, forward = await loop.subprocess_exec(
            lambda: _Forward(process, done), "/bin/sh", "-c", text, cwd=self.home, env=env,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._children.add(forward)
        try:
            status = await done
        finally:
            forward.hang_up()
            transport.close()
            self._children.discard(forward)
        try:
            process.exit(status if status >= 0 else 128 - status)
        except (BrokenPipeError, asyncssh.Error, OSError):
            pass


class _Forward(asyncio.SubprocessProtocol):
    """Copies a command's stdout and stderr to the SSH channel. When the client closes the channel, it does what
    sshd does: closes the pipes (the command gets SIGPIPE at its next write, as tegrastats does on a board) and ends
    the command's process group."""

    def __init__(self, process: asyncssh.SSHServerProcess, done: asyncio.Future[int]) -> None:
        self.process = process
        self.done = done
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        try:
            (self.process.stdout if fd == 1 else self.process.stderr).write(data)
        except (BrokenPipeError, asyncssh.Error, OSError):
            self.hang_up()

    def hang_up(self) -> None:
        if self.transport is None:
            return
        for fd in (1, 2):
            pipe = self.transport.get_pipe_transport(fd)
            if pipe is not None:
                pipe.close()
        pid = self.transport.get_pid()
        if pid is not None and self.transport.get_returncode() is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        # Called once the process has exited and both pipes are closed: all output has been forwarded.
        if not self.done.done() and self.transport is not None:
            self.done.set_result(self.transport.get_returncode() or 0)


# ---------------------------------------------------------------------------------------------------------------
# Client side: a HOME with a key, a known_hosts and (optionally) an ~/.ssh/config
# ---------------------------------------------------------------------------------------------------------------
def client_home(home: Path) -> str:
    """A user's home with ~/.ssh/id_ed25519; returns the public key line to authorize."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(ssh / "id_ed25519"))
    os.chmod(ssh / "id_ed25519", 0o600)
    public = key.export_public_key().decode()
    (ssh / "id_ed25519.pub").write_text(public)
    return public


def trust(home: Path, board: SshBoard) -> None:
    """Record the board's host key in ~/.ssh/known_hosts, as a first ssh to it would."""
    algorithm, blob = board.host_key.export_public_key().decode().split()[:2]
    with open(home / ".ssh" / "known_hosts", "a") as handle:
        handle.write(f"[127.0.0.1]:{board.port} {algorithm} {blob}\n")


# ---------------------------------------------------------------------------------------------------------------
# A fake Jetson system root with stand-in tools
# ---------------------------------------------------------------------------------------------------------------
_NVPMODEL = """
import sys
from pathlib import Path
# STAND-IN for NVIDIA's nvpmodel: prints the format of `nvpmodel -q` from {data}.
if sys.argv[1:] == ["-q"]:
    print(Path({data!r}, "nvpmodel_q.txt").read_text(), end="")
else:
    print("NVPM ERROR: this stand-in only answers -q", file=sys.stderr)
    sys.exit(1)
"""

_JETSON_CLOCKS = """
import sys
from pathlib import Path
# STAND-IN for NVIDIA's jetson_clocks: --show prints the sample of the current state; no argument locks the clocks;
# --store FILE / --restore FILE save and restore the state, as the real script does with its l4t_dfs.conf.
state = Path({state!r})
data = Path({data!r})
args = sys.argv[1:]
locked = state.exists() and state.read_text() == "locked"
if args == ["--show"]:
    print((data / ("jetson_clocks_show_locked.txt" if locked else "jetson_clocks_show.txt")).read_text(), end="")
elif not args:
    state.write_text("locked")
elif args[0] == "--store" and len(args) == 2:
    Path(args[1]).write_text("locked" if locked else "dynamic")
elif args[0] == "--restore" and len(args) == 2:
    state.write_text(Path(args[1]).read_text())
else:
    print("Error: unknown option", args, file=sys.stderr)
    sys.exit(1)
"""

_TEGRASTATS = """
import itertools
import sys
import time
from pathlib import Path
# STAND-IN for NVIDIA's tegrastats: prints the sample lines of {data} in a loop, one per --interval ms, until its
# output is closed (as the real tool, it dies of SIGPIPE then).
interval = 1000
args = sys.argv[1:]
if "--interval" in args:
    interval = int(args[args.index("--interval") + 1])
lines = Path({data!r}, "tegrastats.txt").read_text().splitlines()
for line in itertools.cycle(lines):
    print(line, flush=True)
    time.sleep(interval / 1000)
"""

_DPKG_QUERY = """
import fnmatch
import sys
from pathlib import Path
# STAND-IN for dpkg-query -W -f FORMAT PATTERN...: prints the installed JetPack packages of {data} that match.
args = sys.argv[1:]
patterns = [a for a in args[args.index("-f") + 2:]] if "-f" in args else args[1:]
found = False
for line in Path({data!r}, "dpkg.txt").read_text().splitlines():
    if any(fnmatch.fnmatchcase(line.split("\\t")[0], p) for p in patterns):
        print(line)
        found = True
sys.exit(0 if found else 1)
"""

_TRTEXEC = """
import json
import random
import sys
import time
from pathlib import Path
# STAND-IN for NVIDIA's trtexec (TensorRT {version}): prints trtexec's log format (banner, option and device blocks
# of {data}/trtexec_header.log, build and inference lines, the performance summary of sampleReporting.cpp) and
# writes --saveEngine (a placeholder file) and --exportTimes (sampleReporting.cpp's exportJSONTrace format). No
# network is built and nothing runs on a GPU: the timings are drawn from a fixed seed.
args = dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in sys.argv[1:] if a.startswith("--"))
code = "{code}"
banner = "TensorRT.trtexec [TensorRT v" + code + "] # " + " ".join(sys.argv)
stamp = lambda: time.strftime("[%m/%d/%Y-%H:%M:%S]")
def say(line):
    print(stamp(), line, flush=True)
print("&&&& RUNNING " + banner, flush=True)
for line in Path({data!r}, "trtexec_header.log").read_text().splitlines():
    say(line)
def fail(message):
    say("[E] " + message)
    print("&&&& FAILED " + banner, flush=True)
    sys.exit(1)
if "help" in args:
    print("&&&& PASSED " + banner, flush=True)
    sys.exit(0)
if "onnx" in args:
    onnx = Path(args["onnx"])
    if not onnx.is_file():
        fail("Failed to parse onnx file")
    say("[I] Start parsing network model.")
    say("[I] [TRT] Input filename:   " + str(onnx))
    say("[I] Finished parsing network model. Parse time: 0.0412")
    time.sleep(0.2)
    Path(args["saveEngine"]).write_bytes(("stand-in engine: " + " ".join(sorted(args))).encode())
    say("[I] Engine built in 12.3456 sec.")
    say("[I] Created engine with size: 4.1 MiB")
    if "skipInference" in args or "buildOnly" in args:
        say("[I] Skipped inference phase since --skipInference is added.")
        print("&&&& PASSED " + banner, flush=True)
        sys.exit(0)
if "loadEngine" in args and not Path(args["loadEngine"]).is_file():
    fail("Engine file " + args["loadEngine"] + " not found")
say("[I] Engine deserialized in 0.0394 sec.")
warmup = float(args.get("warmUp", 200))
iterations = int(args.get("iterations", 10))
transfers = "noDataTransfers" not in args
say("[I] Starting inference")
time.sleep(float(args.get("duration", 0) or 0) + 0.6)
rng = random.Random(0)
if float(args.get("duration", 0) or 0) > 0:
    iterations = max(iterations, int(float(args["duration"]) * 50))
def entry(t):
    h2d = 0.031 if transfers else 0.0
    compute = 1.9 + rng.random() * 0.2
    d2h = 0.006 if transfers else 0.0
    return {{"startEnqMs": t, "endEnqMs": t + 0.05, "startH2dMs": t, "endH2dMs": t + h2d,
            "startComputeMs": t + h2d, "endComputeMs": t + h2d + compute, "startD2hMs": t + h2d + compute,
            "endD2hMs": t + h2d + compute + d2h, "h2dMs": h2d, "computeMs": compute, "d2hMs": d2h,
            "latencyMs": h2d + compute + d2h}}
warmups = max(1, int(warmup / 2.1))
trace = [entry(i * (warmup - 2.5) / warmups) for i in range(warmups)]  # all start computing before warmUp ms
t = warmup
for i in range(iterations):
    trace.append(entry(t))
    t = trace[-1]["endD2hMs"]
exported = trace if {exports_warmup} else trace[warmups:]
if "exportTimes" in args:
    with open(args["exportTimes"], "w") as handle:
        handle.write("[\\n")
        sep = "  "
        for entry in exported:
            handle.write(sep + "{{ " + ", ".join(f'"{{k}}" : {{v:g}}' for k, v in entry.items()) + " }}\\n")
            sep = ", "
        handle.write("]\\n")
timed = trace[warmups:]
def perf(key):
    values = sorted(e[key] for e in timed)
    n = len(values)
    median = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
    pct = lambda p: values[max(n - 1 - int((1 - p / 100) * n), 0)]
    return (f"min = {{values[0]:g}} ms, max = {{values[-1]:g}} ms, mean = {{sum(values) / n:g}} ms, "
            f"median = {{median:g}} ms, percentile(90%) = {{pct(90):g}} ms, percentile(95%) = {{pct(95):g}} ms, "
            f"percentile(99%) = {{pct(99):g}} ms")
wall = (timed[-1]["endD2hMs"] - timed[0]["startH2dMs"]) / 1000
say(f"[I] Warmup completed {{warmups}} queries over {{warmup:g}} ms")
say(f"[I] Timing trace has {{len(timed)}} queries over {{wall:g}} s")
say("[I] ")
say("[I] === Trace details ===")
say("[I] Trace averages of 10 runs:")
say("[I] ")
say("[I] === Performance summary ===")
say(f"[I] Throughput: {{len(timed) / wall:g}} qps")
say("[I] Latency: " + perf("latencyMs"))
say("[I] Enqueue Time: min = 0.05 ms, max = 0.05 ms, mean = 0.05 ms, median = 0.05 ms, percentile(90%) = 0.05 ms, "
    "percentile(95%) = 0.05 ms, percentile(99%) = 0.05 ms")
say("[I] H2D Latency: " + perf("h2dMs"))
say("[I] GPU Compute Time: " + perf("computeMs"))
say("[I] D2H Latency: " + perf("d2hMs"))
say(f"[I] Total Host Walltime: {{wall:g}} s")
say(f"[I] Total GPU Compute Time: {{sum(e['computeMs'] for e in timed) / 1000:g}} s")
say("[I] Explanations of the performance metrics are printed in the verbose logs.")
say("[I] ")
print("&&&& PASSED " + banner, flush=True)
"""

GENERATIONS = {
    "jp5": {"version": "8.5.2", "code": "8502", "exports_warmup": True},  # TensorRT 8.5 exports warm-up iterations
    "jp6": {"version": "10.3.0", "code": "100300", "exports_warmup": False},
}


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


def make_jetson_root(root: Path, generation: str, *, trtexec: bool = True) -> Path:
    """A fake system root of a Jetson of ``generation`` (jp5: AGX Orin, JetPack 5.1.2; jp6: Orin Nano Super,
    JetPack 6.2) with stand-in tools; ``trtexec=False`` leaves TensorRT out."""
    data = DATA / generation
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text((data / "nv_tegra_release").read_text())
    (root / "etc" / "os-release").write_text(
        'PRETTY_NAME="Ubuntu 20.04.6 LTS"\n' if generation == "jp5" else 'PRETTY_NAME="Ubuntu 22.04.5 LTS"\n'
    )
    tree = root / "proc" / "device-tree"
    tree.mkdir(parents=True)
    (tree / "model").write_bytes((data / "device_tree_model").read_bytes() + b"\x00")
    entries = (data / "device_tree_compatible").read_text().split()
    (tree / "compatible").write_bytes(b"".join(entry.encode() + b"\x00" for entry in entries))
    (root / "proc" / "cpuinfo").write_text(
        "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n\n" for i in range(2))
    )
    zones = [("cpu-thermal", 47500, 99000), ("gpu-thermal", 46200, 99000), ("tj-thermal", 48100, 99000),
             ("soc0-thermal", 45300, None)]  # fmt: skip
    for index, (kind, temp, trip) in enumerate(zones):
        zone = root / "sys" / "class" / "thermal" / f"thermal_zone{index}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{temp}\n")
        if trip is not None:
            (zone / "trip_point_0_type").write_text("passive\n")
            (zone / "trip_point_0_temp").write_text(f"{trip}\n")
    state = root / "var" / "lib" / "standin-jetson-clocks"
    state.parent.mkdir(parents=True)
    generation_info = GENERATIONS[generation]
    _script(root / "usr" / "sbin" / "nvpmodel", _NVPMODEL.format(data=str(data)))
    _script(root / "usr" / "bin" / "jetson_clocks", _JETSON_CLOCKS.format(data=str(data), state=str(state)))
    _script(root / "usr" / "bin" / "tegrastats", _TEGRASTATS.format(data=str(data)))
    _script(root / "usr" / "bin" / "dpkg-query", _DPKG_QUERY.format(data=str(data)))
    if trtexec:
        _script(root / "usr" / "src" / "tensorrt" / "bin" / "trtexec",
                _TRTEXEC.format(data=str(data), **generation_info))  # fmt: skip
    return root


def clocks_locked(root: Path) -> bool:
    state = root / "var" / "lib" / "standin-jetson-clocks"
    return state.exists() and state.read_text() == "locked"
