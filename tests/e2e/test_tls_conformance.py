#!/usr/bin/env python3
"""test_tls_conformance.py - what `tlsloop serve` answers to ClientHellos and records that break
the rules (RFC 8446, 5246, 6066, 7301, 7685, 5746, 8446 appendix D), crafted byte by byte with
tests/support/tlsraw.py; then a few odd clients nobody here wrote: openssl s_client, gnutls-cli
and python's ssl module.

Each raw case names the answers it accepts ("alert:decode_error", "hello:1.3", "hrr", "eof", ...)
and, where tlsloop decides differently from OpenSSL 3.0 left to itself, the answer OpenSSL gives
(`ref`). docs/server.md ("TLS conformance") lists the cases by name: those tlsloop fixed, and
those where OpenSSL 3.0 decides and tlsloop cannot change it.

Modes (environment):
  REFERENCE=1  run the raw cases against `openssl s_server` (same certificate, same versions,
               same ALPN) and hold it to `ref` where a case has one: which behaviours are
               OpenSSL's own.
  OBSERVE=1    print every case's answer (with either server).
Command-line arguments select cases whose names contain one of them.

Runs from the repository root; TLSLOOP_BIN is the tlsloop program (build/tlsloop by default).
Ends with "N passed, N failed".
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from e2e import SLOW, fail, file_text, results, start_serve, stop_process, summary  # noqa: E402
import tlsraw as t  # noqa: E402
from tlsraw import (HANDSHAKE, TLS10, TLS11, TLS12, TLS13, X25519, SECP256R1,  # noqa: E402
                    client_hello, ext, record)

REFERENCE = os.environ.get("REFERENCE") == "1"
OBSERVE = os.environ.get("OBSERVE") == "1"
ALPN = "http/1.1"

# ---- the servers -------------------------------------------------------------------------------


class Tlsloop:
    """tlsloop serve on an ephemeral port, one TLS listener, the generated certificate."""

    def __init__(self, tmp):
        self.log = f"{tmp}/serve.log"
        self.state = f"{tmp}/state"
        self.proc, self.port = start_serve(
            ["--listen", "127.0.0.1:0", "--state-dir", self.state, "--log", self.log, "--alpn",
             ALPN, "--root", tmp])
        self.ca = f"{self.state}/ca.pem"
        self.cert, self.key = f"{self.state}/localhost.pem", f"{self.state}/localhost.key"

    def log_text(self):
        return file_text(self.log)

    def stop(self):
        return stop_process(self.proc, 20, "tlsloop serve")


class Reference:
    """openssl s_server with tlsloop's certificate, versions and ALPN (REFERENCE=1)."""

    def __init__(self, cert, key, ca):
        self.cert, self.key, self.ca = cert, key, ca
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", cert, "-key",
             key, "-www", "-quiet", "-min_protocol", "TLSv1.2", "-alpn", ALPN,
             "-groups", "X25519:P-256:P-384"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("openssl s_server did not start")

    def stop(self):
        return stop_process(self.proc, 10, "openssl s_server")


# ---- the raw cases -----------------------------------------------------------------------------

CASES = []   # (name, data, want, ref, check, half_close)


def case(name, data, want, ref=None, check=None, half_close=True):
    """want: the answers tlsloop may give (a string or a tuple); ref: those of OpenSSL 3.0 alone
    where they differ; check(reply): more to assert of an accepted answer."""
    CASES.append((name, data, (want,) if isinstance(want, str) else want,
                  None if ref is None else (ref,) if isinstance(ref, str) else ref, check,
                  half_close))


def outcome(r):
    if r.kind == "alert":
        return f"alert:{r.alert_name}"
    if r.kind == "hello":
        return {TLS12: "hello:1.2", TLS13: "hello:1.3"}.get(r.version, f"hello:{r.version:#x}")
    return r.kind


def hs(msg, size=None):
    """A handshake message in records (one, or of at most size bytes)."""
    return record(HANDSHAKE, msg) if size is None else t.records(HANDSHAKE, msg, size)


CLOSED = ("eof", "reset")
DECODE = "alert:decode_error"
ILLEGAL = "alert:illegal_parameter"


def no_ext(etype):
    def check(r):
        assert etype not in r.extensions, f"extension {etype} echoed: {r.extensions}"
    return check


def downgrade(sentinel):
    def check(r):
        assert r.random[-8:] == sentinel, f"server random ends {r.random[-8:]!r}"
    return check


def not_downgrade(r):
    assert r.random[-8:-1] != b"DOWNGRD", f"server random ends {r.random[-8:]!r}"


def alpn_is(proto):
    def check(r):
        body = r.extensions.get(t.EXT_ALPN)
        assert body == t.vec16(t.vec8(proto.encode())), f"ALPN {body!r}"
    return check


# A ClientHello's parts, to cut and corrupt one field at a time.
def hello_fields(**kw):
    """(message, offsets): offsets of the end of version+random, session id, suites,
    compression, and the start of the extensions block (its length)."""
    m = client_hello(random=b"\x11" * 32, session_id=b"\x22" * 32, **kw)
    body = m[4:]
    p = 2 + 32
    p_sid = p + 1 + body[p]
    n_suites = int.from_bytes(body[p_sid:p_sid + 2], "big")
    p_suites = p_sid + 2 + n_suites
    p_comp = p_suites + 1 + body[p_suites]
    return m, {"random": p, "sid": p_sid, "suites": p_suites, "comp": p_comp}


def with_body(body):
    return t.handshake(t.CLIENT_HELLO, body)


