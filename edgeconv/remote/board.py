"""The board record: what a board is and what state it was in, beside every row measured on it.

Parsers take the text the real tools print (``/etc/nv_tegra_release``, the device tree, ``nvpmodel -q``,
``jetson_clocks --show``, ``tegrastats``, ``dpkg-query``, ``nvidia-smi``) and return only what that text says: a
field the board did not report is absent from the record, never guessed. ``tests/data/jetson/`` holds real-format
samples of JetPack 5.x (L4T R35) and 6.x (L4T R36) with their sources.

:func:`collect_board` reads a board's identity once per connection; :class:`PowerSampler` follows ``tegrastats``
during a run; :func:`run_record` turns the samples of the run's window into clocks, temperatures, mean watts and the
warnings (throttling, jetson_clocks off).
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeconv.remote.commands import Program, remote_command, wrapped
from edgeconv.remote.ssh import BoardSession

log = logging.getLogger(__name__)

# L4T release -> JetPack release, from NVIDIA's JetPack archive (developer.nvidia.com/embedded/jetpack-archive). Used
# only when the board has no nvidia-jetpack package to ask; an L4T not listed here leaves "jetpack" absent.
L4T_JETPACK = {
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}
# Rails that carry the whole module's input power; other boards' figures are the sum of the rails tegrastats lists.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
THROTTLE_DROP = 0.10  # a clock more than 10% below its maximum of the run, at its end, counts as throttled
DPKG_PATTERNS = ("nvidia-jetpack", "nvidia-l4t-core", "cuda-cudart-[0-9]*", "libcudnn[0-9]*", "libnvinfer[0-9]*")
DPKG_FORMAT = "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"
NVIDIA_SMI_FIELDS = (
    "name",
    "driver_version",
    "memory.total",
    "clocks.sm",
    "clocks.mem",
    "clocks.max.sm",
    "temperature.gpu",
    "power.limit",
)
BOARD_FILES = (
    "/etc/nv_tegra_release",
    "/proc/device-tree/model",
    "/proc/device-tree/compatible",
    "/etc/os-release",
    "/proc/cpuinfo",
    "/proc/driver/nvidia/version",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
)


# ---------------------------------------------------------------------------------------------------------------
# Parsers (text in, dict out; nothing absent is invented)
# ---------------------------------------------------------------------------------------------------------------
def parse_nv_tegra_release(text: str) -> dict[str, Any]:
    """``# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, ...`` -> ``{"l4t": "36.4.3", "board": ...}``."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return {}
    revision = match.group(2).strip(".")
    parts = revision.split(".") + ["0"] * (2 - len(revision.split(".")))
    info: dict[str, Any] = {"l4t": ".".join([match.group(1), *parts[:2]])}
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    if board:
        info["l4t_board"] = board.group(1)
    variant = re.search(r"KERNEL_VARIANT:\s*(\S+)", text)
    if variant:
        info["kernel_variant"] = variant.group(1)
    return info


def parse_device_tree(model: str | None, compatible: str | None) -> dict[str, Any]:
    """Board name and module part number from ``/proc/device-tree/{model,compatible}`` (NUL-separated strings):
    ``nvidia,p3768-0000+p3767-0005`` is carrier p3768-0000 with module p3767-0005."""
    info: dict[str, Any] = {}
    if model and model.strip("\x00\n "):
        info["model"] = model.strip("\x00\n ")
    entries = [entry.strip() for entry in (compatible or "").split("\x00") if entry.strip()]
    if entries:
        info["compatible"] = entries
        first = entries[0].split(",", 1)[-1]
        if "+" in first:
            carrier, module = first.split("+", 1)
            info["carrier"], info["module"] = carrier, module
        soc = next((e.split(",", 1)[-1] for e in entries if re.fullmatch(r"nvidia,tegra\d+", e)), None)
        if soc:
            info["soc"] = soc
    return info


