"""Assertions on the business's answer SDP (whatsapp-calling.md §6.3)."""
from __future__ import annotations

import re
import unittest


def media_lines(sdp: str) -> list[str]:
    lines = sdp.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("m="))
    return lines[start:]


def assert_whatsapp_answer(test: unittest.TestCase, answer: str, offer: str) -> None:
    """The answer Meta needs: CRLF text, one audio m-line echoing mid "audio",
    sendrecv, DTLS client, exactly one sha-256 fingerprint, candidates inline,
    the offer's Opus PT, full ICE."""
    test.assertTrue(answer.startswith("v=0\r\n"), "answer must start with v=0")
    test.assertTrue(answer.endswith("\r\n"), "answer must end with CRLF")
    test.assertIsNone(re.search(r"(?<!\r)\n", answer), "answer has bare LF line endings")
    test.assertNotIn("\\r\\n", answer)
    lines = answer.split("\r\n")
    m_lines = [line for line in lines if line.startswith("m=")]
    test.assertEqual(len(m_lines), 1, f"expected one m-line, got {m_lines}")
    test.assertTrue(m_lines[0].startswith("m=audio "), m_lines[0])
    test.assertIn("UDP/TLS/RTP/SAVPF", m_lines[0])
    offered_opus = re.search(r"a=rtpmap:(\d+) opus/48000/2", offer, re.I).group(1)
    test.assertIn(offered_opus, m_lines[0].split()[3:], "answer must use the offer's Opus PT")
    # Encoding names are case-insensitive (RFC 4566 §6); webrtcbin writes OPUS.
    test.assertRegex(answer, rf"\r\na=rtpmap:{offered_opus} (?i:opus)/48000/2\r\n")
    media = media_lines(answer)
    test.assertIn("a=mid:audio", media)
    test.assertRegex(answer, r"\r\na=group:BUNDLE audio\r\n")
    directions = [l for l in media if l in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")]
    test.assertEqual(directions, ["a=sendrecv"])
    test.assertEqual([l for l in lines if l.startswith("a=setup:")], ["a=setup:active"])
    fingerprints = [l for l in lines if l.startswith("a=fingerprint:")]
    test.assertEqual(len(fingerprints), 1, fingerprints)
    test.assertRegex(fingerprints[0], r"^a=fingerprint:sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$")
    candidates = [l for l in lines if l.startswith("a=candidate:")]
    test.assertGreater(len(candidates), 0, "candidates must be inline")
    test.assertTrue(all(" udp " in c.lower() or " tcp " in c.lower() for c in candidates))
    test.assertNotIn("a=ice-lite", lines, "the business must be a full ICE agent")
    test.assertTrue(any(l.startswith("a=ice-ufrag:") for l in lines))
    test.assertTrue(any(l.startswith("a=ice-pwd:") for l in lines))