def build_cases():
    # -- sanity: well-formed hellos --
    case("ok_tls13", hs(client_hello()), "hello:1.3", check=not_downgrade, half_close=False)
    case("ok_tls12", hs(client_hello(tls13=False)), "hello:1.2",
         check=downgrade(t.DOWNGRADE_TLS12), half_close=False)
    case("ok_tls13_sni_alpn", hs(client_hello(sni="localhost", alpn=["h2", ALPN])),
         "hello:1.3", half_close=False)   # TLS 1.3's ALPN is in EncryptedExtensions
    case("ok_tls12_sni_alpn", hs(client_hello(tls13=False, sni="localhost", alpn=[ALPN])),
         "hello:1.2", check=alpn_is(ALPN), half_close=False)
    # no signature_algorithms in TLS 1.2 means SHA-1 (RFC 5246 7.4.1.4.1), below OpenSSL's
    # security level 1
    case("tls12_no_extensions_sha1_default", hs(client_hello(tls13=False, extensions=b"")),
         "alert:handshake_failure")
    case("ok_tls13_p256_share", hs(client_hello(key_shares=[(SECP256R1, None)])), "hello:1.3",
         half_close=False)
    case("ok_tls13_two_shares", hs(client_hello(key_shares=[(X25519, None), (SECP256R1, None)])),
         "hello:1.3", half_close=False)
    case("hrr_empty_key_share", hs(client_hello(key_shares=[])), "hrr", half_close=False)
    case("hrr_unsupported_share_group",
         hs(client_hello(groups=[0x0019, X25519], key_shares=[(0x0019, b"\x04" * 133)])), "hrr",
         half_close=False)
    grease = [0x0A0A, 0x1A1A, 0x2A2A, 0xFAFA]
    case("grease_everywhere",
         hs(client_hello(suites=[0x0A0A] + t.TLS13_SUITES, groups=[0x1A1A, X25519],
                         extensions=t.ext(0x2A2A, b"") + t.ext_groups([0x1A1A, X25519]) +
                         t.ext_sig_algs() + t.ext_versions([0x3A3A, TLS13, TLS12]) +
                         t.ext_key_share([(0x1A1A, b"\x00"), (X25519, None)]) +
                         t.ext_psk_modes() + t.ext(0xFAFA, b"\x00"))),
         "hello:1.3", half_close=False)
    case("ok_split_1_byte_records", hs(client_hello(), size=1), "hello:1.3", half_close=False)
    case("ok_split_100_byte_records", hs(client_hello(), size=100), "hello:1.3", half_close=False)
    case("ok_record_version_0303", record(HANDSHAKE, client_hello(), version=TLS12), "hello:1.3",
         half_close=False)
    for v in grease[:2]:
        case(f"ok_grease_suite_{v:04x}_tls12",
             hs(client_hello(tls13=False, suites=[v] + t.TLS12_SUITES)), "hello:1.2",
             half_close=False)

    # -- truncated and mis-framed ClientHellos: the message's own length is right, its content
    # is cut short --
    m, off = hello_fields()
    body = m[4:]
    cuts = sorted(set([0, 1, 2, 10, 33, 34, 35, 50, off["sid"], off["sid"] + 1, off["sid"] + 3,
                       off["suites"] - 1, off["suites"], off["comp"] + 1, off["comp"] + 3,
                       off["comp"] + 5, off["comp"] + 20, len(body) - 1, len(body) - 2,
                       len(body) - 10]))
    for c in cuts:
        if c == off["comp"]:
            continue   # a valid hello without extensions
        case(f"truncated_body_at_{c}", hs(with_body(body[:c])), DECODE)
    # the record ends before the message does: the server waits, and sees the end.
    case("truncated_record_mid_message", record(HANDSHAKE, m[:100]), CLOSED + (DECODE,))
    case("truncated_record_header", record(HANDSHAKE, m)[:3], CLOSED + (DECODE,))
    case("truncated_message_header", record(HANDSHAKE, m[:2]), CLOSED + (DECODE,))
    case("message_length_short_by_one", hs(t.handshake(1, body, len(body) - 1) + b"\x00"),
         DECODE)
    case("trailing_byte_after_extensions", hs(with_body(body + b"\x00")), DECODE)
    case("trailing_bytes_after_extensions", hs(with_body(body + b"\x00\x00\x00\x00")), DECODE)
    case("extensions_length_plus_one",
         hs(client_hello(ext_len=len(hello_fields()[0]) - 4 - off["comp"] - 2 + 1)), DECODE)
    case("extensions_length_minus_one",
         hs(client_hello(ext_len=len(hello_fields()[0]) - 4 - off["comp"] - 2 - 1)), DECODE)
    case("extensions_length_zero_with_data", hs(client_hello(ext_len=0)), DECODE)
    case("extensions_length_ffff", hs(client_hello(ext_len=0xFFFF)), DECODE)
    case("extensions_block_one_byte", hs(with_body(body[:off["comp"]] + b"\x00")), DECODE)
    case("session_id_33_bytes", hs(client_hello(session_id=b"\x01" * 33)), DECODE)
    case("session_id_length_past_end", hs(with_body(body[:34] + b"\xff" + body[35:])), DECODE)
    case("suites_odd_length",
         hs(client_hello(raw_suites=t.vec16(b"\x13\x01\x13"))), DECODE)
    case("suites_length_past_end",
         hs(client_hello(raw_suites=b"\x7f\xff\x13\x01")), DECODE)
    case("suites_empty", hs(client_hello(raw_suites=b"\x00\x00")), DECODE,
         ref=ILLEGAL)
    case("suites_none_known", hs(client_hello(suites=[0x0001, 0xFF00])),
         "alert:handshake_failure")
    case("suites_only_scsv", hs(client_hello(suites=[0x00FF])), "alert:handshake_failure")
    case("suites_tls13_only_for_tls12", hs(client_hello(tls13=False, suites=t.TLS13_SUITES)),
         "alert:handshake_failure")
    case("legacy_version_0300", hs(client_hello(tls13=False, version=0x0300)),
         "alert:protocol_version", ref="alert:handshake_failure")
    case("legacy_version_0301", hs(client_hello(tls13=False, version=TLS10)),
         "alert:protocol_version")
    case("legacy_version_0302", hs(client_hello(tls13=False, version=TLS11)),
         "alert:protocol_version")
    case("legacy_version_0304_no_versions_ext",
         hs(client_hello(tls13=False, version=TLS13)), "hello:1.2")
    case("legacy_version_0400_no_versions_ext",
         hs(client_hello(tls13=False, version=0x0400)), "hello:1.2")
    case("legacy_version_0200", hs(client_hello(tls13=False, version=0x0200)),
         ("alert:protocol_version",) + CLOSED)
    # RFC 8446 4.2.1: legacy_version is to be ignored beside supported_versions; OpenSSL refuses
    # anything at or below SSL 3.0 first
    case("legacy_version_0300_with_tls13", hs(client_hello(version=0x0300)),
         "alert:handshake_failure")
    case("legacy_version_0304_with_tls13", hs(client_hello(version=TLS13)), "hello:1.3")

    # -- extension framing: every default extension's own length wrong --
    exts = [t.ext_sni("localhost"), t.ext_groups([X25519, SECP256R1]), t.ext_ec_point_formats(),
            t.ext_sig_algs(), t.ext_alpn([ALPN]), t.ext_versions([TLS13, TLS12]),
            t.ext_key_share([(X25519, None)]), t.ext_psk_modes()]
    names = ["sni", "groups", "ec_point_formats", "sig_algs", "alpn", "versions", "key_share",
             "psk_modes"]
    for e, n in zip(exts, names):
        rest = [x for x in exts if x is not e]
        etype, elen = int.from_bytes(e[:2], "big"), int.from_bytes(e[2:4], "big")
        for delta, tag in ((1, "plus_one"), (-1, "minus_one"), (0x8000, "huge")):
            bad = e[:2] + t.u16(max(0, min(0xFFFF, elen + delta))) + e[4:]
            case(f"ext_{n}_length_{tag}", hs(client_hello(extensions=b"".join(rest) + bad)),
                 DECODE)
        # the inner vector's length one more than the body holds
        inner = e[4:]
        if n in ("ec_point_formats", "versions", "psk_modes"):
            bad_inner = t.u8(inner[0] + 1) + inner[1:]
        else:
            bad_inner = t.u16(int.from_bytes(inner[:2], "big") + 1) + inner[2:]
        # TLS 1.3 has no ec_point_formats: OpenSSL does not parse it there
        want = "hello:1.3" if n == "ec_point_formats" else DECODE
        ref = "alert:protocol_version" if n == "versions" else None
        case(f"ext_{n}_inner_length_overflow",
             hs(client_hello(extensions=b"".join(rest) + ext(etype, bad_inner))), want, ref=ref,
             half_close=want == DECODE)
        case(f"ext_{n}_empty_body",
             hs(client_hello(extensions=b"".join(rest) + ext(etype, b""))),
             (DECODE, "alert:missing_extension") if n in ("key_share", "groups", "sig_algs")
             else want, ref=ref, half_close=want == DECODE)
        if n not in ("key_share",):
            case(f"duplicate_ext_{n}",
                 hs(client_hello(extensions=b"".join(exts) + e)), ILLEGAL)
    case("duplicate_ext_unknown_type",
         hs(client_hello(extra=[ext(0x4242, b"a"), ext(0x4242, b"b")])), "hello:1.3")
    case("duplicate_ext_padding",
         hs(client_hello(extra=[t.ext_padding(10), t.ext_padding(10)])), ILLEGAL)
    case("duplicate_ext_key_share",
         hs(client_hello(extra=[t.ext_key_share([(X25519, None)])])), ILLEGAL)
    case("ext_ec_point_formats_inner_length_overflow_tls12",
         hs(client_hello(tls13=False, extensions=t.ext_groups([X25519]) + t.ext_sig_algs() +
                         ext(11, b"\x02\x00"))), DECODE)
    case("ext_ec_point_formats_empty_body_tls12",
         hs(client_hello(tls13=False, extensions=t.ext_groups([X25519]) + t.ext_sig_algs() +
                         ext(11, b""))), DECODE)
    case("ext_header_cut_short", hs(client_hello(extensions=t.ext_groups([X25519]) + b"\x00\x0a")),
         DECODE)
    case("ext_groups_odd_length", hs(client_hello(
        extensions=ext(t.EXT_GROUPS, t.vec16(b"\x00\x1d\x00")) + t.ext_sig_algs() +
        t.ext_versions([TLS13]) + t.ext_key_share([(X25519, None)]))), DECODE)
    case("ext_sig_algs_odd_length", hs(client_hello(
        extensions=t.ext_groups([X25519]) + ext(t.EXT_SIG_ALGS, t.vec16(b"\x04\x03\x08")) +
        t.ext_versions([TLS13]) + t.ext_key_share([(X25519, None)]))), DECODE)
    case("ext_versions_odd_length", hs(client_hello(
        extensions=t.ext_groups([X25519]) + t.ext_sig_algs() +
        ext(t.EXT_SUPPORTED_VERSIONS, t.vec8(b"\x03\x04\x03")) +
        t.ext_key_share([(X25519, None)]))), DECODE, ref="alert:protocol_version")

    # -- compression methods --
    for tls13, v in ((False, "tls12"), (True, "tls13")):
        case(f"compression_empty_{v}", hs(client_hello(tls13=tls13, compression=b"")), DECODE)
        case(f"compression_deflate_only_{v}", hs(client_hello(tls13=tls13, compression=b"\x01")),
             ILLEGAL if tls13 else DECODE, ref=DECODE if tls13 else None)
        case(f"compression_many_without_null_{v}",
             hs(client_hello(tls13=tls13, compression=bytes(range(1, 40)))),
             ILLEGAL if tls13 else DECODE, ref=DECODE if tls13 else None)
        case(f"compression_length_past_end_{v}",
             hs(client_hello(tls13=tls13, raw_compression=b"\x05\x00")), DECODE)
    case("compression_null_then_deflate_tls12",
         hs(client_hello(tls13=False, compression=b"\x00\x01")), "hello:1.2")
    case("compression_deflate_then_null_tls12",
         hs(client_hello(tls13=False, compression=b"\x01\x00")), "hello:1.2")
    case("compression_null_then_deflate_tls13", hs(client_hello(compression=b"\x00\x01")),
         ILLEGAL)
    case("compression_deflate_then_null_tls13", hs(client_hello(compression=b"\x01\x00")),
         ILLEGAL)
    case("compression_null_twice_tls13", hs(client_hello(compression=b"\x00\x00")), ILLEGAL)
    case("compression_255_nulls_tls13", hs(client_hello(compression=b"\x00" * 255)), ILLEGAL)
    case("compression_255_nulls_tls12", hs(client_hello(tls13=False, compression=b"\x00" * 255)),
         "hello:1.2")

    # -- versions and downgrade protection (RFC 8446 sections 4.1.3, 4.2.1, appendix D) --
    case("versions_tls13_only", hs(client_hello(extra=[], extensions=t.ext_groups([X25519]) +
                                                t.ext_sig_algs() + t.ext_versions([TLS13]) +
                                                t.ext_key_share([(X25519, None)]))),
         "hello:1.3", half_close=False)
    case("versions_tls12_only_ext", hs(client_hello(tls13=False, extra=[t.ext_versions([TLS12])])),
         "hello:1.2", check=downgrade(t.DOWNGRADE_TLS12), half_close=False)
    case("versions_tls12_first_then_13",
         hs(client_hello(extensions=t.ext_groups([X25519]) + t.ext_sig_algs() +
                         t.ext_versions([TLS12, TLS13]) + t.ext_key_share([(X25519, None)]))),
         "hello:1.3", half_close=False)
    case("versions_tls11_only", hs(client_hello(tls13=False, extra=[t.ext_versions([TLS11])])),
         "alert:protocol_version")
    case("versions_draft_only", hs(client_hello(extensions=t.ext_groups([X25519]) +
                                                t.ext_sig_algs() + t.ext_versions([0x7F1C]) +
                                                t.ext_key_share([(X25519, None)]))),
         "alert:protocol_version")
    case("versions_empty_list", hs(client_hello(extensions=t.ext_groups([X25519]) +
                                                t.ext_sig_algs() + t.ext_versions([]) +
                                                t.ext_key_share([(X25519, None)]))), DECODE,
         ref="alert:protocol_version")
    case("max_tls12_sees_sentinel", hs(client_hello(tls13=False, alpn=[ALPN])), "hello:1.2",
         check=downgrade(t.DOWNGRADE_TLS12), half_close=False)
    case("fallback_scsv_max_tls12",
         hs(client_hello(tls13=False, suites=t.TLS12_SUITES + [t.TLS_FALLBACK_SCSV])),
         "alert:inappropriate_fallback")
    case("fallback_scsv_with_tls13", hs(client_hello(suites=t.TLS13_SUITES + t.TLS12_SUITES +
                                                     [t.TLS_FALLBACK_SCSV])), "hello:1.3",
         half_close=False)
    case("tls13_no_sig_algs", hs(client_hello(extensions=t.ext_groups([X25519]) +
                                              t.ext_versions([TLS13]) +
                                              t.ext_key_share([(X25519, None)]))),
         "alert:missing_extension")
    case("tls13_no_groups", hs(client_hello(extensions=t.ext_sig_algs() +
                                            t.ext_versions([TLS13]) +
                                            t.ext_key_share([(X25519, None)]))),
         "alert:missing_extension")
    case("tls13_no_key_share", hs(client_hello(extensions=t.ext_groups([X25519]) +
                                               t.ext_sig_algs() + t.ext_versions([TLS13]))),
         "alert:missing_extension")
    # OpenSSL chooses the version before the suite: 1.3, then no suite for it
    case("tls13_no_tls13_suites", hs(client_hello(suites=t.TLS12_SUITES)),
         "alert:handshake_failure")

    # -- key shares (RFC 8446 section 4.2.8) --
    case("key_share_duplicate_x25519",
         hs(client_hello(key_shares=[(X25519, None), (X25519, None)])), ILLEGAL, ref="hello:1.3")
    case("key_share_duplicate_p256",
         hs(client_hello(key_shares=[(SECP256R1, None), (SECP256R1, None)])), ILLEGAL,
         ref="hello:1.3")
    case("key_share_duplicate_not_adjacent",
         hs(client_hello(key_shares=[(X25519, None), (SECP256R1, None), (X25519, None)])),
         ILLEGAL, ref="hello:1.3")
    case("key_share_group_not_in_groups",
         hs(client_hello(groups=[SECP256R1], key_shares=[(X25519, None)])), ILLEGAL)
    case("key_share_x25519_31_bytes", hs(client_hello(key_shares=[(X25519, b"\x09" * 31)])),
         ILLEGAL)
    case("key_share_x25519_33_bytes", hs(client_hello(key_shares=[(X25519, b"\x09" * 33)])),
         ILLEGAL)
    case("key_share_x25519_empty", hs(client_hello(key_shares=[(X25519, b"")])),
         (ILLEGAL, DECODE))
    case("key_share_x25519_all_zero", hs(client_hello(key_shares=[(X25519, b"\x00" * 32)])),
         (ILLEGAL, "alert:handshake_failure"))
    case("key_share_p256_not_on_curve",
         hs(client_hello(key_shares=[(SECP256R1, b"\x04" + b"\x01" * 64)])), ILLEGAL)
    case("key_share_p256_compressed",
         hs(client_hello(key_shares=[(SECP256R1, b"\x02" + b"\x01" * 32)])), ILLEGAL)
    case("key_share_entry_cut_short", hs(client_hello(extensions=t.ext_groups([X25519]) +
                                                      t.ext_sig_algs() + t.ext_versions([TLS13]) +
                                                      ext(t.EXT_KEY_SHARE,
                                                          t.vec16(b"\x00\x1d\x00\x20" + b"\x09" *
                                                                  10)))), DECODE)

    # -- server_name (RFC 6066 section 3), one certificate and no names configured --
    def sni_raw(body):
        return hs(client_hello(extra=[ext(t.EXT_SNI, body)]))
    case("sni_empty_name", sni_raw(t.vec16(b"\x00" + t.vec16(b""))), DECODE, ref="hello:1.3")
    case("sni_empty_list", sni_raw(t.vec16(b"")), DECODE)
    case("sni_empty_extension", sni_raw(b""), DECODE)
    case("sni_name_type_1", sni_raw(t.vec16(b"\x01" + t.vec16(b"localhost"))), DECODE)
    case("sni_two_names", sni_raw(t.vec16(b"\x00" + t.vec16(b"localhost") + b"\x00" +
                                          t.vec16(b"example.com"))), DECODE)
    case("sni_list_length_short", sni_raw(t.u16(5) + b"\x00" + t.vec16(b"localhost")), DECODE)
    case("sni_name_length_long", sni_raw(t.vec16(b"\x00" + t.u16(50) + b"localhost")), DECODE)
    case("sni_nul_in_name", sni_raw(t.vec16(b"\x00" + t.vec16(b"local\x00host"))),
         "alert:unrecognized_name")
    case("sni_256_bytes", sni_raw(t.vec16(b"\x00" + t.vec16(b"a" * 256))),
         "alert:unrecognized_name")
    case("sni_255_bytes", sni_raw(t.vec16(b"\x00" + t.vec16(b"a" * 255))), "hello:1.3",
         half_close=False)
    case("sni_unknown_name", hs(client_hello(sni="unknown.example")), "hello:1.3",
         half_close=False)
    case("sni_upper_case", hs(client_hello(sni="LOCALHOST")), "hello:1.3", half_close=False)
    case("sni_trailing_dot", hs(client_hello(sni="localhost.")), "hello:1.3", half_close=False)
    case("sni_ip_literal", hs(client_hello(sni="127.0.0.1")), "hello:1.3", half_close=False)
    case("sni_tls12_empty_name",
         hs(client_hello(tls13=False, extra=[ext(t.EXT_SNI, t.vec16(b"\x00" + t.vec16(b"")))])),
         DECODE, ref="hello:1.2")

    # -- ALPN (RFC 7301 section 3.2) --
    case("alpn_no_overlap_tls13", hs(client_hello(alpn=["h2", "spdy/3"])),
         "alert:no_application_protocol")
    case("alpn_no_overlap_tls12", hs(client_hello(tls13=False, alpn=["h2"])),
         "alert:no_application_protocol")
    case("alpn_overlap_last", hs(client_hello(tls13=False, alpn=["h2", "x" * 200, ALPN])),
         "hello:1.2",
         check=alpn_is(ALPN), half_close=False)
    case("alpn_empty_protocol_name", hs(client_hello(alpn=["", ALPN])), DECODE)
    case("alpn_empty_list", hs(client_hello(extra=[ext(t.EXT_ALPN, t.vec16(b""))])), DECODE)
    case("alpn_name_overruns_list",
         hs(client_hello(extra=[ext(t.EXT_ALPN, t.vec16(b"\x09http/1.1"))])), DECODE)
    case("alpn_case_differs", hs(client_hello(alpn=["HTTP/1.1"])),
         "alert:no_application_protocol")
    case("alpn_prefix_only", hs(client_hello(alpn=["http/1."])), "alert:no_application_protocol")

    # -- padding (RFC 7685) and big hellos --
    m = client_hello()
    for n in (0, 1, 200, 512):
        case(f"padding_{n}_zeros", hs(client_hello(extra=[t.ext_padding(n)])), "hello:1.3",
             check=no_ext(t.EXT_PADDING), half_close=False)
    case("padding_nonzero", hs(client_hello(extra=[t.ext_padding(100, 0xAA)])), ILLEGAL,
         ref="hello:1.3")
    case("padding_one_nonzero_byte",
         hs(client_hello(extra=[ext(t.EXT_PADDING, b"\x00" * 50 + b"\x01")])), ILLEGAL,
         ref="hello:1.3")
    case("padding_tls12_nonzero", hs(client_hello(tls13=False, extra=[t.ext_padding(8, 0xFF)])),
         ILLEGAL, ref="hello:1.2")
    case("padding_4000", hs(client_hello(extra=[t.ext_padding(4000)])), "hello:1.3",
         half_close=False)
    case("padding_8000", hs(client_hello(extra=[t.ext_padding(8000)])), ILLEGAL, ref="hello:1.3")
    case("padding_16000_one_record", hs(client_hello(extra=[t.ext_padding(16000)])), ILLEGAL,
         ref="hello:1.3")
    case("padding_60000_in_records", hs(client_hello(extra=[t.ext_padding(60000)]), size=16384),
         ILLEGAL, ref="hello:1.3")
    # OpenSSL does not show unknown extensions to the ClientHello callback: not ours to bound
    case("unknown_ext_60000_in_records",
         hs(client_hello(extra=[ext(0x4242, b"\x00" * 60000)]), size=16384), "hello:1.3",
         half_close=False)
    case("hello_length_over_131396", record(HANDSHAKE, b"\x01" + t.u24(131397) + m[4:]),
         ILLEGAL)

    # -- the record layer --
    case("record_app_data_first", record(t.APPLICATION_DATA, b"GET / HTTP/1.1\r\n\r\n"),
         "alert:unexpected_message")
    case("record_ccs_first", record(t.CHANGE_CIPHER_SPEC, b"\x01"), "alert:unexpected_message")
    case("record_heartbeat_first", record(t.HEARTBEAT, b"\x01\x00\x10" + b"\x00" * 16),
         "alert:unexpected_message")
    case("record_type_99", record(99, b"\x00"), "alert:unexpected_message")
    case("record_type_0", record(0, b"\x00"), "alert:unexpected_message")
    case("record_alert_warning_first", record(t.ALERT, b"\x01\x00"),
         "alert:unexpected_message")
    case("record_alert_fatal_first", record(t.ALERT, b"\x02\x28"), "alert:unexpected_message")
    case("record_version_0200", record(HANDSHAKE, m, version=0x0200), CLOSED + ("alert:protocol_version",))
    case("record_version_0400", record(HANDSHAKE, m, version=0x0400),
         CLOSED + ("alert:protocol_version", "hello:1.3"))
    case("record_length_16385", record(HANDSHAKE, client_hello(extra=[t.ext_padding(16385 - len(m) - 4)])),
         "alert:record_overflow")
    case("record_length_18433_header", record(HANDSHAKE, b"\x00" * 10, length=18433),
         "alert:record_overflow")
    case("record_length_ffff_header", record(HANDSHAKE, b"\x00" * 10, length=0xFFFF),
         "alert:record_overflow")
    # RFC 8446 5.1 forbids sending them; OpenSSL 3.0 takes them
    case("record_zero_length_handshake_first", record(HANDSHAKE, b"") + record(HANDSHAKE, m),
         "hello:1.3", half_close=False)
    case("record_zero_length_handshake_between",
         record(HANDSHAKE, m[:50]) + record(HANDSHAKE, b"") + record(HANDSHAKE, m[50:]),
         "hello:1.3", half_close=False)
    case("record_zero_length_app_data_first", record(t.APPLICATION_DATA, b""),
         "alert:unexpected_message")
    case("record_interleaved_alert_in_hello",
         record(HANDSHAKE, m[:50]) + record(t.ALERT, b"\x01\x00") + record(HANDSHAKE, m[50:]),
         CLOSED + ("alert:unexpected_message",))
    case("record_interleaved_ccs_in_hello",
         record(HANDSHAKE, m[:50]) + record(t.CHANGE_CIPHER_SPEC, b"\x01") +
         record(HANDSHAKE, m[50:]), "alert:unexpected_message")
    case("handshake_type_server_hello_first", hs(t.handshake(t.SERVER_HELLO, m[4:])),
         "alert:unexpected_message")
    case("handshake_type_finished_first", hs(t.handshake(20, b"\x00" * 32)),
         "alert:unexpected_message")
    case("handshake_type_99_first", hs(t.handshake(99, b"")), "alert:unexpected_message")
    case("handshake_hello_request_first", hs(t.handshake(0, b"")), "alert:unexpected_message")
    case("two_hellos_in_one_record", record(HANDSHAKE, m + m), "alert:unexpected_message",
         ref=("alert:unexpected_message", "hello:1.3"))
    case("http_request_on_tls_port", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", CLOSED + ("junk",))
    case("null_bytes", b"\x00" * 64, CLOSED + ("alert:unexpected_message",))

    # -- renegotiation_info and SCSV (RFC 5746) on the first hello --
    case("reneg_info_empty_tls12", hs(client_hello(tls13=False,
                                                   extra=[t.ext_renegotiation_info()])),
         "hello:1.2", half_close=False)
    case("reneg_info_not_empty_tls12",
         hs(client_hello(tls13=False, extra=[t.ext_renegotiation_info(b"\x01" * 12)])),
         "alert:handshake_failure")
    case("reneg_info_not_empty_tls13",
         hs(client_hello(extra=[t.ext_renegotiation_info(b"\x01" * 12)])), "hello:1.3",
         half_close=False)   # TLS 1.3 has no renegotiation_info: OpenSSL ignores it
    case("reneg_scsv_and_info_tls12",
         hs(client_hello(tls13=False, suites=t.TLS12_SUITES + [0x00FF],
                         extra=[t.ext_renegotiation_info()])), "hello:1.2")
    case("reneg_info_bad_length",
         hs(client_hello(tls13=False, extra=[ext(t.EXT_RENEGOTIATION_INFO, b"\x05\x00")])),
         (DECODE, "alert:handshake_failure"))

    # -- SSL 2.0-compatible hello (RFC 8446 appendix D.5: not recommended) --
    # OpenSSL takes it, then finds no signature algorithm but SHA-1 (v2 hellos have no
    # extensions)
    case("sslv2_hello_tls12", t.sslv2_hello(TLS12), "alert:protocol_version",
         ref="alert:handshake_failure")
    case("sslv2_hello_tls10", t.sslv2_hello(TLS10), ("alert:protocol_version",) + CLOSED)
    case("sslv2_hello_tls13", t.sslv2_hello(TLS13), ("alert:protocol_version",) + CLOSED,
         ref=("alert:handshake_failure", "alert:protocol_version"))
    case("sslv2_hello_sslv2", t.sslv2_hello(0x0002), ("alert:protocol_version",) + CLOSED)
    case("sslv2_length_bad", t.u16(0x8000 | 3) + b"\x01\x03\x03", CLOSED +
         ("alert:decode_error", "alert:protocol_version", "alert:unexpected_message"))

    # -- other extensions --
    case("heartbeat_ext_tls13", hs(client_hello(extra=[t.ext_heartbeat()])), "hello:1.3",
         check=no_ext(t.EXT_HEARTBEAT), half_close=False)
    case("heartbeat_ext_tls12", hs(client_hello(tls13=False, extra=[t.ext_heartbeat(2)])),
         "hello:1.2", check=no_ext(t.EXT_HEARTBEAT), half_close=False)
    case("status_request_tls12",
         hs(client_hello(tls13=False, extra=[ext(t.EXT_STATUS_REQUEST, b"\x01\x00\x00\x00\x00")])),
         "hello:1.2", half_close=False)
    case("early_data_without_psk", hs(client_hello(extra=[ext(t.EXT_EARLY_DATA, b"")])),
         ("hello:1.3", ILLEGAL), half_close=False)
    case("cookie_in_first_hello", hs(client_hello(extra=[ext(t.EXT_COOKIE, t.vec16(b"x" * 16))])),
         ("hello:1.3", ILLEGAL), half_close=False)
    psk = ext(t.EXT_PSK, t.vec16(t.vec16(b"\x01" * 40) + b"\x00\x00\x00\x00") +
              t.vec16(t.vec8(b"\x00" * 32)))
    case("psk_unknown_identity_last", hs(client_hello(extra=[psk])), "hello:1.3",
         half_close=False)
    case("psk_not_last", hs(client_hello(extra=[psk, t.ext_padding(4)])), ILLEGAL)
    case("psk_without_modes", hs(client_hello(extensions=t.ext_groups([X25519]) +
                                              t.ext_sig_algs() + t.ext_versions([TLS13]) +
                                              t.ext_key_share([(X25519, None)]) + psk)),
         ("hello:1.3", "alert:missing_extension"), half_close=False)
    # OpenSSL stops reading pre_shared_key at the first identity it does not know
    case("psk_binders_missing",
         hs(client_hello(extra=[ext(t.EXT_PSK, t.vec16(t.vec16(b"\x01" * 8) + b"\0\0\0\0"))])),
         "hello:1.3", half_close=False)
    case("ec_point_formats_without_uncompressed_tls12",
         hs(client_hello(tls13=False, extensions=t.ext_groups([X25519, SECP256R1]) +
                         t.ext_sig_algs() + t.ext_ec_point_formats((1,)))),
         ILLEGAL, ref="alert:handshake_failure")
    case("sig_algs_none_usable_tls13",
         hs(client_hello(extensions=t.ext_groups([X25519]) + t.ext_sig_algs([0x0201, 0x0202]) +
                         t.ext_versions([TLS13]) + t.ext_key_share([(X25519, None)]))),
         "alert:handshake_failure")
    case("ems_with_body_tls12", hs(client_hello(tls13=False, extra=[ext(t.EXT_EMS, b"\x00")])),
         DECODE)
    case("session_ticket_garbage_tls12",
         hs(client_hello(tls13=False, extra=[ext(t.EXT_SESSION_TICKET, b"\x42" * 100)])),
         "hello:1.2", half_close=False)


def run_cases(port):
    only = sys.argv[1:]
    seen = {}
    t0 = time.monotonic()
    for name, data, want, ref, check, half_close in CASES:
        if only and not any(o in name for o in only):
            continue
        accept = ref if REFERENCE and ref is not None else want
        try:
            r = t.exchange(port, data, timeout=2 * SLOW, half_close=half_close)
        except OSError as e:
            fail(name, f"could not talk to the server: {e}")
            continue
        got = outcome(r)
        seen[name] = got
        ok = got in accept
        why = ""
        if ok and check and r.kind == "hello":
            try:
                check(r)
            except AssertionError as e:
                ok, why = False, str(e)
        if OBSERVE:
            print(f"  {name:48} {got}")
        if ok:
            results["passed"] += 1
        else:
            fail(name, f"got {got}{' (' + why + ')' if why else ''}, want {' or '.join(accept)}")
    print(f"  {len(seen)} raw cases in {time.monotonic() - t0:.2f} s")
    return seen


# ---- clients nobody here wrote -----------------------------------------------------------------

def check_tool(name, ok, detail=""):
    if ok:
        print(f"ok   {name}", flush=True)
        results["passed"] += 1
    else:
        fail(name, detail)


def tool_cases(port, ca):
    only = sys.argv[1:]

    def wanted(n):
        return not only or any(o in n for o in only)

    def s_client(*args, stdin=b""):
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                               "-servername", "localhost", "-CAfile", ca] + list(args),
                              input=stdin, capture_output=True, timeout=20 * SLOW)

    if wanted("s_client_tls11"):
        r = s_client("-tls1_1")
        check_tool("s_client_tls11", r.returncode != 0 and b"CONNECTED" in r.stdout,
                   r.stderr[-300:])
    if wanted("s_client_fallback_scsv"):
        r = s_client("-no_tls1_3", "-fallback_scsv")
        check_tool("s_client_fallback_scsv", b"inappropriate fallback" in r.stderr,
                   r.stderr[-300:])
    if wanted("s_client_alpn_no_overlap"):
        r = s_client("-alpn", "h2")
        check_tool("s_client_alpn_no_overlap",
                   r.returncode != 0 and b"no application protocol" in r.stderr, r.stderr[-300:])
    if wanted("s_client_renegotiation_refused"):
        # R asks for a renegotiation; a refusal is a no_renegotiation warning or the end.
        r = s_client("-tls1_2", stdin=b"R\n")
        out = r.stdout + r.stderr
        print(f"  s_client R: {'refused' if b'no renegotiation' in out else 'no answer seen'}")
        check_tool("s_client_renegotiation_refused",
                   b"RENEGOTIATING" in out and out.count(b"verify return:1") <= 2, out[-400:])
    if wanted("s_client_tls12_sigalgs_sha1_only"):
        r = s_client("-tls1_2", "-sigalgs", "RSA+SHA1:ECDSA+SHA1")
        check_tool("s_client_tls12_sigalgs_sha1_only", r.returncode != 0, r.stderr[-300:])
    if wanted("s_client_tls13_ffdhe_only"):
        r = s_client("-tls1_3", "-groups", "ffdhe2048")
        check_tool("s_client_tls13_ffdhe_only", r.returncode != 0, r.stderr[-300:])
    if wanted("s_client_tls12_cbc_only"):
        r = s_client("-tls1_2", "-cipher", "AES128-SHA", stdin=b"")
        check_tool("s_client_tls12_cbc_only", r.returncode != 0, r.stderr[-300:])
    if wanted("s_client_no_sni_ok"):
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-noservername",
                            "-CAfile", ca, "-verify_return_error"], input=b"",
                           capture_output=True, timeout=20 * SLOW)
        check_tool("s_client_no_sni_ok", b"Verify return code: 0" in r.stdout, r.stderr[-300:])

    if shutil.which("gnutls-cli"):
        def gnutls(*args):
            return subprocess.run(["gnutls-cli", "--x509cafile", ca, "--port", str(port)] +
                                  list(args) + ["localhost"], input=b"", capture_output=True,
                                  timeout=20 * SLOW)
        if wanted("gnutls_tls12"):
            r = gnutls("--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2")
            check_tool("gnutls_tls12", b"(TLS1.2" in r.stdout, r.stdout[-300:])
        if wanted("gnutls_tls13"):
            r = gnutls("--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.3")
            check_tool("gnutls_tls13", b"(TLS1.3" in r.stdout, r.stdout[-300:])
        if wanted("gnutls_tls11_refused"):
            r = gnutls("--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.1")
            check_tool("gnutls_tls11_refused", r.returncode != 0 and b"(TLS1.1" not in r.stdout,
                       r.stdout[-300:])
        if wanted("gnutls_alpn_no_overlap"):
            r = gnutls("--alpn", "h2", "--alpn", "spdy/3")
            out = r.stdout + r.stderr
            check_tool("gnutls_alpn_no_overlap",
                       r.returncode != 0 and (b"[120]" in out or b"application protocol" in out),
                       out[-300:])
        if wanted("gnutls_dumbfw_padding"):
            r = gnutls("--priority", "NORMAL:%DUMBFW")
            check_tool("gnutls_dumbfw_padding", r.returncode == 0, r.stderr[-300:])
        if wanted("gnutls_no_sni_ok"):
            r = subprocess.run(["gnutls-cli", "--x509cafile", ca, "--port", str(port),
                                "--disable-sni", "localhost"], input=b"", capture_output=True,
                               timeout=20 * SLOW)
            check_tool("gnutls_no_sni_ok", r.returncode == 0, r.stderr[-300:])
    else:
        print("  (gnutls-cli not installed: its cases skipped)")

    def py(name, fn):
        if not wanted(name):
            return
        try:
            fn()
            check_tool(name, True)
        except AssertionError as e:
            check_tool(name, False, str(e))

    def py_connect(ctx, host="localhost"):
        with socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                return s.version(), s.selected_alpn_protocol()

    def py_alpn_no_overlap():
        c = ssl.create_default_context(cafile=ca)
        c.set_alpn_protocols(["h2"])
        try:
            py_connect(c)
        except ssl.SSLError as e:
            assert "NO APPLICATION PROTOCOL" in str(e).upper().replace("_", " "), e
            return
        raise AssertionError("handshake succeeded without a common ALPN protocol")

    def py_tls12_only():
        c = ssl.create_default_context(cafile=ca)
        c.maximum_version = ssl.TLSVersion.TLSv1_2
        c.set_alpn_protocols([ALPN])
        assert py_connect(c) == ("TLSv1.2", ALPN)

    def py_tls11_refused():
        warnings.simplefilter("ignore", DeprecationWarning)
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(ca)
        try:
            c.minimum_version = c.maximum_version = ssl.TLSVersion.TLSv1_1
            c.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            return   # this python refuses to speak TLS 1.1 at all
        try:
            py_connect(c)
        except (ssl.SSLError, OSError):
            return
        raise AssertionError("TLS 1.1 accepted")

    def py_no_sni():
        c = ssl.create_default_context(cafile=ca)
        c.check_hostname = False
        assert py_connect(c, host=None)[0] == "TLSv1.3"

    py("python_alpn_no_overlap", py_alpn_no_overlap)
    py("python_tls12_only", py_tls12_only)
    py("python_tls11_refused", py_tls11_refused)
    py("python_no_sni", py_no_sni)


def main():
    build_cases()
    names = [c[0] for c in CASES]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"case names used twice: {dup}"
    with tempfile.TemporaryDirectory() as tmp:
        srv = Tlsloop(tmp)
        target = None
        try:
            if REFERENCE:
                target = Reference(srv.cert, srv.key, srv.ca)
                port = target.port
                print(f"  REFERENCE=1: openssl s_server on port {port}")
            else:
                port = srv.port
            run_cases(port)
            tool_cases(port, srv.ca)
            if not REFERENCE:
                # The handshake-failure lines name the port the listener is bound to.
                log = srv.log_text()
                m = re.search(r"handshake failed from \S+ on (\S+):", log)
                check_tool("failure_log_names_bound_port",
                           m is not None and m.group(1) == f"127.0.0.1:{srv.port}",
                           m.group(0) if m else log[-500:])
                # and the server still serves after all that.
                r = t.exchange(port, hs(client_hello()), timeout=5 * SLOW)
                check_tool("still_serves_after_the_cases", outcome(r) == "hello:1.3", r)
        finally:
            if target:
                target.stop()
            if srv.stop() != 0:
                fail("tlsloop_exit", "tlsloop serve did not exit cleanly")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