def parse_nvpmodel_query(text: str) -> dict[str, Any]:
    """``nvpmodel -q``: ``NV Power Mode: MAXN`` then the mode id on a line of its own."""
    name = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not name:
        return {}
    mode: dict[str, Any] = {"name": name.group(1)}
    after = text[name.end() :]
    number = re.search(r"^\s*(\d+)\s*$", after, re.MULTILINE)
    if number:
        mode["id"] = int(number.group(1))
    return mode


_CPU_LINE = re.compile(
    r"^cpu(\d+):\s+(?:Online=(\d)\s+)?Governor=(\S+)\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", re.MULTILINE
)
_GPU_LINE = re.compile(r"^GPU MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", re.MULTILINE)
_EMC_LINE = re.compile(r"^EMC MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)(?: FreqOverride=(\d+))?", re.MULTILINE)


def _mhz(value: str | int, per_mhz: int) -> float:
    return round(int(value) / per_mhz, 1)


def parse_jetson_clocks(text: str) -> dict[str, Any]:
    """``jetson_clocks --show`` -> whether clocks are locked, and the CPU / GPU / EMC ranges in MHz.

    jetson_clocks locks a clock by raising its minimum to its maximum (and, for EMC on L4T R35, by setting
    ``FreqOverride=1``), so "locked" means: the GPU's and every online CPU's MinFreq equal their MaxFreq, and the EMC
    is pinned (override on, or min = max). CPU frequencies are printed in kHz, GPU and EMC in Hz.
    """
    info: dict[str, Any] = {}
    family = re.search(r"SOC family:(\S+)\s+Machine:(.+)$", text, re.MULTILINE)
    if family:
        info["soc_family"], info["machine"] = family.group(1), family.group(2).strip()
    cpus = [m for m in _CPU_LINE.finditer(text) if m.group(2) != "0"]
    pinned: list[bool] = []
    if cpus:
        info["cpu_mhz"] = {
            "min": min(_mhz(m.group(4), 1000) for m in cpus),
            "max": max(_mhz(m.group(5), 1000) for m in cpus),
            "current": [_mhz(m.group(6), 1000) for m in cpus],
        }
        info["cpu_governor"] = cpus[0].group(3)
        pinned.append(all(m.group(4) == m.group(5) for m in cpus))
    gpu = _GPU_LINE.search(text)
    if gpu:
        info["gpu_mhz"] = {
            "min": _mhz(gpu.group(1), 10**6),
            "max": _mhz(gpu.group(2), 10**6),
            "current": _mhz(gpu.group(3), 10**6),
        }
        pinned.append(gpu.group(1) == gpu.group(2))
    tpcs = re.search(r"^Active GPU TPCs:\s*(\d+)", text, re.MULTILINE)
    if tpcs:
        info["active_gpu_tpcs"] = int(tpcs.group(1))
    emc = _EMC_LINE.search(text)
    if emc:
        info["emc_mhz"] = {
            "min": _mhz(emc.group(1), 10**6),
            "max": _mhz(emc.group(2), 10**6),
            "current": _mhz(emc.group(3), 10**6),
        }
        override = emc.group(4)
        if override is not None:
            info["emc_freq_override"] = int(override)
        pinned.append(override == "1" or emc.group(1) == emc.group(2))
    fans = re.findall(r"^(?:FAN|Fan)\b[: ](.+)$", text, re.MULTILINE)
    if fans:
        info["fan"] = "; ".join(fan.strip() for fan in fans)
    mode = re.search(r"NV Power Mode:\s*(\S+)", text)
    if mode:
        info["power_mode"] = mode.group(1)
    if pinned:
        info["locked"] = all(pinned)
    return info


