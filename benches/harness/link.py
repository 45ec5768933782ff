"""The network between rcache and the remote server (`e2e.py --link NAME`), set up and measured.

`loopback` (the default) is the setup remote.py always had: the server on 127.0.0.1, nothing
shaped. Every other link puts the server in a network namespace made for the run,
`rcache-bench-<harness pid>`, joined to the root namespace by a veth pair on a free private /30
(10.213.a.b+1 on our side, b+2 in the namespace; nothing else is routed there), and shapes it:

- rate: a TBF qdisc on both ends of the pair, so each direction gets the link's rate, with a
  queue of one bandwidth-delay product (at least 256 KiB) and a burst of 1 ms of the rate (at
  least 16 KiB);
- round trip: an iptables rule in the namespace (mangle PREROUTING, `-j NFQUEUE`) hands every
  packet that comes in on its veth end to a process of ours, `link.py delay`, which gives the
  kernel its verdict one round trip later; the packet waits in the kernel meanwhile.

Two choices differ from `tc netem delay <rtt/2>` on both ends, and are the reasons for them:
- this machine's kernel is built without sch_netem (CONFIG_NET_SCH_NETEM unset, no modules), so
  the delay is done with NFQUEUE, which it has;
- the whole round trip is added on the way in: a packet held on its way out (the OUTPUT hook)
  still belongs to its socket, and TCP small queues then throttles the sender (measured: 168
  Mbit/s from the server on `1gbit-5ms`, against 913 with this layout). For rcache, whose every
  exchange starts on our side, a request that arrives one round trip later and a reply that
  comes back at once end exactly when half each way would.

This module owns the namespace, the veth pair, the qdiscs, the rule and the delay process. It also
measures the link before the run (`measure`: TCP connect and 1-byte echo round trips, and 100 MB
pushed each way to a sink process in the namespace), and reads its counters at the end (packets
the qdiscs dropped, packets delayed and any the queue lost). `close` deletes the namespace and
the veth pair (the qdiscs and the rule go with them); it runs at the end of the run, also on
Ctrl-C, SIGTERM or a failure, and the helper processes die with the harness (PR_SET_PDEATHSIG).
A namespace left behind by a harness that was killed outright is deleted by the next run.

Needs iproute2 (`ip`, `tc`) and iptables (`apt-get install iproute2 iptables`), and root.

    python3 benches/harness/link.py probe 1gbit-5ms     # set a link up, measure it, tear it down
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import measure
import remote


@dataclass(frozen=True)
class Spec:
    """A named link: its rate (Mbit/s) and round trip (ms); None for loopback's."""

    name: str
    rate_mbit: int | None
    rtt_ms: float | None
    what: str


LINKS = {spec.name: spec for spec in (
    Spec("loopback", None, None, "the server on 127.0.0.1"),
    Spec("1gbit-5ms", 1000, 5.0, "a CI runner and its region's S3"),
    Spec("100mbit-30ms", 100, 30.0, "a laptop pulling what CI built"),
)}
NS_PREFIX = "rcache-bench-"
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
BURST_S, MIN_BURST = 1e-3, 16 * 1024  # TBF burst: 1 ms of the rate (at least 16 KiB)
MIN_QUEUE = 256 * 1024
PROBE_BYTES = 100 * 10**6
CONNECTS, ECHOES = 10, 50
QUEUE_MAXLEN = 100_000  # packets the kernel holds for the delay process (1 s at 1 Gbit/s)


class LinkError(Exception):
    """A link that cannot be set up or measured."""


