"""A real single-node Slurm cluster for the tests: Debian's ``slurm-wlm`` and ``munge``.

>>> with single_node() as slurm:         # skips, with the reason, where it cannot start
...     subprocess.run([slurm.bin("sbatch"), "job.sbatch"], env=slurm.env())

``munged``, ``slurmctld`` and ``slurmd`` run as children of the test process, in the foreground,
and everything they read or write — the munge key and socket, ``slurm.conf``, the controller's
state, the node's spool, the logs — is in one temporary directory: the daemons are pointed at it
by their options and the clients by ``SLURM_CONF``, so no Slurm or munge configuration of the
system is read, nothing in ``/etc``, ``/run`` or ``/var`` is written, and a system Slurm or munge
on the same machine is left alone. The daemons need root: ``slurmd`` starts every job step as the
user who submitted it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lmspec.train.world import free_port

START_TIMEOUT = 180  # seconds until the node is idle; a few on an idle machine, far more on a loaded CI one
STOP_TIMEOUT = 30
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
# Debian puts the daemons in /usr/sbin, which a non-login shell's PATH may lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
HARDWARE = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE"}
"""Job states after which a job never runs again (``scontrol show job``'s ``JobState``)."""


@dataclass
class Slurm:
    """A running cluster: its directory, its one node, and the clients that talk to it."""

    root: Path
    node: str
    binaries: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def bin(self, name: str) -> str:
        return self.binaries[name]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for the clients and the jobs (``sbatch`` exports it to the job): this
        process's, minus the variables of any Slurm job or launcher it runs inside, with
        ``SLURM_CONF`` naming this cluster and the Slurm binaries and this Python's scripts
        (``torchrun``, ``lmspec``) on the PATH."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "PET_", "TORCHELASTIC_"))
               and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
        dirs = [str(Path(sys.executable).parent), *sorted({str(Path(p).parent) for p in self.binaries.values()})]
        env["PATH"] = os.pathsep.join([*dirs, env.get("PATH", "")])
        return {**env, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *args: str, timeout: float = 60) -> str:
        """A client command's output; fails the test with the daemons' logs if it fails."""
        result = subprocess.run([self.bin(args[0]), *args[1:]], env=self.env(), capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}: {result.stderr}\n{self.logs()}")
        return result.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields of one job (kept by slurmctld for MinJobAge after it ends)."""
        text = self.run("scontrol", "show", "job", "--oneliner", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def logs(self) -> str:
        """The end of each daemon's output (in the foreground they log to it), for failure messages."""
        parts = []
        for name in DAEMONS:
            log = self.root / "log" / f"{name}.out"
            text = log.read_text(errors="replace") if log.is_file() else "(no log)"
            parts.append(f"--- {name} ---\n{text[-3000:]}")
        return "\n".join(parts)


def _binaries() -> dict[str, str]:
    """Every program the cluster needs, or skip saying what is missing and why it matters."""
    if sys.platform != "linux":
        pytest.skip("the Slurm tests need Linux (Debian's slurm-wlm and munge)")
    if os.geteuid() != 0:
        pytest.skip("the Slurm tests start munged, slurmctld and slurmd, which need root: the sbatch "
                    "script was checked against its golden file and on two local nodes, not under Slurm")
    found = {name: shutil.which(name, path=SEARCH_PATH) for name in (*DAEMONS, *CLIENTS)}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge, "
                    "which scripts/test.sh does as root): the sbatch script was not run under Slurm")
    return {name: path for name, path in found.items() if path is not None}


def _node_name() -> str:
    """The node's name: the short host name, as slurmd would pick it. The exported script's
    rendezvous address is the node name (``scontrol show hostnames``), so it must resolve; where
    the host name does not, the node is called localhost."""
    name = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(name)
    except OSError:
        return "localhost"
    return name


def _hardware(slurmd: str) -> str:
    """The node's CPUs and memory as slurmd detects them (``slurmd -C``): a node declared with
    more than it has is drained, so the declaration is taken from slurmd itself."""
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=60, check=True).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", out.splitlines()[0]))
    return " ".join(f"{k}={fields[k]}" for k in HARDWARE if k in fields)


