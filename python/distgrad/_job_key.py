"""The job key: a secret the workers of one job share. It authenticates them
to each other when they connect (an HMAC-SHA256 challenge-response; the key
itself never travels) and authenticates what they leave in the rendezvous
store, which anyone who reaches it can read and write.

Where the key comes from (see docs/design.md, "Threat model"):

- ``DISTGRAD_AUTH_TOKEN`` (or the file ``DISTGRAD_AUTH_TOKEN_FILE`` names),
  the same on every worker: any job, on any number of hosts.
- Otherwise, for a job on one host (its store on a loopback address, or a
  ``file://`` store): rank 0 writes a random key to a file only this user
  can read and publishes the file's path; the other workers read the file.
  Another user reaching the store learns only the path.
- Otherwise (a store other hosts can reach, and no token): rank 0 publishes
  a random key in the store, and every worker warns that any host reaching
  the store can join the job.
"""

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
import warnings

_MAC_BYTES = hashlib.sha256().digest_size


class JobKey:
    """HMAC-SHA256 with the job's key (Python's vetted hmac module)."""

    def __init__(self, key):
        if not key:
            raise ValueError("the job key is empty")
        self._key = bytes(key)

    def mac(self, message):
        return hmac.new(self._key, bytes(message), hashlib.sha256).digest()

    def verify(self, message, mac):
        return hmac.compare_digest(self.mac(message), bytes(mac))

    def sign(self, name, value):
        """value (bytes) as stored under name: its MAC over (name, value),
        then the value."""
        return self.mac(name.encode() + b"\0" + value) + value

    def open(self, name, signed):
        """The value signed under name, or None if signed was not made with
        this key for this name (written by someone outside the job)."""
        mac, value = signed[:_MAC_BYTES], signed[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not self.verify(name.encode() + b"\0" + value, mac):
            return None
        return value


def from_environment():
    """The key DISTGRAD_AUTH_TOKEN or DISTGRAD_AUTH_TOKEN_FILE gives, or None."""
    token = os.environ.get("DISTGRAD_AUTH_TOKEN")
    if token:
        return JobKey(token.encode())
    path = os.environ.get("DISTGRAD_AUTH_TOKEN_FILE")
    if path:
        with open(path, "rb") as file:
            token = file.read().strip()
        if not token:
            raise ValueError(f"DISTGRAD_AUTH_TOKEN_FILE names an empty file: {path}")
        return JobKey(token)
    return None


def write_private_key_file():
    """A new random key in a file only this user can read; returns its path
    (in a directory of its own, removed with remove_private_key_file)."""
    directory = tempfile.mkdtemp(prefix="distgrad-key-")  # mode 0700
    path = os.path.join(directory, "key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(secrets.token_bytes(32))
    return path


def read_private_key_file(path):
    """The key in the file rank 0 wrote, after checking that it is a regular
    file of this user that nobody else can read or write."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise PermissionError(f"the job key file {path} is not a private file of this user")
        return JobKey(file.read())


def remove_private_key_file(path):
    try:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


_warned = False


def warn_unauthenticated(where):
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"DISTGRAD_AUTH_TOKEN is not set and the rendezvous store at {where} can be reached from "
            "other hosts: the job key travels through it, so any host that reaches the store can join "
            "this job and run code in it. Set DISTGRAD_AUTH_TOKEN to the same secret on every worker "
            "(or use a loopback MASTER_ADDR for a job on one host).",
            stacklevel=3,
        )
