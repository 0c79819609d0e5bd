"""tests/support/tlsraw.py - TLS records and ClientHellos crafted by hand, and the server's first
answer read back, for conformance tests (tests/e2e/test_tls_conformance.py).

Nothing here encrypts: a case sends bytes a normal client would never send (wrong lengths, a
compression list without null, two key shares for one group, ...) and looks at what the server
says before any key exists: a ServerHello (or HelloRetryRequest), an alert, or the connection's
end. Every length is computed unless a case overrides it, so one field at a time can lie.

    hello = client_hello(tls13=True, sni="localhost", alpn=["http/1.1"])
    reply = exchange(port, record(HANDSHAKE, hello))
    reply.kind            # "hello", "hrr", "alert", "eof", "reset" or "timeout"
    reply.alert_name      # "decode_error", ... (for kind "alert")
    reply.version         # the version the server chose (supported_versions when present)
    reply.random          # the ServerHello's 32 random bytes

X25519 key shares are real when python's cryptography module is there, else a fixed public value
(a server never gets far enough to notice in the cases that need one).
"""
import os
import socket
import struct
import time

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CLIENT_HELLO, SERVER_HELLO = 1, 2

# Extension types (IANA).
EXT_SNI, EXT_STATUS_REQUEST, EXT_GROUPS, EXT_EC_POINT_FORMATS = 0, 5, 10, 11
EXT_SIG_ALGS, EXT_HEARTBEAT, EXT_ALPN, EXT_PADDING, EXT_EMS = 13, 15, 16, 21, 23
EXT_SESSION_TICKET, EXT_PSK, EXT_EARLY_DATA, EXT_SUPPORTED_VERSIONS = 35, 41, 42, 43
EXT_COOKIE, EXT_PSK_MODES, EXT_KEY_SHARE, EXT_RENEGOTIATION_INFO = 44, 45, 51, 0xFF01

X25519, SECP256R1, SECP384R1, FFDHE2048 = 0x001D, 0x0017, 0x0018, 0x0100
TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304

TLS13_SUITES = [0x1301, 0x1302, 0x1303]
TLS12_SUITES = [0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x009E]
SIG_ALGS = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807]
TLS_EMPTY_RENEGOTIATION_INFO_SCSV, TLS_FALLBACK_SCSV = 0x00FF, 0x5600

# RFC 8446 section 4.1.3: HelloRetryRequest's random, and the downgrade sentinels.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
DOWNGRADE_TLS12 = b"DOWNGRD\x01"
DOWNGRADE_TLS11 = b"DOWNGRD\x00"

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
          47: "illegal_parameter", 48: "unknown_ca", 50: "decode_error", 51: "decrypt_error",
          70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
          86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
          109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
          116: "certificate_required", 120: "no_application_protocol"}


def u8(n):
    return struct.pack("!B", n)


def u16(n):
    return struct.pack("!H", n)


def u24(n):
    return struct.pack("!I", n)[1:]


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def x25519_public():
    """A fresh X25519 public key (32 bytes)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        return X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                     PublicFormat.Raw)
    except ImportError:
        # RFC 7748 section 6.1's Alice: a valid point, fine for a server that never finishes.
        return bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def p256_public():
    """An uncompressed P-256 point (65 bytes)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint)
    except ImportError:
        return bytes.fromhex("04" "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
                             "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")


# ---- extensions ----------------------------------------------------------------------------

def ext(etype, body, length=None):
    """One extension; length overrides the computed length of body."""
    return u16(etype) + u16(len(body) if length is None else length) + body


def ext_sni(name, name_type=0):
    n = name.encode() if isinstance(name, str) else name
    return ext(EXT_SNI, vec16(u8(name_type) + vec16(n)))


def ext_alpn(protocols):
    return ext(EXT_ALPN, vec16(b"".join(vec8(p.encode() if isinstance(p, str) else p)
                                        for p in protocols)))


def ext_versions(versions):
    return ext(EXT_SUPPORTED_VERSIONS, vec8(b"".join(u16(v) for v in versions)))


def ext_groups(groups):
    return ext(EXT_GROUPS, vec16(b"".join(u16(g) for g in groups)))


