"""Pure, hardened incremental parser for one XMPP stream (RFC 6120 §4, §11.1).

``StreamParser.feed(data)`` returns a list of events — :class:`StreamOpen`,
:class:`Stanza` (a complete first-level child as an Element), :class:`StreamClose`
— or raises :class:`StreamError` with the RFC 6120 §4.9.3 condition to send.

Refused outright (``restricted-xml``): DOCTYPE (so no entity declarations,
no billion laughs, no external entities), processing instructions, comments.
Refused as ``policy-violation``: a stanza over ``max_stanza_bytes``, nesting
deeper than ``max_depth`` (the stream element is depth 1), more than
``max_stanza_bytes`` of anything between stanzas, or more than
``max_whitespace_bytes`` of whitespace (keepalives, RFC 6120 §4.6.1) since the
stream header or the last complete stanza: a live client sends a stanza at least
when it answers a ping, so a bound per gap is a bound per ping interval. Malformed XML or invalid
UTF-8 gives ``not-well-formed``; a declared encoding other than UTF-8 gives
``unsupported-encoding``; a wrong stream namespace ``invalid-namespace``.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


class StreamError(Exception):
    """A stream-level error: close the stream with ``<condition/>`` and ``text``."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


@dataclass(frozen=True)
class StreamOpen:
    """The peer's stream header; ``attrs`` without namespaces (to, from, version, ...)."""

    attrs: dict[str, str]
    default_ns: str | None


@dataclass(frozen=True)
class Stanza:
    element: ET.Element


@dataclass(frozen=True)
class StreamClose:
    pass


StreamEvent = StreamOpen | Stanza | StreamClose


def _clark(name: str) -> str:
    ns, sep, local = name.rpartition("}")
    return f"{{{ns}}}{local}" if sep else local


