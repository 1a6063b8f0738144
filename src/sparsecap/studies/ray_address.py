"""Checking a Ray cluster's address before Ray connects to it.

Ray retries an address without a cluster for minutes, printing warnings, and never gives up: one where
nothing listens (a stopped cluster that `--address auto` still finds recorded included), one of a web
server, one of a process that accepts and stays silent. A run is refused instead, in one line that says
what was found there and what a valid address looks like. Ray's GCS and its Ray Client server speak gRPC,
so an address passes when its server answers HTTP/2's opening; a cluster that then refuses the driver is
named as such, with the likely cause (`join_refused`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sparsecap.errors import SparsecapError

CONNECT_SECONDS = 5.0
"""How long a cluster's address may take to accept a connection, and then to answer, before the run is
refused."""
VALID_ADDRESSES = ("valid: auto, or HOST:PORT as 'ray start --head' prints it (e.g. 10.0.0.5:6379), or "
                   "ray://HOST:PORT for Ray Client")
WEB_SCHEMES = ("http", "https")
"""What the Ray dashboard and its Jobs API answer on (port 8265): the address 'ray job submit' takes and
$RAY_ADDRESS often holds for it, but not one a driver can join."""
HTTP2_OPENING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes((0, 0, 0, 4, 0, 0, 0, 0, 0))
"""HTTP/2's client preface and an empty SETTINGS frame (RFC 9113, 3.4): a gRPC server answers with a
SETTINGS frame of its own."""
FRAME_HEADER_BYTES = 9
SETTINGS_FRAME = 4
"""A frame's type, the fourth byte of its header."""


def cluster_endpoint(address: str, named: str) -> tuple[str, int] | None:
    """The host and port `address` names (None for "auto", which Ray resolves itself); a Ray Client address
    (ray://HOST:PORT) is let through as Ray takes it. `named` says where the address came from, for errors."""
    if address == "auto":
        return None
    scheme, separator, rest = address.partition("://")
    if separator and scheme in WEB_SCHEMES:
        raise SparsecapError(f"{named}: a web address, as the Ray dashboard and 'ray job submit' take, not a "
                             f"cluster's; {VALID_ADDRESSES}")
    host, _, port = (rest if scheme == "ray" else address).rpartition(":")
    if (separator and scheme != "ray") or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SparsecapError(f"{named}: not a Ray address; {VALID_ADDRESSES}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Target:
    """The address Ray will connect to for an `--address`, and how an error names it and advises."""

    address: str
    named: str
    """Where the address came from."""
    advice: str = ("check the address 'ray start --head' printed, or leave out --address for a private local "
                   "instance")
    """What to do where nothing answers there."""


def recorded_cluster_file() -> Path:
    """Where 'ray start' records the cluster that `--address auto` joins (ray_current_cluster in Ray's
    temporary directory: $RAY_TMPDIR, else $TMPDIR on Linux, else /tmp)."""
    linux = sys.platform.startswith("linux")
    directory = (os.environ.get("RAY_TMPDIR") or (os.environ.get("TMPDIR") if linux else None)
                 or ("/tmp" if linux or sys.platform == "darwin" else tempfile.gettempdir()))
    return Path(directory) / "ray" / "ray_current_cluster"


def connection_target(address: str) -> Target:
    """The address Ray will connect to for `address`: "auto" means $RAY_ADDRESS where that names one, else the
    cluster 'ray start' recorded on this machine (a cluster that stopped without 'ray stop' leaves its record,
    and Ray then retries that address for minutes), else whatever Ray finds running here."""
    if address != "auto":
        return Target(address, f"--address {address}")
    if os.environ.get("RAY_ADDRESS", "auto") != "auto":  # Ray reads RAY_ADDRESS=auto as no address given
        return Target(os.environ["RAY_ADDRESS"], f"--address auto (RAY_ADDRESS={os.environ['RAY_ADDRESS']})")
    record = recorded_cluster_file()
    recorded = record.read_text().strip() if record.is_file() else ""
    if not recorded:
        return Target("auto", "--address auto")
    return Target(recorded, f"--address auto (the cluster recorded in {record}: {recorded})",
                  f"a cluster stopped without 'ray stop' leaves that record behind: 'ray stop' clears it; start a "
                  f"cluster (ray start --head), or leave out --address for a private local instance")


def uses_tls() -> bool:
    """Whether Ray connects over TLS ($RAY_USE_TLS, as Ray reads it): a TLS server does not answer HTTP/2's
    opening in the clear, so only the connection is checked."""
    return os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")


def answers_http2(connection: socket.socket) -> bool:
    """Whether the server at the other end of `connection` answers HTTP/2's opening with a SETTINGS frame
    within the connection's timeout (gRPC does; a web server answers HTTP/1.1, a silent one nothing)."""
    header = b""
    with contextlib.suppress(OSError):  # reset (also before the opening is sent), or timed out
        connection.sendall(HTTP2_OPENING)
        while len(header) < FRAME_HEADER_BYTES and (chunk := connection.recv(FRAME_HEADER_BYTES - len(header))):
            header += chunk
    return len(header) == FRAME_HEADER_BYTES and header[3] == SETTINGS_FRAME


def sends_token() -> bool:
    """Whether Ray authenticates this driver with a token ($RAY_AUTH_MODE=token, as Ray reads it)."""
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def join_refused(address: str, error: Exception) -> str:
    """Why Ray could not join the cluster at `address` after `check_reachable` passed, and what to do. Ray 2.59+
    sends its token (~/.ray/auth_token) only to a cluster it finds on this machine, never to an address given
    explicitly, while 'ray start --head' turns token authentication on wherever that file exists: such a
    cluster refuses a driver told its address, after 20 s, in words that say only that it could not connect."""
    target = connection_target(address)
    if target.address == "auto":
        return (f"{target.named}: no Ray cluster to connect to ({error}); start one (ray start --head) or leave "
                f"out --address for a private local instance")
    hint = "" if address == "auto" or sends_token() else (
        "; if it uses token authentication, as 'ray start --head' does wherever ~/.ray/auth_token exists, set "
        "RAY_AUTH_MODE=token here too: Ray sends no token to an address given explicitly")
    return f"{target.named}: a Ray server answers there, but this driver could not join its cluster ({error}){hint}"


def check_reachable(address: str) -> None:
    """Refuse, in one line, an address where no Ray cluster answers within `CONNECT_SECONDS`."""
    target = connection_target(address)
    endpoint = cluster_endpoint(target.address, target.named)
    if endpoint is None:
        return
    try:
        connection = socket.create_connection(endpoint, timeout=CONNECT_SECONDS)
    except OSError as error:
        raise SparsecapError(f"{target.named}: no Ray cluster answers there ({error}); {target.advice}") from None
    with connection:
        if not uses_tls() and not answers_http2(connection):
            raise SparsecapError(f"{target.named}: something answers there, but not a Ray cluster (no gRPC, which Ray's "
                                 f"GCS speaks); check the address 'ray start --head' printed (its port is 6379 "
                                 f"unless --port said otherwise)")
