"""A private slurmctld for faults the shared test cluster must not suffer.

Stopping (SIGSTOP) the shared controller to make it "busy" would break
every other test running against it, so `PrivateController` starts a
second, throw-away slurmctld on a free loopback port (its own cluster name,
state directory and config, no accounting, no compute node, short
MessageTimeout) that a test may freeze and thaw at will.  Tools reach it
through ``SLURM_CONF``.  It is stopped by PID.  Needs root and the test
cluster's munged (tools/slurm-cluster.sh up).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateController:
    def __init__(self, tmp: Path, message_timeout: int = 2):
        self.dir = tmp
        self.conf = tmp / "slurm.conf"
        self.port = free_port()
        host = socket.gethostname().split(".")[0]
        (tmp / "state").mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join([
            "ClusterName=hpcdpriv",
            "SlurmctldHost=%s(127.0.0.1)" % host,
            "SlurmctldPort=%d" % self.port,
            "SlurmdPort=%d" % free_port(),
            "SlurmUser=root",
            "AuthType=auth/munge",
            "CryptoType=crypto/munge",
            "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "AccountingStorageType=accounting_storage/none",
            "MessageTimeout=%d" % message_timeout,
            "MailProg=/bin/true",
            "StateSaveLocation=%s" % (tmp / "state"),
            "SlurmctldPidFile=%s" % (tmp / "slurmctld.pid"),
            "SlurmctldLogFile=%s" % (tmp / "slurmctld.log"),
            "NodeName=%s CPUs=1 NodeAddr=127.0.0.1 State=UNKNOWN" % host,
            "PartitionName=debug Nodes=ALL Default=YES State=UP", ""]))
        self.pid = None

    @property
    def env(self) -> dict:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, **self.env)
        subprocess.run(["slurmctld", "-c", "-f", str(self.conf)], env=env,
                       check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        pidfile = self.dir / "slurmctld.pid"
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip():
                self.pid = int(pidfile.read_text())
                ping = subprocess.run(["scontrol", "ping"], env=env,
                                      capture_output=True, text=True)
                if "UP" in ping.stdout:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("private slurmctld did not come up: %s"
                           % (self.dir / "slurmctld.log").read_text()[-2000:])

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                state = Path("/proc/%d/stat" % self.pid).read_text().split(
                    ")")[-1].split()[0]
            except OSError:
                break
            if state == "Z":
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None
