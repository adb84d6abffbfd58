"""The CoAP face of the server (aiocoap): POST or PUT ``/predict`` with a full wire payload or a
compact frame, or ``/predict/<model-id>`` with one bare sample.

Replies: 2.05 Content with the JSON predictions (content format 50, application/json);
4.00 Bad Request, 4.04 Not Found (a route naming another model id) or 4.13 Request Entity Too
Large with a text/plain diagnostic (format 0), 5.00 when the model's prediction is not finite.

Datagrams that break RFC 7252's format (a reserved token length 9–15, or a string option such
as Uri-Path that is not UTF-8) are dropped as unparsable, logged in at most one short line per
:data:`LOG_INTERVAL_S` (:func:`guard_datagrams`); a request with a critical option the server
does not understand is answered 4.02 Bad Option (RFC 7252 §5.4.1).

Payloads above one block arrive block-wise (Block1, RFC 7959). The resource reassembles them
itself rather than through aiocoap, which would keep acknowledging blocks past the size limit
and start an assembly for every new request key: here a block that would carry the upload past
``--max-payload``, or a Size1 option announcing more, is answered 4.13 (with Size1 = the limit)
at once, at most :data:`MAX_UPLOADS` uploads are assembled at a time (5.03 beyond), and an
upload that sees no block for :data:`UPLOAD_IDLE_S` seconds is dropped. Replies above one block
leave block-wise (Block2) through aiocoap's response cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiocoap

    from softbits.serve.service import PredictionService

__all__ = ["COAP_PATH", "LOG_INTERVAL_S", "MAX_UPLOADS", "UPLOAD_IDLE_S", "Block1Uploads", "bad_option",
           "create_coap_site", "guard_datagrams"]

COAP_PATH = ("predict",)
#: unfinished Block1 uploads held at once; with the size limit this bounds their memory
#: (64 × 64 KiB = 4 MiB at the default limit)
MAX_UPLOADS = 64
#: seconds an unfinished upload waits for its next block; a client sends it as soon as the
#: 2.31 arrives, so this only covers retransmissions on a lossy link
UPLOAD_IDLE_S = 30.0
_JSON = 50
_TEXT = 0
#: at most one log line about dropped datagrams per this many seconds (then a count)
LOG_INTERVAL_S = 10.0
#: the longest token RFC 7252 §3 allows; 9..15 are reserved and a message format error
_MAX_TOKEN = 8


class _RateLimited(logging.Filter):
    """Lets one "Ignoring unparsable message" record through per interval, the next one saying
    how many were dropped meanwhile: a flood of bad datagrams cannot flood the log."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval, self.clock = interval, clock
        self.last = -float("inf")
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Ignoring unparsable message"):
            return True
        now = self.clock()
        if now - self.last < self.interval:
            self.dropped += 1
            return False
        if self.dropped:
            record.msg = f"{record.msg} (and {self.dropped} more unparsable datagrams since the last note)"
        self.last, self.dropped = now, 0
        record.exc_info = record.exc_text = None
        return True


_guarded = False


def guard_datagrams(logger_name: str = "coap-server") -> None:
    """Make aiocoap treat format errors as unparsable datagrams, logged rate-limited.

    aiocoap's decoder lets a non-UTF-8 string option escape as ``UnicodeDecodeError`` (a
    traceback per datagram in the log) and accepts the reserved token lengths; the wrapped
    decoder raises aiocoap's ``UnparsableMessage`` for both, which its transport drops with one
    warning that :class:`_RateLimited` thins out. Idempotent; affects this process's aiocoap.
    """
    global _guarded
    if _guarded:
        return
    from aiocoap import error
    from aiocoap.message import Message

    original = Message.decode.__func__

    def decode(cls: type[Message], rawdata: bytes, remote: Any = None) -> Message:
        if len(rawdata) >= 1 and rawdata[0] & 0x0F > _MAX_TOKEN:
            raise error.UnparsableMessage("reserved token length")
        try:
            message = original(cls, rawdata, remote)
            for option in message.opt.option_list():  # string options decode here, once
                option.value  # noqa: B018
        except (UnicodeError, ValueError, TypeError) as exc:
            raise error.UnparsableMessage(f"malformed option: {type(exc).__name__}") from None
        return message

    Message.decode = classmethod(decode)
    logging.getLogger(logger_name).addFilter(_RateLimited(LOG_INTERVAL_S))
    _guarded = True