_TIMESTAMP = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s+")
_TEMPERATURE = re.compile(r"(?<![%\w])([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"(?<![\w/])([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?![\w/])")


def parse_tegrastats(line: str) -> dict[str, Any]:
    """One ``tegrastats`` line -> RAM, CPU load and MHz, GPU (GR3D) load and MHz, EMC, temperatures (degC) and power
    rails (W, the instantaneous reading). Covers the L4T R32-R36 forms: ``GR3D_FREQ 0%@1300``, ``GR3D_FREQ
    99%@[1020,0]`` (one MHz per GPC), ``GR3D_FREQ 37%`` (no MHz without root), ``VDD_IN 4542mW/4000mW`` and the R32
    ``POM_5V_IN 4859/4899``."""
    sample: dict[str, Any] = {}
    stamp = _TIMESTAMP.match(line)
    if stamp:
        sample["time"] = stamp.group(1)
    ram = re.search(r"\bRAM (\d+)/(\d+)MB", line)
    if ram:
        sample["ram_mb"] = [int(ram.group(1)), int(ram.group(2))]
    cpu = re.search(r"\bCPU \[([^\]]*)\]", line)
    if cpu:
        loads, freqs = [], []
        for entry in cpu.group(1).split(","):
            found = re.match(r"\s*(\d+)%(?:@(\d+))?", entry)
            if found:
                loads.append(int(found.group(1)))
                if found.group(2):
                    freqs.append(int(found.group(2)))
        if loads:
            sample["cpu_load_pct"] = loads
        if freqs:
            sample["cpu_mhz"] = max(freqs)
    gr3d = re.search(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?", line)
    if gr3d:
        sample["gpu_load_pct"] = int(gr3d.group(1))
        mhz = [int(v) for v in (gr3d.group(2) or "").split(",") if v]
        if mhz and max(mhz) > 0:
            sample["gpu_mhz"] = max(mhz)
    emc = re.search(r"\bEMC_FREQ (\d+)%(?:@(\d+))?", line)
    if emc:
        sample["emc_load_pct"] = int(emc.group(1))
        if emc.group(2):
            sample["emc_mhz"] = int(emc.group(2))
    # Orin's switched-off CV sensors read -256C: not a temperature.
    temperatures = {name.lower(): float(v) for name, v in _TEMPERATURE.findall(line) if float(v) > -40}
    if temperatures:
        sample["temperatures_c"] = temperatures
    rails = {
        name: int(current) / 1000.0
        for name, current, _average, _peak in _RAIL.findall(line)
        if name not in ("RAM", "SWAP", "CPU", "IRAM")
    }
    if rails:
        sample["rails_w"] = rails
    return sample


def parse_dpkg(text: str) -> dict[str, Any]:
    """``dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}'`` lines (installed packages only) ->
    JetPack, L4T, CUDA runtime, cuDNN and TensorRT versions, without Debian revisions (``8.5.2-1+cuda11.4`` ->
    ``8.5.2``)."""
    versions: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or not parts[2].startswith("ii"):
            continue
        package, version = parts[0], parts[1]
        upstream = version.split(":", 1)[-1]
        if package == "nvidia-jetpack":
            versions["jetpack"] = re.split(r"[+-]b\d+", upstream)[0]
        elif package == "nvidia-l4t-core":
            versions["l4t_package"] = upstream.split("-")[0]
        elif package.startswith("cuda-cudart-") and "dev" not in package:
            versions.setdefault("cuda", upstream.split("-")[0])
        elif re.fullmatch(r"libcudnn\d+(-cuda-\d+)?", package):
            versions.setdefault("cudnn", upstream.split("-")[0])
        elif re.fullmatch(r"libnvinfer\d+", package):
            versions.setdefault("tensorrt", upstream.split("-")[0])
    return versions


def parse_nvidia_smi(text: str) -> dict[str, Any]:
    """``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` (first GPU) -> the GPU part of the record."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    values = [value.strip() for value in line.split(",")]
    if len(values) != len(NVIDIA_SMI_FIELDS):
        return {}
    raw = dict(zip(NVIDIA_SMI_FIELDS, values, strict=True))

    def number(key: str) -> float | None:
        try:
            return float(raw[key])
        except ValueError:  # "[N/A]", "[Not Supported]"
            return None

    gpu: dict[str, Any] = {"name": raw["name"], "driver": raw["driver_version"]}
    for key, out in (
        ("memory.total", "memory_mib"),
        ("clocks.sm", "sm_clock_mhz"),
        ("clocks.mem", "mem_clock_mhz"),
        ("clocks.max.sm", "max_sm_clock_mhz"),
        ("temperature.gpu", "temperature_c"),
        ("power.limit", "power_limit_w"),
    ):
        value = number(key)
        if value is not None:
            gpu[out] = value
    return gpu


def parse_grep_files(text: str, paths: Sequence[str]) -> dict[str, str]:
    """``grep -a -s -H -e '' -- PATH...`` output -> {path: content}. Each output line is ``PATH:line``; the paths
    are ours, so each line is matched by its known prefix (a colon inside a path cannot confuse it)."""
    contents: dict[str, list[str]] = {}
    by_length = sorted(paths, key=len, reverse=True)
    for line in text.split("\n"):
        for path in by_length:
            if line.startswith(path + ":"):
                contents.setdefault(path, []).append(line[len(path) + 1 :])
                break
    return {path: "\n".join(lines) for path, lines in contents.items()}


def parse_os_release(text: str) -> str | None:
    match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', text, re.MULTILINE)
    return match.group(1) if match else None


def parse_cpuinfo(text: str) -> str | None:
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    parts = re.search(r"^CPU part\s*:\s*(0x[0-9a-f]+)", text, re.MULTILINE)
    arm_parts = {"0xd42": "Cortex-A78AE", "0x004": "NVIDIA Carmel", "0xd07": "Cortex-A57"}  # Orin, Xavier, Nano/TX
    return arm_parts.get(parts.group(1)) if parts else None


# ---------------------------------------------------------------------------------------------------------------
# Reading a board
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Board:
    """What :func:`collect_board` found: the record (JSON) and the programs the run needs."""

    record: dict[str, Any]
    nvpmodel: Program | None = None
    jetson_clocks: Program | None = None
    tegrastats: Program | None = None
    thermal_zones: list[str] = field(default_factory=list)  # /sys/class/thermal/thermal_zoneN folders
    trips_c: dict[str, float] = field(default_factory=dict)  # zone type -> lowest passive trip point

    @property
    def is_jetson(self) -> bool:
        return bool(self.record.get("jetson"))


async def _read_files(session: BoardSession, paths: Sequence[str], stage: str) -> dict[str, str]:
    """Small text files of the board in one command (missing files are simply absent from the answer)."""
    if not paths:
        return {}
    command = remote_command(Program("grep", "grep"), "-a", "-s", "-H", "-e", "", "--", *paths)
    result = await session.run(command, timeout=60, stage=stage)
    return parse_grep_files(result.stdout, paths)


async def _run_tool(session: BoardSession, program: Program, *args: str, stage: str) -> str | None:
    """A Jetson tool's output: run as the login user, then through ``sudo -n`` (never prompts) if that failed."""
    result = await session.run(remote_command(program, *args), timeout=60, stage=stage)
    if result.exit_status == 0 and result.stdout.strip():
        return result.stdout
    retry = await session.run(wrapped(["sudo", "-n"], program, *args), timeout=60, stage=stage)
    if retry.exit_status == 0 and retry.stdout.strip():
        return retry.stdout
    session.notes.append(
        f"{program.name} {' '.join(args)} failed ({result.last_error_line() or 'no output'}); give the login user "
        f"passwordless sudo for {program.path} to record it"
    )
    return None


async def read_temperatures(session: BoardSession, board: Board) -> dict[str, float]:
    """Thermal zones now, degC by zone type (``tj-thermal``: 48.2)."""
    paths = [f"{zone}/{leaf}" for zone in board.thermal_zones for leaf in ("type", "temp")]
    files = await _read_files(session, paths, "reading temperatures")
    temperatures: dict[str, float] = {}
    for zone in board.thermal_zones:
        kind, value = files.get(f"{zone}/type", "").strip(), files.get(f"{zone}/temp", "").strip()
        if kind and re.fullmatch(r"-?\d+", value) and int(value) > -40000:  # disabled zones read -40 C or fail
            temperatures[kind] = int(value) / 1000.0
    return temperatures


async def collect_board(session: BoardSession) -> Board:
    """Identity and state of a board: device tree, L4T / JetPack, CUDA / cuDNN / TensorRT, power mode, jetson_clocks,
    CPU, GPU (nvidia-smi), temperatures. Fields the board does not report are absent."""
    sftp = await session.sftp()
    paths = [session.system_path(path) for path in BOARD_FILES]
    files, uname, cores = await asyncio.gather(
        _read_files(session, paths, "reading the board's system files"),
        session.run(remote_command(Program("uname", "uname"), "-n", "-r", "-m"), timeout=60, stage="running uname"),
        session.run(remote_command(Program("nproc", "nproc")), timeout=60, stage="running nproc"),
    )
    tools = ("nvpmodel", "jetson_clocks", "tegrastats", "dpkg-query", "nvidia-smi")
    nvpmodel, clocks, tegrastats, dpkg, smi = await asyncio.gather(*(session.find(name) for name in tools))
    text = {path: files.get(session.system_path(path)) for path in BOARD_FILES}
    record: dict[str, Any] = {"name": session.label}
    words = uname.stdout.split()
    if uname.exit_status == 0 and len(words) == 3:
        record["hostname"], record["kernel"], record["arch"] = words
    pretty = parse_os_release(text["/etc/os-release"] or "")
    if pretty:
        record["os"] = pretty
    cpu: dict[str, Any] = {}
    model = parse_cpuinfo(text["/proc/cpuinfo"] or "")
    if model:
        cpu["model"] = model
    if cores.exit_status == 0 and cores.stdout.strip().isdigit():
        cpu["cores"] = int(cores.stdout.strip())
    governor = (text["/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"] or "").strip()
    if governor:
        cpu["governor"] = governor
    if cpu:
        record["cpu"] = cpu
    tree = parse_device_tree(text["/proc/device-tree/model"], text["/proc/device-tree/compatible"])
    release = parse_nv_tegra_release(text["/etc/nv_tegra_release"] or "")
    jetson = bool(release) or "tegra" in str(tree.get("soc", "")) or "jetson" in str(tree.get("model", "")).lower()
    record["jetson"] = jetson
    if jetson:
        record.update(tree)
    record.update(release)
    if dpkg is not None:
        query = remote_command(dpkg, "-W", "-f", DPKG_FORMAT, *DPKG_PATTERNS)
        versions = parse_dpkg((await session.run(query, timeout=60, stage="asking dpkg for versions")).stdout)
        versions.pop("l4t_package", None)
        record.update(versions)
    if "jetpack" in record:
        record["jetpack_source"] = "nvidia-jetpack package"
    elif record.get("l4t") in L4T_JETPACK:
        record["jetpack"], record["jetpack_source"] = L4T_JETPACK[record["l4t"]], "L4T release table"
    board = Board(record=record, nvpmodel=nvpmodel, jetson_clocks=clocks, tegrastats=tegrastats)
    if nvpmodel is not None:
        output = await _run_tool(session, nvpmodel, "-q", stage="running nvpmodel -q")
        mode = parse_nvpmodel_query(output or "")
        if mode:
            record["power_mode"] = mode
    if clocks is not None:
        output = await _run_tool(session, clocks, "--show", stage="running jetson_clocks --show")
        state = parse_jetson_clocks(output or "")
        if state:
            state.pop("power_mode", None)
            record["jetson_clocks"] = state
    driver = text["/proc/driver/nvidia/version"]
    if smi is not None and not jetson:
        query = remote_command(smi, f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits")
        result = await session.run(query, timeout=60, stage="running nvidia-smi")
        gpu = parse_nvidia_smi(result.stdout) if result.exit_status == 0 else {}
        if gpu:
            record["gpu"] = gpu
    elif driver and not jetson:
        found = re.search(r"Kernel Module(?: for \S+)?\s+([\d.]+)", driver)
        if found:
            record["gpu"] = {"driver": found.group(1)}
    try:
        zones = await sftp.glob(session.system_path("/sys/class/thermal/thermal_zone*"))
    except Exception:  # noqa: BLE001  no thermal class (containers, some VMs): no temperatures
        zones = []
    board.thermal_zones = sorted(str(zone) for zone in zones)
    board.trips_c = await _passive_trips(session, board.thermal_zones)
    if session.notes:
        record["notes"] = list(session.notes)
    return board


async def _passive_trips(session: BoardSession, zones: Sequence[str]) -> dict[str, float]:
    """The lowest ``passive`` trip point of each zone: where the kernel starts to throttle for it."""
    paths = [
        f"{zone}/{leaf}"
        for zone in zones
        for leaf in ["type"] + [f"trip_point_{i}_{k}" for i in range(6) for k in ("type", "temp")]
    ]
    files = await _read_files(session, paths, "reading thermal trip points")
    trips: dict[str, float] = {}
    for zone in zones:
        kind = files.get(f"{zone}/type", "").strip()
        for i in range(6):
            temp = files.get(f"{zone}/trip_point_{i}_temp", "").strip()
            if files.get(f"{zone}/trip_point_{i}_type", "").strip() == "passive" and re.fullmatch(r"\d+", temp):
                trips[kind] = min(trips.get(kind, float("inf")), int(temp) / 1000.0)
    return trips


# ---------------------------------------------------------------------------------------------------------------
# During a run: tegrastats
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class PowerSampler:
    """``tegrastats --interval N`` streamed for the length of a run, each line stamped with the client's clock."""

    session: BoardSession
    program: Program
    interval_ms: int = 100
    lifetime_s: float = 3600.0
    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    as_root: bool = False
    _process: Any = None
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Start sampling (through ``sudo -n`` first: tegrastats shows GPU and EMC clocks only to root). False when
        tegrastats cannot run at all."""
        lifetime = str(int(self.lifetime_s))
        plain = wrapped(["timeout", lifetime], self.program, "--interval", str(self.interval_ms))
        elevated = remote_command(
            Program("timeout", "timeout"),
            lifetime,
            "sudo",
            "-n",
            self.program.path,
            "--interval",
            str(self.interval_ms),
        )
        for command, as_root in ((elevated, True), (plain, False)):
            process = await self.session.connection.create_process(command)
            first = asyncio.ensure_future(process.stdout.readline())
            exited = asyncio.ensure_future(process.wait())
            done, _ = await asyncio.wait({first, exited}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            if first in done and first.result():
                exited.cancel()
                self._process, self.as_root = process, as_root
                self._add(first.result())
                self._reader = asyncio.ensure_future(self._read())
                return True
            first.cancel()
            exited.cancel()
            process.close()
        return False

    def _add(self, line: str) -> None:
        parsed = parse_tegrastats(line)
        if parsed:
            self.samples.append((time.monotonic(), parsed))

    async def _read(self) -> None:
        async for line in self._process.stdout:
            self._add(line)

    async def stop(self) -> None:
        if self._process is not None:
            self._process.close()  # the board's tegrastats gets SIGPIPE at its next line; `timeout` bounds it anyway
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001  the channel is gone: nothing left to read
                pass

    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        return [sample for stamp, sample in self.samples if start <= stamp <= end]


def _range(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "max": max(values), "mean": round(statistics.fmean(values), 1), "last": values[-1]}


def power_summary(samples: Sequence[dict[str, Any]], interval_ms: int) -> dict[str, Any]:
    """Mean watts per rail over the samples, and the module total: ``VDD_IN`` (or ``POM_5V_IN``) when the board has
    a module-input rail, else the sum of its rails (named so in ``total_rail``)."""
    with_rails = [sample["rails_w"] for sample in samples if sample.get("rails_w")]
    if not with_rails:
        return {}
    names = list(dict.fromkeys(name for rails in with_rails for name in rails))
    rails = {name: round(statistics.fmean(r[name] for r in with_rails if name in r), 3) for name in names}
    total = next((name for name in TOTAL_RAILS if name in rails), None)
    return {
        "source": "tegrastats",
        "interval_ms": interval_ms,
        "samples": len(with_rails),
        "rails_w": rails,
        "total_rail": total or "sum of rails",
        "mean_w": rails[total] if total else round(sum(rails.values()), 3),
    }


def run_record(
    board: Board,
    samples: Sequence[dict[str, Any]],
    *,
    before_c: dict[str, float],
    after_c: dict[str, float],
    interval_ms: int,
    window: str,
    locked_by_edgeconv: bool,
    clocks_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Clocks, temperatures and power of one run, with the warnings a reader of its figures needs."""
    run: dict[str, Any] = {"lock_clocks": locked_by_edgeconv}
    warnings: list[str] = []
    state = clocks_state if clocks_state is not None else board.record.get("jetson_clocks", {})
    pinned = bool(state.get("locked")) or locked_by_edgeconv  # a pinned clock that falls was throttled
    if before_c or after_c:
        run["temperatures_c"] = {"before": before_c, "after": after_c}
    clocks: dict[str, Any] = {}
    for key, name in (("gpu_mhz", "gpu"), ("emc_mhz", "emc"), ("cpu_mhz", "cpu")):
        values = [float(sample[key]) for sample in samples if key in sample]
        if values:
            clocks[name] = _range(values)
            tail = values[len(values) // 2 :]
            if len(values) >= 4 and min(tail) < (1 - THROTTLE_DROP) * max(values) and pinned:
                warnings.append(
                    f"throttled: {name.upper()} clock fell from {max(values):.0f} to {min(tail):.0f} MHz during the run"
                )
    if clocks:
        run["clocks_mhz"] = clocks
    seen = [sample.get("temperatures_c", {}) for sample in samples]
    peaks = {name: max(s[name] for s in seen if name in s) for name in {n for s in seen for n in s}}
    for zone, trip in sorted(board.trips_c.items()):
        hottest = max([after_c.get(zone, float("-inf")), peaks.get(zone.removesuffix("-thermal"), float("-inf"))])
        if hottest >= trip:
            warnings.append(
                f"throttled: {zone} reached {hottest:.1f} C, at or above its passive trip point {trip:.1f} C"
            )
    if peaks:
        run["peak_temperatures_c"] = peaks
    power = power_summary(samples, interval_ms)
    if power:
        power["window"] = window
        run["power"] = power
        if power["samples"] < 5:
            warnings.append(
                f"only {power['samples']} power sample(s) in the timed window: run longer (--seconds 10) for energy"
            )
    if board.is_jetson and state.get("locked") is False and not locked_by_edgeconv:
        warnings.append("jetson_clocks off: clocks scale with load during the run; --lock-clocks pins them")
    if warnings:
        run["warnings"] = warnings
    return run


def with_energy(
    board_record: dict[str, Any], run: dict[str, Any], row: dict[str, Any], *, shared_by: int = 1
) -> dict[str, Any]:
    """The board record of one row: the board, its run, and the row's energy per inference (mean W x mean ms per
    image = mJ) when the run's power was sampled for this row alone. A power window ``shared_by`` several
    configurations (interleaved in one remote command) gives no row its own watts: no energy then, and a warning."""
    run = dict(run)
    mean_w = run.get("power", {}).get("mean_w")
    if mean_w is not None and shared_by > 1:
        warning = f"power sampled over {shared_by} interleaved configurations: no per-row energy (name one --backend)"
        run["warnings"] = [*run.get("warnings", []), warning]
    elif mean_w is not None and row.get("mean_ms") and row.get("batch"):
        run["energy_mj_per_inference"] = round(mean_w * float(row["mean_ms"]) / int(row["batch"]), 3)
    return {**board_record, "run": run}