def ext_sig_algs(algs=SIG_ALGS):
    return ext(EXT_SIG_ALGS, vec16(b"".join(u16(a) for a in algs)))


def key_share_entry(group, key=None):
    if key is None:
        key = x25519_public() if group == X25519 else p256_public()
    return u16(group) + vec16(key)


def ext_key_share(entries):
    """entries: [(group, key or None)]."""
    return ext(EXT_KEY_SHARE, vec16(b"".join(key_share_entry(g, k) for g, k in entries)))


def ext_psk_modes(modes=(1,)):
    return ext(EXT_PSK_MODES, vec8(bytes(modes)))


def ext_padding(n, fill=0):
    return ext(EXT_PADDING, bytes([fill]) * n)


def ext_heartbeat(mode=1):
    return ext(EXT_HEARTBEAT, u8(mode))


def ext_ec_point_formats(formats=(0,)):
    return ext(EXT_EC_POINT_FORMATS, vec8(bytes(formats)))


def ext_renegotiation_info(data=b""):
    return ext(EXT_RENEGOTIATION_INFO, vec8(data))


# ---- messages and records ------------------------------------------------------------------

def handshake(msg_type, body, length=None):
    return u8(msg_type) + u24(len(body) if length is None else length) + body


def client_hello(tls13=True, tls12=True, version=TLS12, random=None, session_id=None,
                 suites=None, compression=b"\x00", sni=None, alpn=None, groups=None,
                 key_shares=None, extra=(), extensions=None, ext_len=None, body_tail=b"",
                 raw_suites=None, raw_compression=None):
    """A ClientHello handshake message. tls13/tls12 choose the default suites and extensions
    (supported_versions, key_share, psk modes for 1.3). extensions replaces the whole list;
    extra adds to it (after the defaults). ext_len overrides the extensions' total length;
    raw_suites and raw_compression replace those vectors with bytes given as they are."""
    random = os.urandom(32) if random is None else random
    session_id = os.urandom(32) if session_id is None else session_id
    if suites is None:
        suites = (TLS13_SUITES if tls13 else []) + (TLS12_SUITES if tls12 else [])
    if groups is None:
        groups = [X25519, SECP256R1, SECP384R1]
    if extensions is None:
        exts = []
        if sni is not None:
            exts.append(ext_sni(sni))
        exts += [ext_groups(groups), ext_ec_point_formats(), ext_sig_algs()]
        if alpn is not None:
            exts.append(ext_alpn(alpn))
        if tls13:
            exts.append(ext_versions([TLS13] + ([TLS12] if tls12 else [])))
            exts.append(ext_key_share([(X25519, None)] if key_shares is None else key_shares))
            exts.append(ext_psk_modes())
        exts += list(extra)
        extensions = b"".join(exts)
    body = (u16(version) + random + vec8(session_id) +
            (vec16(b"".join(u16(s) for s in suites)) if raw_suites is None else raw_suites) +
            (vec8(compression) if raw_compression is None else raw_compression))
    if extensions != b"" or ext_len is not None:
        body += u16(len(extensions) if ext_len is None else ext_len) + extensions
    return handshake(CLIENT_HELLO, body + body_tail)


def record(ctype, body, version=TLS10, length=None):
    """One record (legacy_record_version 0x0301, as clients send in their first flight)."""
    return u8(ctype) + u16(version) + u16(len(body) if length is None else length) + body


def records(ctype, body, size, version=TLS10):
    """body split into records of at most size bytes."""
    return b"".join(record(ctype, body[i:i + size], version) for i in range(0, len(body), size))


def sslv2_hello(version=TLS12, suites=(0x00C02F, 0x00C030, 0x00009E), challenge=None):
    """An SSL 2.0-compatible CLIENT-HELLO (RFC 5246 appendix E.2): 3-byte cipher specs."""
    challenge = os.urandom(16) if challenge is None else challenge
    specs = b"".join(struct.pack("!I", s)[1:] for s in suites)
    body = u8(1) + u16(version) + u16(len(specs)) + u16(0) + u16(len(challenge)) + specs + challenge
    return u16(0x8000 | len(body)) + body


# ---- the server's answer -------------------------------------------------------------------