def _understood() -> frozenset[int]:
    """The critical options the resource handles (the others get 4.02 Bad Option)."""
    from aiocoap.numbers.optionnumbers import OptionNumber as O

    return frozenset(int(o) for o in (O.URI_HOST, O.URI_PORT, O.URI_PATH, O.URI_QUERY, O.ACCEPT,
                                      O.BLOCK1, O.BLOCK2, O.IF_MATCH, O.IF_NONE_MATCH))


def bad_option(request: aiocoap.Message) -> aiocoap.Message | None:
    """4.02 Bad Option for a request carrying a critical option this server does not
    understand (RFC 7252 §5.4.1); None when every critical option is understood."""
    import aiocoap

    understood = _understood()
    unknown = sorted({int(o.number) for o in request.opt.option_list()
                      if o.number.is_critical() and int(o.number) not in understood})
    if not unknown:
        return None
    return aiocoap.Message(code=aiocoap.BAD_OPTION, content_format=_TEXT,
                           payload=f"unsupported critical option {', '.join(map(str, unknown))}".encode())


@dataclass
class _Upload:
    payload: bytearray
    last_seen: float


class Block1Uploads:
    """Block1 uploads in progress, under a size limit, a count limit and an idle timeout.

    Keys follow aiocoap's: the peer, the method and the cache-key options (Uri-Path,
    Uri-Query, …), so two uploads from one peer to different URIs are assembled apart.
    """

    def __init__(self, max_bytes: int, max_uploads: int = MAX_UPLOADS, idle_s: float = UPLOAD_IDLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.max_uploads = max_uploads
        self.idle_s = idle_s
        self._clock = clock
        self._uploads: dict[Any, _Upload] = {}

    def __len__(self) -> int:
        return len(self._uploads)

    def feed(self, request: aiocoap.Message) -> aiocoap.Message:
        """The complete request to answer, or the reply to send now (2.31, 4.xx, 5.03)."""
        import aiocoap
        from aiocoap.numbers.optionnumbers import OptionNumber

        block = request.opt.block1
        announced = request.opt.size1
        key = (request.remote.blockwise_key, request.code,
               request.get_cache_key([OptionNumber.BLOCK1, OptionNumber.BLOCK2, OptionNumber.OBSERVE]))
        if announced is not None and announced > self.max_bytes:
            self._uploads.pop(key, None)
            return self._too_large(f"announced payload of {announced} bytes")
        if block is None:
            return request
        end = block.start + len(request.payload)
        if end > self.max_bytes:
            self._uploads.pop(key, None)
            return self._too_large(f"payload of at least {end} bytes")
        if block.more and len(request.payload) != block.size:
            self._uploads.pop(key, None)
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, content_format=_TEXT, payload=(
                f"block {block.block_number} carries {len(request.payload)} bytes, "
                f"its Block1 option says {block.size}").encode())
        now = self._clock()
        self._expire(now)
        if block.block_number == 0:
            self._uploads.pop(key, None)
            if not block.more:
                return request
            if len(self._uploads) >= self.max_uploads:
                return aiocoap.Message(code=aiocoap.SERVICE_UNAVAILABLE, content_format=_TEXT,
                                       max_age=int(self.idle_s), payload=(
                                           f"{self.max_uploads} block-wise uploads are in progress; "
                                           "retry later").encode())
            self._uploads[key] = _Upload(bytearray(request.payload), now)
            return aiocoap.Message(code=aiocoap.CONTINUE, block1=block)
        upload = self._uploads.get(key)
        if upload is None or block.start != len(upload.payload):
            self._uploads.pop(key, None)
            return aiocoap.Message(code=aiocoap.REQUEST_ENTITY_INCOMPLETE, content_format=_TEXT, payload=(
                f"block {block.block_number} does not continue an upload in progress; "
                "start again at block 0").encode())
        upload.payload += request.payload
        upload.last_seen = now
        if block.more:
            return aiocoap.Message(code=aiocoap.CONTINUE, block1=block)
        del self._uploads[key]
        return request.copy(payload=bytes(upload.payload))

    def _expire(self, now: float) -> None:
        stale = [key for key, upload in self._uploads.items() if now - upload.last_seen > self.idle_s]
        for key in stale:
            del self._uploads[key]

    def _too_large(self, what: str) -> aiocoap.Message:
        import aiocoap

        # RFC 7959 §4: Size1 in a 4.13 tells the client the largest size the server accepts
        return aiocoap.Message(code=aiocoap.REQUEST_ENTITY_TOO_LARGE, content_format=_TEXT,
                               size1=self.max_bytes,
                               payload=f"{what} exceeds the limit of {self.max_bytes} bytes".encode())