def _write_config(root: Path, node: str, hardware: str) -> None:
    """The munge key and a minimal slurm.conf: one node, one default partition, no accounting and
    no cgroups (a container may not allow them), every path inside ``root``."""
    (root / "munge").mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(128))  # what `mungekey --create` writes: 1024 random bits
    key.chmod(0o600)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    (root / "plugstack.conf").write_text("")  # no SPANK plugins from /etc/slurm/plugstack.conf.d
    (root / "slurm.conf").write_text(f"""\
ClusterName=lmspec-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
PlugStackConfig={root}/plugstack.conf
# Processes tracked by their parent, tasks not bound: cgroups are not needed, nor always allowed.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
# The node is usable as soon as its slurmd registers, whatever state it was in before.
ReturnToService=2
# A loaded CI machine answers slowly; a busy node is not a dead one.
MessageTimeout=60
SlurmdTimeout=600
NodeName={node} NodeAddr=127.0.0.1 {hardware} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")


def _start(slurm: Slurm, name: str, *args: str) -> None:
    with (slurm.root / "log" / f"{name}.out").open("wb") as log:
        slurm.processes[name] = subprocess.Popen([slurm.bin(name), *args], env=slurm.env(), stdout=log,
                                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                 start_new_session=True)


def _wait_for(slurm: Slurm, pending: Callable[[], str | None]) -> None:
    """Wait until ``pending`` says nothing is left to wait for (it returns None), or fail with
    what it last said and the daemons' logs."""
    deadline = time.monotonic() + START_TIMEOUT
    while (waiting := pending()) is not None:
        dead = {n: p.returncode for n, p in slurm.processes.items() if p.poll() is not None}
        if dead or time.monotonic() > deadline:
            pytest.fail(f"Slurm did not start: {waiting} "
                        f"{f'(exited: {dead})' if dead else f'after {START_TIMEOUT}s'}\n{slurm.logs()}")
        time.sleep(0.5)


def _socket_pending(path: Path) -> str | None:
    return None if path.exists() else f"munged created no socket {path}"


def _node_pending(slurm: Slurm) -> str | None:
    result = subprocess.run([slurm.bin("sinfo"), "--noheader", "--Node", "--format=%T %E"], env=slurm.env(),
                            capture_output=True, text=True, timeout=60)
    state = result.stdout.strip() if result.returncode == 0 else result.stderr.strip()
    return None if state.split(" ")[0] == "idle" else f"node {slurm.node} not idle: {state}"


def _stop(slurm: Slurm) -> None:
    """Cancel what is left of the jobs, then stop the daemons, last started first."""
    if "slurmctld" in slurm.processes and slurm.processes["slurmctld"].poll() is None:
        jobs = subprocess.run([slurm.bin("squeue"), "--noheader", "--format=%i"], env=slurm.env(),
                              capture_output=True, text=True, timeout=60).stdout.split()
        if jobs:
            subprocess.run([slurm.bin("scancel"), *jobs], env=slurm.env(), capture_output=True, timeout=60)
    for name in reversed(list(slurm.processes)):
        process = slurm.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def single_node() -> Iterator[Slurm]:
    """A started cluster of one node, idle and ready for ``sbatch``; stopped and removed after."""
    binaries = _binaries()
    # munged refuses a socket in a directory that not everyone may traverse, and pytest's
    # temporary directories are private: this one is world-traversable, and only root writes it.
    root = Path(tempfile.mkdtemp(prefix="lmspec-slurm-"))
    root.chmod(0o755)
    slurm = Slurm(root, _node_name(), binaries)
    try:
        _write_config(root, slurm.node, _hardware(slurm.bin("slurmd")))
        munge = root / "munge"
        _start(slurm, "munged", "--foreground", f"--socket={munge}/munge.socket", f"--key-file={munge}/munge.key",
               f"--pid-file={munge}/munged.pid", f"--log-file={root}/log/munged.log",
               f"--seed-file={munge}/munged.seed")
        _wait_for(slurm, lambda: _socket_pending(munge / "munge.socket"))
        _start(slurm, "slurmctld", "-D", "-f", str(slurm.conf))
        _start(slurm, "slurmd", "-D", "-f", str(slurm.conf), "-N", slurm.node)
        _wait_for(slurm, lambda: _node_pending(slurm))
        yield slurm
    finally:
        _stop(slurm)
        shutil.rmtree(root, ignore_errors=True)
