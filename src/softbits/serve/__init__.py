"""The server: one prediction service behind HTTP (FastAPI + uvicorn) and CoAP (aiocoap).

Import the submodules directly; this package stays light so that ``softbits --help`` does not
load the web stacks.
"""

__all__: list[str] = []