class Reply:
    """What the server said first. kind: hello, hrr, alert, eof (closed without an alert), reset,
    timeout, or junk (bytes that are no TLS record)."""

    def __init__(self):
        self.kind = None
        self.alert_level = self.alert = None
        self.version = self.legacy_version = None
        self.random = self.session_id = None
        self.suite = self.compression = None
        self.extensions = {}          # type -> body, in the order sent
        self.record_version = None
        self.after = []               # content types of the records that followed
        self.raw = b""

    @property
    def alert_name(self):
        return ALERTS.get(self.alert, str(self.alert)) if self.alert is not None else None

    def summary(self):
        if self.kind == "alert":
            return f"alert {self.alert_name}" + ("" if self.alert_level == 2 else
                                                 f" (level {self.alert_level})")
        if self.kind in ("hello", "hrr"):
            v = {TLS12: "1.2", TLS13: "1.3", TLS11: "1.1", TLS10: "1.0"}.get(self.version,
                                                                           hex(self.version))
            return f"{self.kind} TLS {v} suite {self.suite:04x}"
        return self.kind

    def __repr__(self):
        return f"<Reply {self.summary()}>"


def parse_server_hello(r, body):
    p = 0
    r.legacy_version = struct.unpack_from("!H", body, p)[0]
    p += 2
    r.random = body[p:p + 32]
    p += 32
    sl = body[p]
    r.session_id = body[p + 1:p + 1 + sl]
    p += 1 + sl
    r.suite = struct.unpack_from("!H", body, p)[0]
    r.compression = body[p + 2]
    p += 3
    r.version = r.legacy_version
    if p + 2 <= len(body):
        end = p + 2 + struct.unpack_from("!H", body, p)[0]
        p += 2
        while p + 4 <= end:
            t, n = struct.unpack_from("!HH", body, p)
            r.extensions[t] = body[p + 4:p + 4 + n]
            p += 4 + n
    sv = r.extensions.get(EXT_SUPPORTED_VERSIONS)
    if sv and len(sv) == 2:
        r.version = struct.unpack("!H", sv)[0]
    r.kind = "hrr" if r.random == HRR_RANDOM else "hello"


def read_reply(sock, deadline):
    """Read records until the first message or alert is whole, the peer closes, or deadline."""
    r = Reply()
    buf = b""
    hs = b""

    def more():
        nonlocal buf
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout
        sock.settimeout(left)
        b = sock.recv(65536)
        if not b:
            raise EOFError
        buf += b
        r.raw += b

    try:
        while True:
            while len(buf) < 5:
                more()
            ctype, rver, n = struct.unpack_from("!BHH", buf)
            if ctype not in (20, 21, 22, 23) or rver >> 8 not in (2, 3):
                r.kind = "junk"
                return r
            while len(buf) < 5 + n:
                more()
            frag, buf = buf[5:5 + n], buf[5 + n:]
            if r.record_version is None:
                r.record_version = rver
            if r.kind is not None:
                r.after.append(ctype)
                return r
            if ctype == ALERT and len(frag) >= 2:
                r.kind, r.alert_level, r.alert = "alert", frag[0], frag[1]
                return r
            if ctype != HANDSHAKE:
                r.kind = "junk"
                return r
            hs += frag
            if len(hs) >= 4:
                mlen = int.from_bytes(hs[1:4], "big")
                if len(hs) >= 4 + mlen:
                    if hs[0] != SERVER_HELLO:
                        r.kind = "junk"
                        return r
                    parse_server_hello(r, hs[4:4 + mlen])
                    if not buf:
                        return r
    except EOFError:
        r.kind = r.kind or "eof"
    except socket.timeout:
        r.kind = r.kind or "timeout"
    except ConnectionResetError:
        r.kind = r.kind or "reset"
    return r


def exchange(port, data, timeout=2.0, half_close=False, pieces=None, host="127.0.0.1"):
    """Connect, send data (or the byte strings in pieces, one send each), optionally shut down
    the write side, and read the server's first answer."""
    deadline = time.monotonic() + timeout
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in pieces if pieces is not None else [data]:
                s.sendall(piece)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_reply(s, deadline)
    finally:
        s.close()