def _run(cmd: list[str]) -> str:
    """Run a setup command; its stdout, or LinkError with its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LinkError(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _helper(cmd: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start one of this file's helper roles, and its first stdout line (it says it is ready)."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=remote.die_with_parent)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if not line:
        _stop(proc)
        raise LinkError(f"`{' '.join(cmd)}` did not start; see {log}")
    return proc, line


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop a helper (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _host_dev(pid: int) -> str:
    """Our end of the veth pair of the harness run with this pid (the other: -n for -h)."""
    return f"rcb-{pid}-h"


def sweep_stale() -> list[str]:
    """Delete the namespaces of harness runs whose process is gone; their names."""
    if shutil.which("ip") is None:
        return []
    gone = []
    for line in _run(["ip", "netns", "list"]).splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)", name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            if Path(f"/sys/class/net/{_host_dev(int(match.group(1)))}").exists():
                subprocess.run(["ip", "link", "del", _host_dev(int(match.group(1)))],
                               capture_output=True)
            gone.append(name)
        except PermissionError:
            pass
    return gone


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of 10.213.0.0/16 that no address or route of the root namespace overlaps."""
    used = []
    for cmd in (["ip", "-4", "-o", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        for word in _run(cmd).split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    subnets = list(SUBNETS.subnets(new_prefix=30))
    start = os.getpid() % len(subnets)
    for net in subnets[start:] + subnets[:start]:
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise LinkError(f"no free /30 left in {SUBNETS}")


class Link:
    """The run's link: loopback, or a shaped veth pair into a namespace of our own."""

    def __init__(self, name: str, log_dir: Path):
        """Nothing is set up yet (`open` does it); `close` is safe from here on."""
        self.spec = LINKS[name]
        self.log_dir = log_dir
        self.shaped = self.spec.rate_mbit is not None
        pid = os.getpid()
        self.namespace = f"{NS_PREFIX}{pid}" if self.shaped else None
        self.host_dev = _host_dev(pid)
        self.ns_dev = self.host_dev[:-1] + "n"
        self.client = self.host = "127.0.0.1"
        self.delay_proc: subprocess.Popen | None = None
        self.measured: dict | None = None
        self.counters: dict | None = None
        self.created = False

    def wrap(self, cmd: list[str]) -> list[str]:
        """A command run on the server's side of the link (in the namespace)."""
        return ["ip", "netns", "exec", self.namespace, *cmd] if self.shaped else cmd

    def queue_bytes(self) -> int:
        """Each qdisc's queue: one bandwidth-delay product, at least MIN_QUEUE."""
        return max(MIN_QUEUE, int(self.spec.rate_mbit * 1e6 / 8 * self.spec.rtt_ms / 1e3))

    def burst_bytes(self) -> int:
        """Each qdisc's burst: what may leave at once, 1 ms of the rate, at least MIN_BURST (at 1
        Gbit/s it takes a whole 64 KiB GSO packet, which is then not cut up for the delay)."""
        return max(MIN_BURST, int(self.spec.rate_mbit * 1e6 / 8 * BURST_S))

    def open(self) -> None:
        """Set the link up: namespace, veth pair, addresses, qdiscs, delay process and rule."""
        if not self.shaped:
            return
        missing = [tool for tool in ("ip", "tc", "iptables") if shutil.which(tool) is None]
        if missing:
            raise LinkError(f"{', '.join(missing)} not found: install them with "
                            f"`apt-get install iproute2 iptables`")
        if os.geteuid() != 0:
            raise LinkError("a shaped link needs root (a network namespace, qdiscs, iptables)")
        for name in sweep_stale():
            print(f"link: deleted {name}, left by a harness that is gone", flush=True)
        net = _free_subnet()
        self.client, self.host = (str(a) for a in list(net.hosts())[:2])
        ns, host_dev, ns_dev = self.namespace, self.host_dev, self.ns_dev
        _run(["ip", "netns", "add", ns])
        self.created = True
        _run(["ip", "link", "add", host_dev, "type", "veth", "peer", "name", ns_dev, "netns", ns])
        for prefix, dev, addr in (([], host_dev, self.client), (["-n", ns], ns_dev, self.host)):
            _run(["ip", *prefix, "link", "set", dev, "addrgenmode", "none"])  # no IPv6 link-local
            _run(["ip", *prefix, "addr", "add", f"{addr}/{net.prefixlen}", "dev", dev])
            _run(["tc", *prefix, "qdisc", "add", "dev", dev, "root", "tbf",
                  "rate", f"{self.spec.rate_mbit}mbit", "burst", str(self.burst_bytes()),
                  "limit", str(self.queue_bytes())])
            _run(["ip", *prefix, "link", "set", dev, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.delay_proc, _ = _helper(self.wrap([sys.executable, "-B", __file__, "delay",
                                                str(self.spec.rtt_ms)]),
                                     self.log_dir / "link-delay.log")
        _run(self.wrap(["iptables", "-w", "-t", "mangle", "-A", "PREROUTING", "-i", ns_dev,
                        "-j", "NFQUEUE", "--queue-num", "0"]))

    def measure(self) -> dict:
        """Round trips and throughput each way, against a sink on the server's side."""
        sink, port = _helper(self.wrap([sys.executable, "-B", __file__, "sink", self.host]),
                             self.log_dir / "link-sink.log")
        try:
            self.measured = probe(self.host, int(port))
        finally:
            _stop(sink)
        return self.measured

    def cpu(self) -> float:
        """CPU seconds the delay process has used so far (0 without one)."""
        if self.delay_proc is None:
            return 0.0
        return sum(measure._proc_cpu(self.delay_proc.pid) or (0.0, 0.0))

    def _read_counters(self) -> dict:
        """What the qdiscs sent and dropped, and what the delay queue held and lost."""
        counters: dict = {"delay_cpu_s": round(self.cpu(), 2)}
        for side, prefix, dev in (("to_server", [], self.host_dev),
                                  ("to_client", ["-n", self.namespace], self.ns_dev)):
            try:
                stats = _run(["tc", *prefix, "-s", "-j", "qdisc", "show", "dev", dev])
                qdisc = json.loads(stats)[0]
                counters[side] = {key: qdisc.get(key) for key in
                                  ("bytes", "packets", "drops", "overlimits")}
            except (LinkError, ValueError, IndexError):
                counters[side] = None
        if self.delay_proc is not None:
            try:
                fields = Path(f"/proc/{self.delay_proc.pid}/net/netfilter/nfnetlink_queue") \
                    .read_text().split()
                counters.update(delayed_packets=int(fields[7]), queue_dropped=int(fields[5]),
                                user_dropped=int(fields[6]))
            except (OSError, IndexError, ValueError):
                pass
            if self.delay_proc.poll() is not None:
                counters["delay_exit"] = self.delay_proc.returncode
        return counters

    def close(self) -> None:
        """Read the counters, stop the delay process, delete the namespace and the veth pair;
        safe to call twice, and after a failed `open`.

        A TCP socket left in the namespace keeps it alive, with the veth pair, after its name is
        deleted: say a server's FIN whose last ACK no delay process lets in any more, which TCP
        retransmits for minutes. So the rule goes first, what TCP still holds there is aborted
        (`ss -K`), and the veth pair is deleted if the namespace did not take it.
        """
        if not self.created:
            return
        self.counters = self._read_counters()
        subprocess.run(self.wrap(["iptables", "-w", "-t", "mangle", "-F", "PREROUTING"]),
                       capture_output=True)
        _stop(self.delay_proc)
        subprocess.run(self.wrap(["ss", "-K", "-t", "-a"]), capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        self.created = False
        if Path(f"/sys/class/net/{self.host_dev}").exists():
            subprocess.run(["ip", "link", "del", self.host_dev], capture_output=True)

    def info(self) -> dict:
        """The JSON record's `link` object."""
        record = {"name": self.spec.name, "what": self.spec.what,
                  "rate_mbit": self.spec.rate_mbit, "rtt_ms": self.spec.rtt_ms,
                  "client_addr": self.client, "server_addr": self.host,
                  "measured": self.measured}
        if self.shaped:
            record.update(namespace=self.namespace,
                          shaping=f"tbf rate {self.spec.rate_mbit}mbit burst "
                                  f"{self.burst_bytes()} limit {self.queue_bytes()} on both ends; "
                                  f"the {self.spec.rtt_ms:g} ms round trip added on the way in "
                                  f"(NFQUEUE, link.py delay)",
                          counters=self.counters)
        return record

    def summary(self) -> str:
        """One line for the console: configured, then measured."""
        return describe(self.info())


def describe(info: dict) -> str:
    """A `link` object of the JSON record in one line."""
    conf = "not shaped" if info["rate_mbit"] is None else \
        f"configured {info['rate_mbit']} Mbit/s, {info['rtt_ms']:g} ms round trip"
    line = f"link {info['name']} ({info['what']}): {conf}"
    m = info.get("measured")
    if m:
        line += (f"; measured round trip {m['rtt_ms']:.2f} ms (median of {m['echoes']} echoes; "
                 f"TCP connect {m['connect_ms']:.2f} ms), up {m['up_mbit_s']:.0f} Mbit/s, "
                 f"down {m['down_mbit_s']:.0f} Mbit/s ({m['bytes'] / 1e6:.0f} MB each way)")
    c = info.get("counters")
    if c:
        drops = [(c.get(side) or {}).get("drops") for side in ("to_server", "to_client")]
        line += (f"; {c.get('delayed_packets')} packets delayed, dropped: qdiscs {drops[0]} and "
                 f"{drops[1]}, delay queue {c.get('queue_dropped')} + {c.get('user_dropped')}; "
                 f"delay process CPU {c.get('delay_cpu_s')} s")
    return line


def probe(host: str, port: int, nbytes: int = PROBE_BYTES) -> dict:
    """Measure a sink at host:port: TCP connects, 1-byte echoes (TCP_NODELAY), then nbytes up
    (until the sink says it has them all) and nbytes down (until the sink closes)."""
    def connect(command: bytes) -> socket.socket:
        """A connection to the sink that asked it for one of its services."""
        sock = socket.create_connection((host, port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(command)
        return sock

    connects = []
    for _ in range(CONNECTS):
        start = time.perf_counter()
        sock = socket.create_connection((host, port), timeout=30)
        connects.append(time.perf_counter() - start)
        sock.close()
    echoes = []
    with connect(b"e") as sock:
        for _ in range(ECHOES):
            start = time.perf_counter()
            sock.sendall(b"p")
            if sock.recv(1) != b"p":
                raise LinkError("the probe's echo failed")
            echoes.append(time.perf_counter() - start)
    chunk = b"\0" * (1 << 20)
    start = time.perf_counter()
    with connect(b"u") as sock:
        for offset in range(0, nbytes, len(chunk)):
            sock.sendall(chunk[:nbytes - offset])
        sock.shutdown(socket.SHUT_WR)
        got = int(sock.makefile("rb").readline() or 0)
    up = time.perf_counter() - start
    start, down_bytes = time.perf_counter(), 0
    with connect(b"d" + struct.pack("!Q", nbytes)) as sock:
        while data := sock.recv(1 << 20):
            down_bytes += len(data)
    down = time.perf_counter() - start
    if got != nbytes or down_bytes != nbytes:
        raise LinkError(f"the probe moved {got} bytes up and {down_bytes} down, not {nbytes}")
    return {"rtt_ms": round(statistics.median(echoes) * 1e3, 3),
            "rtt_min_ms": round(min(echoes) * 1e3, 3), "rtt_max_ms": round(max(echoes) * 1e3, 3),
            "echoes": ECHOES, "connect_ms": round(statistics.median(connects) * 1e3, 3),
            "connects": CONNECTS, "bytes": nbytes,
            "up_mbit_s": round(nbytes * 8 / up / 1e6, 1), "up_s": round(up, 3),
            "down_mbit_s": round(nbytes * 8 / down / 1e6, 1), "down_s": round(down, 3)}


def _serve_sink(host: str) -> None:
    """`link.py sink HOST`: listen on a free port of HOST, print it, and serve the probe: `e`
    echoes bytes, `u` reads to EOF and answers the count, `d` + 8-byte length sends that many."""
    def serve(conn: socket.socket) -> None:
        """One connection, on a thread of its own."""
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            command = conn.recv(1)
            if command == b"e":
                while data := conn.recv(1):
                    conn.sendall(data)
            elif command == b"u":
                count = 0
                while data := conn.recv(1 << 20):
                    count += len(data)
                conn.sendall(f"{count}\n".encode())
            elif command == b"d":
                (left,) = struct.unpack("!Q", conn.makefile("rb").read(8))
                chunk = b"\0" * (1 << 20)
                while left > 0:
                    conn.sendall(chunk[:left])
                    left -= len(chunk)

    server = socket.create_server((host, 0))
    print(server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# nfnetlink_queue (linux/netfilter/nfnetlink_queue.h), spoken over a raw netlink socket.
NETLINK_NETFILTER, NFNL_SUBSYS_QUEUE = 12, 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_COPY_META, NFQA_CFG_F_GSO, NF_ACCEPT = 1, 1, 4, 1
NLM_F_REQUEST, NLM_F_ACK, NLMSG_ERROR = 1, 4, 2


def _nfq_message(kind: int, attrs: list[tuple[int, bytes]], flags: int = NLM_F_REQUEST) -> bytes:
    """A netlink message to queue 0: nlmsghdr, nfgenmsg, then attributes (4-byte aligned)."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
    for attr_type, payload in attrs:
        size = 4 + len(payload)
        body += struct.pack("=HH", size, attr_type) + payload + b"\0" * (-size % 4)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, 0, 0)
    return header + body


def _serve_delay(rtt_ms: float) -> None:
    """`link.py delay RTT_MS`: take queue 0's packets and accept each RTT_MS after it came.

    The delay is the same for every packet, so they are due in the order they came, and one
    batch verdict (every id up to the last one due) lets all the due ones go. Only the packets'
    metadata is copied here; the packets wait in the kernel.
    """
    os.setpriority(os.PRIO_PROCESS, 0, -10)  # a busy build should not stretch the delay
    delay = rtt_ms / 1e3
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
    sock.bind((0, 0))
    for attrs in ([(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, 0))],
                  [(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                   (NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)),
                   (NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO)),  # GSO packets whole
                   (NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO))]):
        sock.send(_nfq_message(NFQNL_MSG_CONFIG, attrs, NLM_F_REQUEST | NLM_F_ACK))
        reply = sock.recv(4096)
        (kind,), (error,) = struct.unpack_from("=H", reply, 4), struct.unpack_from("=i", reply, 16)
        if kind == NLMSG_ERROR and error:
            sys.exit(f"link.py delay: configuring queue 0: {os.strerror(-error)}")
    print("ready", flush=True)
    due: collections.deque[tuple[float, int]] = collections.deque()
    buf = bytearray(1 << 16)
    packet_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
    while True:
        now = time.monotonic()
        last = None
        while due and due[0][0] <= now:
            last = due.popleft()[1]
        if last is not None:
            sock.send(_nfq_message(NFQNL_MSG_VERDICT_BATCH,
                                   [(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))]))
        select.select([sock], [], [], max(0.0, due[0][0] - time.monotonic()) if due else None)
        while True:
            try:
                size = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: messages lost; the next batch verdict lets their packets go
                continue
            release, offset = time.monotonic() + delay, 0
            while offset + 16 <= size:
                length, kind = struct.unpack_from("=IH", buf, offset)
                if kind == packet_type:  # the packet header is the first attribute
                    attr = offset + 20
                    if struct.unpack_from("=H", buf, attr + 2)[0] & 0x7fff == NFQA_PACKET_HDR:
                        due.append((release, struct.unpack_from("!I", buf, attr + 4)[0]))
                offset += (length + 3) & ~3 if length else size


def main(argv: list[str]) -> int:
    """`probe NAME` (set a link up, measure it, tear it down), or a helper role."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if argv[:1] == ["sink"] and len(argv) == 2:
        _serve_sink(argv[1])
    elif argv[:1] == ["delay"] and len(argv) == 2:
        _serve_delay(float(argv[1]))
    elif argv[:1] == ["probe"] and len(argv) == 2 and argv[1] in LINKS:
        log_dir = Path(tempfile.mkdtemp(prefix="rcache-link-"))  # the helpers' stderr
        link = Link(argv[1], log_dir)
        try:
            link.open()
            link.measure()
        except LinkError as exc:
            print(f"link: {exc}", file=sys.stderr)
            return 2
        finally:
            link.close()
        print(link.summary())
        shutil.rmtree(log_dir)
        return 0
    else:
        print(f"usage: link.py probe {{{','.join(LINKS)}}}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