class StreamParser:
    """One parser per stream (a new one after each stream restart)."""

    def __init__(
        self, max_stanza_bytes: int = 65536, max_depth: int = 16, max_whitespace_bytes: int = 4096
    ) -> None:
        self.max_stanza_bytes = max_stanza_bytes
        self.max_depth = max_depth
        self.max_whitespace_bytes = max_whitespace_bytes
        self._whitespace = 0  # whitespace bytes since the stream header or the last stanza
        # Our own intern dict, cleared between stanzas, so a stream cannot grow it
        # without bound by sending ever new element and attribute names.
        self._intern: dict[str, str] = {}
        self._names: dict[str, str] = {}  # expat name -> Clark name, cleared with _intern
        p = expat.ParserCreate(encoding="UTF-8", namespace_separator="}", intern=self._intern)
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.buffer_text = True
        p.buffer_size = 1024  # per-stream memory; larger texts just take more callbacks
        p.ordered_attributes = False
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        p.StartNamespaceDeclHandler = self._nsdecl
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.UnparsedEntityDeclHandler = self._unparsed
        p.NotationDeclHandler = self._notation
        p.ExternalEntityRefHandler = self._external
        p.ProcessingInstructionHandler = self._pi
        p.CommentHandler = self._comment
        p.XmlDeclHandler = self._xmldecl
        p.SkippedEntityHandler = self._skipped
        self._p = p
        self._events: list[StreamEvent] = []
        self._stack: list[ET.Element] = []
        self._depth = 0
        self._fed = 0  # bytes fed so far
        self._mark = 0  # byte index where the current stanza (or inter-stanza gap) began
        self._default_ns: str | None = None
        self._opened = False
        self._closed = False
        self._failed = False

    # ------------------------------------------------------------- handlers

    def _limit(self) -> None:
        if self._p.CurrentByteIndex - self._mark > self.max_stanza_bytes:
            raise StreamError(
                "policy-violation", f"stanza larger than {self.max_stanza_bytes} bytes"
            )

    def _nsdecl(self, prefix: str | None, uri: str) -> None:
        if self._depth == 0 and prefix is None:
            self._default_ns = uri

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self._depth += 1
        if self._depth == 1:
            if name != f"{NS_STREAMS}}}stream":
                if name.endswith("}stream") or name == "stream":
                    raise StreamError("invalid-namespace", "stream element not in streams ns")
                raise StreamError("bad-format", f"expected <stream:stream>, got <{_clark(name)}>")
            self._opened = True
            plain = {}
            for k, v in attrs.items():
                if k == "http://www.w3.org/XML/1998/namespace}lang":
                    plain["xml:lang"] = v
                elif "}" not in k:
                    plain[k] = v
            self._events.append(StreamOpen(plain, self._default_ns))
            self._mark = self._p.CurrentByteIndex
            self._whitespace = 0
            return
        if self._depth > self.max_depth:
            raise StreamError("policy-violation", f"elements nested deeper than {self.max_depth}")
        if self._depth == 2:
            self._mark = self._p.CurrentByteIndex
        self._limit()
        names = self._names
        tag = names.get(name)
        if tag is None:
            tag = names[name] = _clark(name)
        if attrs:
            a = {}
            for k, v in attrs.items():
                ck = names.get(k)
                if ck is None:
                    ck = names[k] = _clark(k)
                a[ck] = v
            el = ET.Element(tag, a)
        else:
            el = ET.Element(tag)
        if self._stack:
            self._stack[-1].append(el)
        self._stack.append(el)

    def _end(self, name: str) -> None:
        del name
        self._depth -= 1
        if self._depth == 0:
            self._closed = True
            self._events.append(StreamClose())
            return
        el = self._stack.pop()
        self._limit()
        if self._depth == 1:
            self._events.append(Stanza(el))
            self._mark = self._p.CurrentByteIndex
            self._whitespace = 0
            if len(self._intern) > 256:
                self._intern.clear()
                self._names.clear()

    def _text(self, data: str) -> None:
        if self._failed:
            return  # pyexpat flushes buffered text when close() drops the handler
        self._limit()
        if self._depth <= 1:
            if data.strip():
                raise StreamError("bad-format", "text outside stanzas")
            # whitespace keepalives are fine, a bounded amount of them between stanzas
            self._whitespace += len(data)  # XML whitespace is ASCII: characters = bytes
            if self._whitespace > self.max_whitespace_bytes:
                raise StreamError(
                    "policy-violation",
                    f"more than {self.max_whitespace_bytes} bytes of whitespace between stanzas",
                )
            self._mark = self._p.CurrentByteIndex
            return
        el = self._stack[-1]
        if len(el):
            last = el[-1]
            last.tail = (last.tail or "") + data
        else:
            el.text = (el.text or "") + data

    def _doctype(self, *args: object) -> None:
        raise StreamError("restricted-xml", "DOCTYPE is not allowed in XMPP")

    def _entity(self, *args: object) -> None:
        raise StreamError("restricted-xml", "entity declarations are not allowed in XMPP")

    def _unparsed(self, *args: object) -> None:
        raise StreamError("restricted-xml", "entity declarations are not allowed in XMPP")

    def _notation(self, *args: object) -> None:
        raise StreamError("restricted-xml", "notation declarations are not allowed in XMPP")

    def _external(self, *args: object) -> int:
        raise StreamError("restricted-xml", "external entities are not allowed in XMPP")

    def _skipped(self, *args: object) -> None:
        raise StreamError("restricted-xml", "entity references are not allowed in XMPP")

    def _pi(self, target: str, data: str) -> None:
        raise StreamError("restricted-xml", "processing instructions are not allowed in XMPP")

    def _comment(self, data: str) -> None:
        raise StreamError("restricted-xml", "comments are not allowed in XMPP")

    def _xmldecl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.upper() not in ("UTF-8", "UTF8"):
            raise StreamError("unsupported-encoding", f"encoding {encoding!r}; XMPP is UTF-8")

    # ------------------------------------------------------------------ API

    @property
    def opened(self) -> bool:
        return self._opened

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the expat parser now (its handlers form a reference cycle)."""
        self._failed = True
        p = self._p
        for name in (
            "StartElementHandler", "EndElementHandler", "CharacterDataHandler",
            "StartNamespaceDeclHandler", "StartDoctypeDeclHandler", "EntityDeclHandler",
            "UnparsedEntityDeclHandler", "NotationDeclHandler", "ExternalEntityRefHandler",
            "ProcessingInstructionHandler", "CommentHandler", "XmlDeclHandler",
            "SkippedEntityHandler",
        ):  # fmt: skip
            with contextlib.suppress(Exception):
                setattr(p, name, None)
        self._stack.clear()
        self._events.clear()
        self._intern.clear()

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Parse more bytes; return the complete events they finish."""
        if self._failed:
            raise StreamError("bad-format", "stream already failed")
        if self._closed:
            if data.strip():
                self._failed = True
                raise StreamError("bad-format", "data after end of stream")
            return []
        try:
            for i in range(0, len(data), 4096):
                piece = data[i : i + 4096]
                # Bound what a single unfinished token can make expat buffer.
                if self._fed + len(piece) - self._mark > self.max_stanza_bytes + 4096:
                    raise StreamError(
                        "policy-violation", f"stanza larger than {self.max_stanza_bytes} bytes"
                    )
                self._fed += len(piece)
                self._p.Parse(piece, False)
                # expat may still buffer text; count what was fed into this stanza
                if self._depth >= 2 and self._fed - self._mark > self.max_stanza_bytes:
                    raise StreamError(
                        "policy-violation", f"stanza larger than {self.max_stanza_bytes} bytes"
                    )
        except StreamError:
            self._failed = True
            raise
        except expat.ExpatError as exc:
            self._failed = True
            code = getattr(exc, "code", None)
            if code in (
                expat.errors.codes[expat.errors.XML_ERROR_UNDEFINED_ENTITY],
                expat.errors.codes[expat.errors.XML_ERROR_RECURSIVE_ENTITY_REF],
            ):
                raise StreamError("restricted-xml", "entity references are not allowed") from None
            if code == expat.errors.codes[expat.errors.XML_ERROR_INCORRECT_ENCODING]:
                raise StreamError("unsupported-encoding", str(exc)) from None
            raise StreamError(
                "not-well-formed", expat.errors.messages[code] if code else str(exc)
            ) from None
        except RecursionError:  # pragma: no cover - depth limit prevents it
            self._failed = True
            raise StreamError("policy-violation", "nesting too deep") from None
        out, self._events = self._events, []
        return out