def create_coap_site(service: PredictionService) -> Any:
    """An aiocoap site with the ``/predict`` resource (and ``/.well-known/core``); installs
    :func:`guard_datagrams`."""
    import aiocoap
    import aiocoap.resource as resource
    from aiocoap.blockwise import Block2Cache

    guard_datagrams()
    codes = {200: aiocoap.CONTENT, 400: aiocoap.BAD_REQUEST, 404: aiocoap.NOT_FOUND,
             413: aiocoap.REQUEST_ENTITY_TOO_LARGE, 500: aiocoap.INTERNAL_SERVER_ERROR}

    class PredictResource(resource.Resource):
        """Answers a payload with its predictions; every failure is a 4.xx or 5.00 reply."""

        def __init__(self) -> None:
            super().__init__()
            self._uploads = Block1Uploads(service.max_payload_bytes)
            self._replies = Block2Cache()

        async def render_to_pipe(self, pipe: Any) -> None:
            # replaces aiocoap's blockwise handling (see the module docstring)
            request = pipe.request
            refused = bad_option(request)
            if refused is not None:
                pipe.add_response(refused, is_last=True)
                return
            if request.code not in (aiocoap.POST, aiocoap.PUT):
                pipe.add_response(await self.render(request), is_last=True)
                return
            step = self._uploads.feed(request)
            if step.code.is_response():
                pipe.add_response(step, is_last=True)
                return
            reply = await self._replies.extract_or_insert(step, lambda: self.render(step))
            reply.opt.block1 = step.opt.block1
            pipe.add_response(reply, is_last=True)

        route_name = "predict"

        def route_model_id(self, request: aiocoap.Message) -> str | None:
            """The model id the route names; ``None`` on ``/predict`` itself."""
            return None

        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            with service.metrics.observe("coap", self.route_name) as record:
                try:
                    route = self.route_model_id(request)
                except LookupError as exc:
                    record["status"] = 404
                    return aiocoap.Message(code=aiocoap.NOT_FOUND, content_format=_TEXT,
                                           payload=str(exc.args[0]).encode())
                record["bytes"] = len(request.payload)
                answer = service.answer(bytes(request.payload), route)
                record["status"], record["samples"] = answer.status, answer.n_samples
                reply = aiocoap.Message(code=codes[answer.status], payload=answer.body,
                                        content_format=_JSON if answer.ok else _TEXT)
                if answer.status == 413:
                    reply.opt.size1 = service.max_payload_bytes
                return reply

        render_put = render_post

    class NamedModelResource(PredictResource, resource.PathCapable):
        """``/predict/<model-id>``: aiocoap hands it the path below ``/predict``."""

        route_name = "predict_named"

        def route_model_id(self, request: aiocoap.Message) -> str | None:
            path = request.opt.uri_path
            if len(path) != 1 or not path[0]:
                raise LookupError(f"no resource /predict/{'/'.join(path)}: post to /predict/<model-id>")
            return str(path[0])

    site = resource.Site()
    site.add_resource((".well-known", "core"), resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(COAP_PATH, PredictResource())
    site.add_resource(COAP_PATH, NamedModelResource())  # a sub-site: matches /predict/...
    return site
