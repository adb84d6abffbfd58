"""The CoAP face of the server (aiocoap): POST or PUT ``/predict`` with a wire payload.

Replies: 2.05 Content with the JSON predictions (content format 50, application/json);
4.00 Bad Request or 4.13 Request Entity Too Large with a text/plain diagnostic (format 0).
Payloads above one block travel block-wise (Block1/Block2), which aiocoap reassembles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from softbits.serve.service import PredictionService

__all__ = ["COAP_PATH", "create_coap_site"]

COAP_PATH = ("predict",)
_JSON = 50
_TEXT = 0


def create_coap_site(service: "PredictionService") -> Any:
    """An aiocoap site with the ``/predict`` resource (and ``/.well-known/core``)."""
    import aiocoap
    import aiocoap.resource as resource

    codes = {200: aiocoap.CONTENT, 400: aiocoap.BAD_REQUEST,
             413: aiocoap.REQUEST_ENTITY_TOO_LARGE, 500: aiocoap.INTERNAL_SERVER_ERROR}

    class PredictResource(resource.Resource):
        """Answers a payload with its predictions; every failure is a 4.xx reply."""

        async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
            answer = service.answer(bytes(request.payload))
            return aiocoap.Message(code=codes[answer.status], payload=answer.body,
                                   content_format=_JSON if answer.ok else _TEXT)

        render_put = render_post

    site = resource.Site()
    site.add_resource((".well-known", "core"), resource.WKCResource(site.get_resources_as_linkheader))
    site.add_resource(COAP_PATH, PredictResource())
    return site
